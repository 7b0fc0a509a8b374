"""Feature values against hand computation, point-in-time correctness, and Feast.

The hand-made history below has every expected value worked out in the comments.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.domain import Table
from clm.workspace import Workspace
from features.build import build_features, snapshot_dates
from features.groups import GROUPS
from features.snapshots import read_snapshot
from tests.handmade import write_hand_made

AS_OF = pd.Timestamp("2024-03-01", tz="UTC")


@pytest.fixture
def hand_made(tmp_path: Path) -> Workspace:
    ws = write_hand_made(tmp_path / "ws")
    build_features(ws, [AS_OF])
    return ws


def row(ws: Workspace, group: str, customer: str) -> dict[str, object]:
    frame = read_snapshot(ws, group, AS_OF).set_index("customer_id")
    assert list(frame.index) == ["A", "B"]  # C signed up after as_of
    assert (frame.event_timestamp == AS_OF).all()
    return frame.loc[customer].to_dict()


def close(got: object, expected: float | None) -> bool:
    if expected is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    return abs(float(got) - expected) < 1e-9


def assert_values(ws: Workspace, group: str, customer: str, expected: dict[str, object]) -> None:
    got = row(ws, group, customer)
    for name, value in expected.items():
        ok = got[name] == value if isinstance(value, str) else close(got[name], value)
        assert ok, f"{group}.{name} for {customer}: got {got[name]!r}, expected {value!r}"


def test_profile_by_hand(hand_made):
    # A: Jan (31) + Feb 2024 (29) = 60 days; upgraded to pro on 02-20; cancels only on 03-02.
    assert_values(hand_made, "profile", "A", {
        "tenure_days": 60.0, "segment": "smb", "plan": "pro", "price": 79.0, "is_subscribed": 1.0,
    })
    assert_values(hand_made, "profile", "B", {"tenure_days": 15.0, "plan": "basic", "price": 29.0})


def test_engagement_by_hand(hand_made):
    # Usage days before 03-01 and their age (days from as_of): 02-29 -> 1, 02-25 -> 5,
    # 02-01 -> 29, 01-15 -> 46; 03-01 has not ended at as_of, so it is left out.
    # Trend: week x = 11 - floor((age - 1) / 7) -> 11, 11, 7, 5; sum(x y) = 22 + 33 + 28 + 5 = 88,
    # sum(y) = 10: slope = (12 * 88 - 66 * 10) / 1716 = 396 / 1716.
    assert_values(hand_made, "engagement", "A", {
        "sessions_7d": 5.0, "sessions_30d": 9.0, "sessions_90d": 10.0,
        "active_days_7d": 2.0, "active_days_30d": 3.0, "active_days_90d": 4.0,
        "minutes_30d": 90.0, "feature_breadth_30d": 6.0,
        "sessions_trend_12w": 396 / 1716, "recent_past_ratio": 9 / (1 / 2), "days_since_last_activity": 0.0,
        # Sessions 2, 3, 4, 1 at ages 1, 5, 29, 46 days, weighted by exp(-age / 30).
        "sessions_decayed_30d": 2 * math.exp(-1 / 30) + 3 * math.exp(-5 / 30) + 4 * math.exp(-29 / 30) + math.exp(-46 / 30),
        # Features used 3, 2, 6 on the days within 30 days, and 1 on 01-15: 11 / 3 and 12 / 4.
        "features_per_active_day_30d": 11 / 3, "features_per_active_day_90d": 3.0,
        # Minutes 20 + 30 + 40 + 10 over sessions 2 + 3 + 4 + 1.
        "minutes_per_session_90d": 10.0,
    })
    assert_values(hand_made, "engagement", "B", {
        "sessions_30d": 0.0, "sessions_trend_12w": 0.0, "recent_past_ratio": None, "days_since_last_activity": None,
        "sessions_decayed_30d": 0.0, "features_per_active_day_30d": None, "minutes_per_session_90d": None,
    })


def test_rfm_by_hand(hand_made):
    # A's paid transactions before as_of: 01-01 and 02-04 (02-01 failed, 03-01 is not before).
    # Percentiles across A and B: recency (more recent = higher) A 26 days < B 15 days -> A 0, B 1;
    # frequency A 2 > B 1 -> A 1; amount A 58 > B 29 -> A 1.
    assert_values(hand_made, "rfm", "A", {
        "recency_days": 26.0, "frequency_90d": 2.0, "monetary_90d": 58.0, "avg_transaction_value": 29.0,
        "recency_score": 0.0, "frequency_score": 1.0, "monetary_score": 1.0,
    })
    assert_values(hand_made, "rfm", "B", {"recency_days": 15.0, "recency_score": 1.0, "frequency_score": 0.0})
    # Purchase gaps: A bought 60 and 26 days before as_of, one gap of 34 days; B once.
    assert_values(hand_made, "rfm", "A", {
        "frequency_total": 2.0, "first_purchase_days": 60.0, "mean_gap_days": 34.0, "gap_std_days": None,
        "last_gap_days": 34.0, "max_gap_180d": 34.0, "recency_over_mean_gap": 26 / 34, "last_amount_ratio": 1.0,
    })
    assert_values(hand_made, "rfm", "B", {
        "frequency_total": 1.0, "first_purchase_days": 15.0, "mean_gap_days": None, "last_gap_days": None,
        "recency_over_mean_gap": None, "last_amount_ratio": 1.0,
    })


def test_purchase_gaps_by_hand(tmp_path):
    """Z buys 10, 20, 30 and 60 on 01-01, 01-11, 01-31 and 03-01; as of 04-01 those are 91,
    81, 61 and 31 days old (2024 is a leap year). W first buys after as_of."""
    from pipelines.ingest import TransactionsSource, ingest_transactions

    export = tmp_path / "orders.csv"
    pd.DataFrame({
        "customer": ["Z", "Z", "Z", "Z", "W"],
        "date": ["2024-01-01", "2024-01-11", "2024-01-31", "2024-03-01", "2024-04-10"],
        "total": [10.0, 20.0, 30.0, 60.0, 5.0],
    }).to_csv(export, index=False)
    ws = Workspace(tmp_path / "shop")
    ingest_transactions(TransactionsSource(export, "customer", "date", "total"), ws)
    as_of = pd.Timestamp("2024-04-01", tz="UTC")
    build_features(ws, [as_of])
    frame = read_snapshot(ws, "rfm", as_of).set_index("customer_id")
    assert list(frame.index) == ["Z"]
    z = frame.loc["Z"]
    expected = {
        "recency_days": 31.0, "frequency_total": 4.0, "first_purchase_days": 91.0,
        "purchase_days_total": 4.0,  # four purchases on four different days
        "frequency_90d": 3.0,  # the purchase 91 days old is outside
        "mean_gap_days": 20.0, "gap_std_days": 10.0,  # gaps 10, 20, 30
        "last_gap_days": 30.0, "max_gap_180d": 30.0, "recency_over_mean_gap": 31 / 20,
        "last_amount_ratio": 60 / 30,  # the last amount over the mean of 10, 20, 30, 60
    }
    for name, value in expected.items():
        assert close(z[name], value), f"rfm.{name}: got {z[name]!r}, expected {value!r}"


def test_support_billing_voice_marketing_advocacy_by_hand(hand_made):
    # Ticket 2 is resolved only on 03-05: open at as_of, and its CSAT is not known yet.
    assert_values(hand_made, "support", "A", {
        "tickets_30d": 2.0, "open_tickets": 1.0, "open_high_severity": 0.0, "high_severity_90d": 1.0,
        "mean_resolution_days_90d": 2.0, "last_csat": 2.0, "days_since_last_ticket": 10.0,
        # Ages 19.5 and 10 days; 2 tickets in 60 days of tenure; only ticket 1's CSAT is known.
        "tickets_decayed_60d": math.exp(-19.5 / 60) + math.exp(-10 / 60), "tickets_per_year": 2 * 365 / 60,
        "mean_csat_365d": 2.0,
    })
    assert_values(hand_made, "billing", "A", {
        "failed_payments_30d": 1.0, "failed_payments_90d": 1.0, "days_since_failed_payment": 29.0,
        "discount_90d": 0.0, "upgrades_365d": 1.0, "downgrades_365d": 0.0, "days_since_plan_change": 9.5,
        "failed_payment_share": 1 / 3,  # 01-01 paid, 02-01 failed, 02-04 paid
    })
    assert_values(hand_made, "voice", "A", {
        "last_nps": 6.0, "nps_trend": -3.0, "nps_responses_365d": 2.0, "days_since_last_nps": 15.0,
        "mean_nps": 7.5,
    })
    # The 02-01 retention offer was followed by use the same day: one response. The 03-01
    # offer is at as_of, not before it.
    assert_values(hand_made, "marketing", "A", {
        "contacts_30d": 1.0, "contacts_90d": 1.0, "days_since_last_contact": 29.0, "offers_90d": 1.0,
        "responses_90d": 1.0, "last_action": "retention_offer",
    })
    assert_values(hand_made, "advocacy", "A", {
        "referrals_365d": 1.0, "converted_referrals_365d": 1.0, "days_since_last_referral": 20.0,
    })
    assert_values(hand_made, "support", "B", {
        "tickets_90d": 0.0, "last_csat": None, "days_since_last_ticket": None, "tickets_decayed_60d": 0.0,
        "tickets_per_year": 0.0, "mean_csat_365d": None,
    })
    assert_values(hand_made, "billing", "B", {"failed_payment_share": 0.0})
    assert_values(hand_made, "voice", "B", {"mean_nps": None})
    assert_values(hand_made, "marketing", "B", {"last_action": None})


def test_features_do_not_see_after_the_cutoff(small_workspace, tmp_path):
    """Adding and changing raw events after a cutoff changes no feature at or before it."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(small_workspace.root, ws.root)
    dates = snapshot_dates(ws.read_manifest())
    cutoff = dates[1]  # 2024-03-01
    build_features(ws)
    snapshots = {(g.name, d): read_snapshot(ws, g.name, d) for g in GROUPS for d in dates}

    for table in (Table.USAGE, Table.TRANSACTIONS, Table.TICKETS, Table.NPS, Table.ACTIONS, Table.SUBSCRIPTIONS):
        frame = ws.read_table(table)
        later = frame.event_time >= cutoff
        if table is Table.USAGE:
            later = frame.event_time > cutoff - pd.Timedelta(days=1)  # the day ending at the cutoff counts
            frame.loc[later, "sessions"] = frame.loc[later, "sessions"] * 10 + 1
        if table is Table.TRANSACTIONS:
            frame.loc[later, "amount"] += 1000.0
            frame.loc[later, "status"] = "failed"
        if table is Table.NPS:
            frame.loc[later, "score"] = np.int32(0)
        if table is Table.ACTIONS:
            frame.loc[later, "action"] = "success_call"
        if table is Table.TICKETS:
            # Tickets resolved after the cutoff: resolution and CSAT are not yet known then.
            frame.loc[frame.resolved_time >= cutoff, "csat"] = 1.0
        extra = frame[frame.event_time < cutoff].tail(3).copy()
        extra["event_time"] = cutoff  # exactly at the cutoff: not before it, so not seen
        for key in ("transaction_id", "ticket_id", "decision_id"):
            if key in extra:
                extra[key] = frame[key].max() + 1 + np.arange(len(extra))
        if table is Table.SUBSCRIPTIONS:
            # A cancellation at the cutoff: the profile shows it after the cutoff, never at it.
            extra = extra.assign(event="cancel")
        if table is Table.TICKETS:
            extra["resolved_time"] = pd.NaT
        both = pd.concat([frame, extra], ignore_index=True)
        if table is Table.USAGE:
            both = both.drop_duplicates(["customer_id", "event_time"], keep="last")
        both.to_parquet(ws.table_path(table), index=False)

    shutil.rmtree(ws.root / "features")  # every snapshot made from the new data (not only the stale ones)
    build_features(ws)
    changed_later = set()
    for (group, d), old in snapshots.items():
        new = read_snapshot(ws, group, d)
        if d <= cutoff:
            pd.testing.assert_frame_equal(new, old, check_exact=True, obj=f"{group} at {d:%Y-%m-%d}")
        elif not new.equals(old):
            changed_later.add(group)
    # The changes do show after the cutoff, in every group they touch: the test has teeth.
    assert {"engagement", "rfm", "billing", "support", "voice", "marketing", "profile"} <= changed_later


