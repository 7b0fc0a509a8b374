"""The nightly batch's decisions for a whole base: the funnel (`serving.scoring.decide_rows`)
once over every customer in the population, so that the budget and the daily capacities
are allocated across the base; then exploration, and per chunk the decision columns with
reasons in words, appended to the workspace's decision log.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clm.domain import Action
from serving import decision_log
from serving.catalogue import Catalogue
from serving.decide import Decisions, value_finder
from serving.scoring import Champions, DecisionData, Scored, decide_rows, explain

DECISION_COLUMNS = ("action", "action_value", "action_cost", "reasons", "propensity", "explored")
EXPLORED = "exploration: a random allowed action, so that every action's effect stays measurable"
CONTROL = "do nothing: exploration's control group"


@dataclass
class BatchPlan:
    """Everyone's decision: final[i] the index of customer i's action (-1: none), after
    exploration; rows in the order of the scored base's population."""

    decided: Decisions
    final: np.ndarray
    propensity: np.ndarray
    explored: np.ndarray
    budget: float | None
    value: np.ndarray = field(init=False)  # each customer's final action's expected value (0: none)
    cost: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.value = _of(self.decided.parts.total, self.final)
        self.cost = _of(self.decided.parts.cost, self.final)

    def summary(self) -> dict[str, object]:
        names = np.asarray([*self.decided.actions, Action.NONE.value], dtype=object)
        actions = pd.Series(names[np.where(self.final >= 0, self.final, len(names) - 1)]).value_counts()
        return {"actions": {str(a): int(k) for a, k in actions.items()}, "expected_value": float(self.value.sum()),
                "spent": float(self.cost.sum()), "budget": self.budget, "explored": int(self.explored.sum()),
                "allocation_gap": float(self.decided.gap), "value_finder": value_finder(self.decided)}


def plan_batch(catalogue: Catalogue, scored: Scored, data: DecisionData, as_of: pd.Timestamp,
               budget: float | None, exploration: float, seed: int = 0) -> BatchPlan | None:
    """The funnel over the whole scored base, then exploration; None without an uplift champion."""
    decided = decide_rows(catalogue, scored, data, as_of, budget=budget)
    if decided is None:
        return None
    choice = decided.choice
    used = np.bincount(choice[choice >= 0], minlength=len(decided.actions))
    rng = np.random.default_rng([seed, int(as_of.value // 10**9)])  # the same date explores the same way
    final, propensity, explored = decision_log.explore(
        choice, decided.allowed, exploration, rng, catalogue.capacities - used, decided.parts.cost,
        np.inf if budget is None else budget - float(_of(decided.parts.cost, choice).sum()))
    return BatchPlan(decided, final, propensity, explored, budget)


def decision_columns(catalogue: Catalogue, champions: Champions, plan: BatchPlan, rows: np.ndarray,
                     features: pd.DataFrame) -> pd.DataFrame:
    """DECISION_COLUMNS for the plan's rows `rows` (positions in its population order);
    features: those customers' features, in the same order (for the reasons' drivers)."""
    d, final = plan.decided, plan.final[rows]
    names = np.asarray([*d.actions, Action.NONE.value], dtype=object)
    pairs = [(int(r), int(final[i])) for i, r in enumerate(rows) if final[i] >= 0]
    by_row = features.set_axis(rows, axis=0)  # explain() finds a customer's features by their row in the plan
    reasons_of = dict(zip((r for r, _ in pairs), explain(catalogue, champions, by_row, d, pairs)))
    reasons = []
    for i, r in enumerate(rows):
        said = [EXPLORED] if plan.explored[r] else []
        said += reasons_of[int(r)] if final[i] >= 0 else [str(d.why[r]) or CONTROL]
        reasons.append(decision_log.reasons_json(said))
    return pd.DataFrame({
        "action": names[np.where(final >= 0, final, len(names) - 1)],
        "action_value": plan.value[rows], "action_cost": plan.cost[rows], "reasons": reasons,
        "propensity": plan.propensity[rows], "explored": plan.explored[rows],
    })


def _of(matrix: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Each customer's entry of a (customers, actions) matrix at their choice; 0 for none."""
    if matrix.shape[1] == 0:
        return np.zeros(len(choice))
    return np.where(choice >= 0, matrix[np.arange(len(choice)), np.maximum(choice, 0)], 0.0)
