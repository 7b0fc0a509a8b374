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


def attribute_history_shop(root: Path) -> Workspace:
    """Exports of a shop, ingested: three customers (static V1 on customers), their
    purchases, and a history of their tier and score: a silver from 2024-01-10, gold and
    score 7 from 2024-03-01 00:00 (the moment of a cutoff: not yet known at it); b without
    a row; c's score 1,5 (decimal comma) from 2024-02-01 12:00, no tier."""
    from pipelines.ingest import ExportSource, ReadOptions, ingest_tables

    (root / "people.csv").write_text("Id,Joined,V1\na,2024-01-02,0.5\nb,2024-01-03,1.5\nc,2024-01-04,2.5\n")
    (root / "sales.csv").write_text("Id,At,Total\na,2024-01-05,10\nb,2024-01-06,20\nc,2024-01-07,30\n"
                                    "a,2024-04-20,10\n")
    (root / "tiers.csv").write_text("Id;Changed;Tier;Score\na;2024-01-10 08:00;silver;\na;2024-03-01 00:00;gold;7\n"
                                    "c;2024-02-01 12:00;;1,5\n")
    ws = Workspace(root / "ws")
    ingest_tables([
        ExportSource("customers", root / "people.csv", {"customer_id": "Id", "signup_time": "Joined"},
                     attributes=("V1",)),
        ExportSource("transactions", root / "sales.csv", {"customer_id": "Id", "event_time": "At", "amount": "Total"}),
        ExportSource("attribute_history", root / "tiers.csv", {"customer_id": "Id", "event_time": "Changed"},
                     ReadOptions(decimal=","), attributes=("Tier", "Score")),
    ], ws)
    return ws
