"""A tiny hand-made history: every expected feature and label value is worked out by hand
in the tests that use it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clm.domain import Table
from clm.workspace import RawManifest, Workspace, write_manifest


def t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _times(values: list[str]) -> pd.Series:
    return pd.Series([t(v) for v in values]).astype("datetime64[us, UTC]")


def write_hand_made(root: Path) -> Workspace:
    """Customers A (signed up 2024-01-01), B (2024-02-15) and C (2024-03-05, after as_of)."""
    ws = Workspace(root)
    ws.raw_dir.mkdir(parents=True)
    ids = ["A", "B", "C"]
    tables = {
        Table.CUSTOMERS: pd.DataFrame({
            "customer_id": ids,
            "signup_time": _times(["2024-01-01", "2024-02-15", "2024-03-05"]),
            "acquisition_channel": ["organic", "paid_search", "partner"],
            "segment": ["smb", "smb", "enterprise"],
            "region": ["na", "emea", "na"],
            "consent_email": [True, True, False],
            "consent_phone": [False, False, False],
        }),
        Table.SUBSCRIPTIONS: pd.DataFrame({
            "customer_id": ["A", "A", "A", "B", "C"],
            "event_time": _times(["2024-01-01", "2024-02-20 12:00", "2024-03-02", "2024-02-15", "2024-03-05"]),
            "event": ["start", "upgrade", "cancel", "start", "start"],
            "plan": ["basic", "pro", "pro", "basic", "business"],
            "price": [29.0, 79.0, 79.0, 29.0, 199.0],
        }),
        Table.TRANSACTIONS: pd.DataFrame({
            "transaction_id": np.arange(6, dtype=np.int64),
            "customer_id": ["A", "A", "A", "A", "B", "C"],
            "event_time": _times(["2024-01-01", "2024-02-01", "2024-02-04", "2024-03-01", "2024-02-15", "2024-03-05"]),
            "kind": ["subscription"] * 6,
            "amount": [29.0, 29.0, 29.0, 29.0, 29.0, 199.0],
            "discount": [0.0, 0.0, 0.0, 5.8, 0.0, 0.0],
            "status": ["paid", "failed", "paid", "paid", "paid", "paid"],
            "plan": ["basic", "basic", "basic", "pro", "basic", "business"],
        }),
        Table.USAGE: pd.DataFrame({
            "customer_id": ["A"] * 5,
            "event_time": _times(["2024-01-15", "2024-02-01", "2024-02-25", "2024-02-29", "2024-03-01"]),
            "sessions": np.array([1, 4, 3, 2, 5], dtype=np.int32),
            "features_used": np.array([1, 6, 2, 3, 9], dtype=np.int32),
            "active_minutes": [10.0, 40.0, 30.0, 20.0, 50.0],
        }),
        Table.TICKETS: pd.DataFrame({
            "ticket_id": np.array([1, 2], dtype=np.int64),
            "customer_id": ["A", "A"],
            "event_time": _times(["2024-02-10 12:00", "2024-02-20"]),
            "severity": ["high", "low"],
            "resolved_time": _times(["2024-02-12 12:00", "2024-03-05"]),
            "csat": [2.0, 5.0],
        }),
        Table.NPS: pd.DataFrame({
            "customer_id": ["A", "A"],
            "event_time": _times(["2024-01-20", "2024-02-15"]),
            "score": np.array([9, 6], dtype=np.int32),
        }),
        Table.REFERRALS: pd.DataFrame({
            "referral_id": np.array([1], dtype=np.int64),
            "customer_id": ["A"],
            "event_time": _times(["2024-02-10"]),
            "converted": [True],
        }),
        Table.ACTIONS: pd.DataFrame({
            "decision_id": np.array([1, 2], dtype=np.int64),
            "customer_id": ["A", "A"],
            "event_time": _times(["2024-02-01", "2024-03-01"]),
            "action": ["retention_offer", "upgrade_offer"],
            "channel": ["email", "email"],
            "propensity": [0.2, 0.1],
            "is_control": [False, False],
        }),
    }
    for table, frame in tables.items():
        frame.to_parquet(ws.table_path(table), index=False)
    write_manifest(ws.raw_dir, RawManifest(
        source="hand-made", business="contractual", data_start=t("2024-01-01").isoformat(),
        data_end=t("2024-04-01").isoformat(), tables=[x.value for x in tables],
    ))
    return ws
