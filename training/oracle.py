"""The simulator's oracle: the true probability of what happened, per (customer, cutoff).

`ground_truth` holds each live customer's true probability of churn and upgrade within
H days *if no proactive action is taken* after the snapshot. The logged policy does act:
on a month's first day (the cutoff instant itself) it contacts some customers, and later
decisions can fall inside a label window. So the oracle of a row is:

  no contact in [T, T + H)             the no-action truth
  a contact at T, none after it         the no-action truth + that action's true effect
                                        (`ground_truth_effects`, priced for H = 90 days)
  a contact in (T, T + H), or at T      left out: no truth describes what happened
    when the effects are not priced
    for this horizon

Workspaces without a ground truth (real data) have no oracle.
"""
from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from clm.domain import NO_ACTION, Table
from clm.workspace import Workspace

KEYS = ["customer_id", "event_timestamp"]
OUTCOME = {"churn": "churn", "upsell": "upgrade"}


def _cutoff(snapshot_date: pd.Series) -> pd.Series:
    """A snapshot describes the end of its day: the cutoff is the next midnight (UTC)."""
    return pd.to_datetime(snapshot_date).dt.tz_localize("UTC") + pd.Timedelta(days=1)


def true_probabilities(workspace: Workspace, model: str, horizon: int) -> pd.DataFrame | None:
    """The no-action truth for every live (customer_id, event_timestamp): column `truth`;
    None on data without a ground truth for this model and horizon."""
    if model not in OUTCOME or not workspace.table_path(Table.GROUND_TRUTH).exists():
        return None
    column = f"p_{OUTCOME[model]}_{horizon}d"
    if column not in pq.read_schema(workspace.table_path(Table.GROUND_TRUTH)).names:
        return None
    truth = workspace.read_table(Table.GROUND_TRUTH, columns=["customer_id", "snapshot_date", column])
    truth["event_timestamp"] = _cutoff(truth["snapshot_date"])
    return truth[["customer_id", "event_timestamp", column]].rename(columns={column: "truth"}).dropna(subset=["truth"])


def oracle_probabilities(workspace: Workspace, model: str, horizon: int, rows: pd.DataFrame) -> pd.DataFrame | None:
    """For the (customer_id, event_timestamp) rows given: the true probability of the
    outcome under what the logged policy actually did (column `truth`), for the rows where
    one exists (see the module's docstring); None without a ground truth."""
    truth = true_probabilities(workspace, model, horizon)
    if truth is None:
        return None
    frame = rows[KEYS].drop_duplicates().merge(truth, on=KEYS, how="inner")
    if frame.empty:  # e.g. a date that is not a month start: the truth is kept at month ends
        return frame
    actions = workspace.read_table(Table.ACTIONS, columns=["customer_id", "event_time", "action"])
    contacts = actions[actions.action != NO_ACTION]
    window = pd.Timedelta(days=horizon)
    joined = frame[KEYS].merge(contacts, on="customer_id", how="inner")
    joined = joined[(joined.event_time >= joined.event_timestamp) & (joined.event_time < joined.event_timestamp + window)]
    at_cutoff = joined[joined.event_time == joined.event_timestamp]
    later = joined[joined.event_time > joined.event_timestamp]
    excluded = later[KEYS].drop_duplicates()
    effect_column = f"effect_{OUTCOME[model]}_{horizon}d"
    effects_path = workspace.table_path(Table.GROUND_TRUTH_EFFECTS)
    if effects_path.exists() and effect_column in pq.read_schema(effects_path).names:
        # Only the snapshots the rows were cut at (the table has every action for every day).
        days = sorted({(t - pd.Timedelta(days=1)).date() for t in frame["event_timestamp"].unique()})
        effects = pd.read_parquet(effects_path, columns=["customer_id", "snapshot_date", "action", effect_column],
                                  filters=[("snapshot_date", "in", days)])
        effects["event_timestamp"] = _cutoff(effects["snapshot_date"])
        treated = at_cutoff[KEYS + ["action"]].merge(
            effects[KEYS + ["action", effect_column]], on=KEYS + ["action"], how="left", validate="one_to_one"
        )
        unpriced = treated[treated[effect_column].isna()][KEYS]
        frame = frame.merge(treated[KEYS + [effect_column]], on=KEYS, how="left", validate="one_to_one")
        frame["truth"] = frame["truth"] + frame[effect_column].fillna(0.0)
        frame = frame.drop(columns=effect_column)
        excluded = pd.concat([excluded, unpriced])
    else:
        excluded = pd.concat([excluded, at_cutoff[KEYS]])
    out = frame.merge(excluded.drop_duplicates().assign(_out=True), on=KEYS, how="left")
    return out[out["_out"].isna()].drop(columns="_out").reset_index(drop=True)
