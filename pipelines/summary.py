"""A short description of what a workspace holds, for people reading the terminal."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from clm.domain import Table
from clm.workspace import RawManifest, Workspace
from features.snapshots import group_dir, workspace_groups


@dataclass
class WorkspaceSummary:
    manifest: RawManifest
    rows: dict[str, int]
    customers_ever_active: int | None  # None: no transactions table
    cancelled: int | None
    latest_snapshot: str | None = None
    latest_stages: dict[str, int] = field(default_factory=dict)
    latest_mean_truth: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    snapshot_dates: int = 0  # dates with feature snapshots (month starts, and the cutoffs training and deciding needed)
    month_starts: int = 0  # of them, month starts


def summarise(workspace: Workspace) -> WorkspaceSummary:
    manifest = workspace.read_manifest()
    con = duckdb.connect()

    def path(t: Table) -> str:
        return f"read_parquet('{workspace.table_path(t)}')"

    def one_row(sql: str) -> tuple[Any, ...]:
        row = con.execute(sql).fetchone()
        assert row is not None  # an aggregate without GROUP BY returns one row
        return row

    present = [t for t in Table if workspace.table_path(t).exists()]
    rows = {t.value: one_row(f"SELECT count(*) FROM {path(t)}")[0] for t in present}
    buyers = None  # unknown without transactions
    if Table.TRANSACTIONS in present:
        buyers = one_row(f"SELECT count(DISTINCT customer_id) FROM {path(Table.TRANSACTIONS)}")[0]
    cancelled = None
    if Table.SUBSCRIPTIONS in present:
        cancelled = one_row(f"SELECT count(*) FROM {path(Table.SUBSCRIPTIONS)} WHERE event = 'cancel'")[0]
    summary = WorkspaceSummary(manifest, rows, buyers, cancelled)
    if Table.GROUND_TRUTH in present:
        gt = path(Table.GROUND_TRUTH)
        last = one_row(f"SELECT max(snapshot_date) FROM {gt}")[0]
        summary.latest_snapshot = str(last)
        summary.latest_stages = dict(
            con.execute(
                f"SELECT stage, count(*) FROM {gt} WHERE snapshot_date = DATE '{last}' GROUP BY stage ORDER BY 2 DESC"
            ).fetchall()
        )
        means = one_row(
            f"SELECT avg(p_churn_30d), avg(p_churn_90d), avg(p_upgrade_30d), avg(p_upgrade_90d) FROM {gt} "
            f"WHERE snapshot_date = DATE '{last}' AND stage <> 'churned'"
        )
        summary.latest_mean_truth = dict(zip(("p_churn_30d", "p_churn_90d", "p_upgrade_30d", "p_upgrade_90d"), means))
    if Table.ACTIONS in present:
        summary.decisions = dict(
            con.execute(f"SELECT action, count(*) FROM {path(Table.ACTIONS)} GROUP BY action ORDER BY 2 DESC").fetchall()
        )
    con.close()
    dates = {p.stem for group in workspace_groups(workspace) for p in group_dir(workspace, group.name).glob("*.parquet")}
    summary.snapshot_dates = len(dates)
    summary.month_starts = sum(d.endswith("-01") for d in dates)
    return summary
