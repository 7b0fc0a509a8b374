"""The four kinds of customer, by the simulator's truth: what an action would do to them.

Per customer and snapshot, from `ground_truth` (p_churn_90d with no action) and
`ground_truth_effects` (each action's true change of it):

- persuadable: some action cuts the 90-day churn probability by at least MOVE;
- sleeping dog: not persuadable, and the retention offer raises it by at least MOVE
  (reminding them they pay for what they no longer use);
- lost cause: neither, and p_churn_90d is at least AT_RISK: they leave whatever is done;
- sure thing: neither, and p_churn_90d below AT_RISK: nothing moves them, and most stay.

Only randomised or logged data tells these apart in real life; here the truth does, which
is what makes the simulator a yardstick for targeting (a policy that treats the riskiest
spends on lost causes).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clm.domain import Action

MOVE = 0.02  # two points of 90-day churn probability
AT_RISK = 0.3
KINDS = ("persuadable", "sleeping_dog", "lost_cause", "sure_thing")


def customer_kinds(ground_truth: pd.DataFrame, effects: pd.DataFrame) -> pd.DataFrame:
    """One row per live (customer_id, snapshot_date): p_churn_90d, best_cut (the largest fall
    in it any action brings, >= 0), retention_effect, and kind."""
    live = ground_truth.dropna(subset=["p_churn_90d"])[["customer_id", "snapshot_date", "p_churn_90d"]]
    by_action = effects.pivot_table(index=["customer_id", "snapshot_date"], columns="action",
                                    values="effect_churn_90d", aggfunc="first")
    frame = live.merge(by_action, left_on=["customer_id", "snapshot_date"], right_index=True, how="inner")
    actions = [a for a in by_action.columns if a != Action.NONE.value]
    best_cut = np.maximum(-frame[actions].min(axis=1).to_numpy(), 0.0)
    retention = frame[Action.RETENTION_OFFER.value].to_numpy()
    p = frame["p_churn_90d"].to_numpy()
    persuadable = best_cut >= MOVE
    sleeping = ~persuadable & (retention >= MOVE)
    kind = np.select(
        [persuadable, sleeping, p >= AT_RISK],
        ["persuadable", "sleeping_dog", "lost_cause"],
        default="sure_thing",
    )
    return frame[["customer_id", "snapshot_date", "p_churn_90d"]].assign(
        best_cut=best_cut, retention_effect=retention, kind=kind,
    ).reset_index(drop=True)


def kind_shares(kinds: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Share of each kind among every live customer and among those at risk."""
    at_risk = kinds[kinds.p_churn_90d >= AT_RISK]
    return {
        "all": {k: float((kinds.kind == k).mean()) for k in KINDS},
        "at_risk": {k: float((at_risk.kind == k).mean()) for k in KINDS},
    }