@pytest.mark.parametrize("reverse", [False, True])
def test_events_at_one_instant_rank_by_their_values_whatever_the_rows_order(tmp_path, reverse):
    """An export that gives dates only puts several of a customer's events at one instant.
    B upgrades to a team plan at 99 and cancels it at 109 on 02-25; A cancels pro and
    restarts on basic on 02-27; B has two tickets resolved on 02-20 (CSAT 4 and 1). In the
    lifecycle's order B has cancelled and A is live again; the latest CSAT is the lower; a
    plan priced twice at one instant costs the higher price. The same in the rows' order as
    written and reversed. (The contracts' keys allow no other ties: one NPS answer, one
    attribute change per instant.)"""
    from decisions.population import population
    from decisions.value import plan_prices
    from tests.handmade import t

    ws = write_hand_made(tmp_path / "ws")
    added = {
        Table.SUBSCRIPTIONS: pd.DataFrame({
            "customer_id": ["B", "B", "A", "A"], "event_time": [t("2024-02-25")] * 2 + [t("2024-02-27")] * 2,
            "event": ["upgrade", "cancel", "cancel", "start"], "plan": ["team", "team", "pro", "basic"],
            "price": [99.0, 109.0, 79.0, 29.0]}),
        Table.TICKETS: pd.DataFrame({"ticket_id": np.array([3, 4], dtype=np.int64), "customer_id": ["B", "B"],
                                     "event_time": [t("2024-02-16"), t("2024-02-17")], "severity": ["low", "low"],
                                     "resolved_time": [t("2024-02-20")] * 2, "csat": [4.0, 1.0]}),
    }
    for table, rows in added.items():
        frame = pd.concat([ws.read_table(table), rows.astype(ws.read_table(table).dtypes.to_dict())],
                          ignore_index=True)
        (frame.iloc[::-1] if reverse else frame).to_parquet(ws.table_path(table), index=False)
    build_features(ws, [AS_OF])
    assert_values(ws, "profile", "B", {"plan": "team", "price": 109.0, "is_subscribed": 0.0})
    assert_values(ws, "profile", "A", {"plan": "basic", "price": 29.0, "is_subscribed": 1.0})
    assert_values(ws, "support", "B", {"last_csat": 1.0, "mean_csat_365d": 2.5})
    assert population(ws, [AS_OF], contractual=True).customer_id.tolist() == ["A"]
    # basic 29, pro 79 (A's cancel on 03-02 is its latest price), team 109, business 199
    assert plan_prices(ws).tolist() == [29.0, 79.0, 109.0, 199.0]
