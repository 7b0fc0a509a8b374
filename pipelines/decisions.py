"""The nightly batch's decisions for a whole base: the funnel (`serving.scoring.decide_rows`)
once over every customer in the population, so that the budget and the daily capacities
are allocated across the base; then exploration, and per chunk the decision columns with
reasons in words, appended to the workspace's decision log.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from clm.domain import NO_ACTION
from decisions import log as decision_log
from decisions.budget import decision_budget
from decisions.catalogue import Catalogue
from decisions.population import in_decision_population
from serving.decide import Decisions, value_finder
from serving.reasons import value_sentence
from serving.scoring import (
    SCORE_COLUMNS,
    Champions,
    DecisionData,
    Scored,
    decide_rows,
    with_drivers,
)
from training.frames import row_hashes
from training.models import Rows

DECISION_COLUMNS = ("action", "action_value", "action_cost", "reasons", "propensity", "explored")
# The nightly batch's output, whatever the engine.
OUTPUT_COLUMNS = (*SCORE_COLUMNS, "as_of", *DECISION_COLUMNS, "model_versions")
EXPLORED = "exploration: a random allowed action, so that every action's effect stays measurable"
CONTROL = "exploration: no action, drawn at random as the control group every action's effect is measured against"
NOTHING_PAYS = "no action: none is allowed and expected to pay"


@dataclass
class BatchPlan:
    """Everyone's decision: final[k] the index of the action (-1: none) of the k-th customer
    decided, after exploration; the customers in `decision_order` (order[k]: the k-th's
    position among the scored base's decided customers; `plan_frame` puts them back)."""

    decided: Decisions
    final: np.ndarray
    propensity: np.ndarray
    explored: np.ndarray
    budget: float | None
    order: np.ndarray
    value: np.ndarray = field(init=False)  # each customer's final action's expected value (0: none)
    cost: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.value = chosen_entry(self.decided.parts.total, self.final)
        self.cost = chosen_entry(self.decided.parts.cost, self.final)

    def summary(self) -> dict[str, object]:
        names = np.asarray([*self.decided.actions, NO_ACTION], dtype=object)
        actions = pd.Series(names[np.where(self.final >= 0, self.final, len(names) - 1)]).value_counts()
        return {"actions": {str(a): int(k) for a, k in actions.items()}, "expected_value": float(self.value.sum()),
                "spent": float(self.cost.sum()), "budget": self.budget, "explored": int(self.explored.sum()),
                "allocation_gap": float(self.decided.gap), "value_finder": value_finder(self.decided),
                "showcase": self.showcase()}

    def showcase(self) -> dict[str, object] | None:
        """The customer the budget left with the most value unserved (none chosen, none
        explored, an allowed action that pays): the API, which has no budget and for whom
        the batch logged no contact, recommends them that action. The example `clm run`
        and `clm serve` print. None when the budget left nobody out."""
        d = self.decided
        left = (d.fell_at == "selection") & (self.final < 0) & ~self.explored & (d.at_stake > 0)
        if not left.any():
            return None
        best = int(np.flatnonzero(left)[np.argmax(d.at_stake[left])])
        return {"customer_id": str(d.customer_id[best]), "value_left": float(d.at_stake[best])}


def plan_batch(catalogue: Catalogue, scored: Scored, data: DecisionData, as_of: pd.Timestamp,
               budget: float | None, exploration: float, seed: int = 0) -> BatchPlan | None:
    """The funnel over the whole scored base within the budget (`decisions.budget`: the
    given one, else the default for the customers decided for), then exploration; None
    without an uplift champion."""
    budget = decision_budget(budget, len(scored.funnel))
    order = decision_order(scored.funnel, scored.churn_change, scored.upgrade_change)
    decided = decide_rows(catalogue, in_decision_order(scored, order), data, as_of, budget=budget)
    if decided is None:
        return None
    choice = decided.choice
    used = np.bincount(choice[choice >= 0], minlength=len(decided.actions))
    rng = np.random.default_rng([seed, int(as_of.value // 10**9)])  # the same date explores the same way
    final, propensity, explored = decision_log.explore(
        choice, decided.allowed, exploration, rng, catalogue.capacities - used, decided.parts.cost,
        budget - float(chosen_entry(decided.parts.cost, choice).sum()))
    return BatchPlan(decided, final, propensity, explored, budget, order)


def decision_order(funnel: Rows, churn_change: np.ndarray | None, upgrade_change: np.ndarray | None) -> np.ndarray:
    """The order the batch decides the customers in (the allocation's ties, exploration's
    draws, the sums of values and costs), and the policy evaluation judges clm's policy in:
    by a hash of each one's funnel row (`Scored.funnel`) and effects, not by id, so that a
    base ingested with pseudonymised ids decides alike. (Customers with the same row and
    effects are interchangeable, but for their contact history.)"""
    frames = [funnel if isinstance(funnel, pd.DataFrame) else funnel.to_frame()]
    if churn_change is not None and upgrade_change is not None:
        frames.append(pd.DataFrame(np.column_stack([churn_change, upgrade_change])))
    return np.argsort(row_hashes(*frames), kind="stable")


def in_decision_order(scored: Scored, order: np.ndarray) -> Scored:
    """What `decide_rows` reads of scored (the funnel and the effects) in that order."""
    def rows(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[order]

    funnel = scored.funnel.take(order)
    return replace(scored, funnel=funnel.reset_index(drop=True) if isinstance(funnel, pd.DataFrame) else funnel,
                   churn_change=rows(scored.churn_change), upgrade_change=rows(scored.upgrade_change))


# What deciding needs of each customer in the population once the selection is made:
# computed once for the whole base, then read chunk by chunk (or partition by partition).
PLAN_COLUMNS = ("choice", "action_value", "action_cost", "propensity", "explored", "retention_value",
                "upgrade_value", "why")


def plan_frame(plan: BatchPlan) -> pd.DataFrame:
    """PLAN_COLUMNS per customer of the plan, in the population's order: the final choice
    (-1: none), its expected value, cost and value parts, its propensity, whether it was
    explored, and the funnel's reason for those left with none."""
    d, final = plan.decided, plan.final
    return pd.DataFrame({
        "choice": final, "action_value": plan.value, "action_cost": plan.cost, "propensity": plan.propensity,
        "explored": plan.explored, "retention_value": chosen_entry(d.parts.retention, final),
        "upgrade_value": chosen_entry(d.parts.upgrade, final), "why": d.why,  # its strings, not copies
    }).take(np.argsort(plan.order)).reset_index(drop=True)


def decision_columns(catalogue: Catalogue, champions: Champions, actions: list[str], planned: pd.DataFrame,
                     features: pd.DataFrame) -> pd.DataFrame:
    """DECISION_COLUMNS for some customers of a plan. planned: their rows of `plan_frame`;
    features: their features, in the same order (for the reasons' drivers); actions: the
    plan's contact actions (`Decisions.actions`)."""
    final = planned["choice"].to_numpy(dtype=int)
    names = np.asarray([*actions, NO_ACTION], dtype=object)
    chosen = np.flatnonzero(final >= 0)
    pairs = [(int(i), int(final[i])) for i in chosen]
    value, cost = planned["action_value"].to_numpy(float), planned["action_cost"].to_numpy(float)
    retention, upgrade = planned["retention_value"].to_numpy(float), planned["upgrade_value"].to_numpy(float)
    targets = [e.target for e in catalogue.contact_actions]
    sentences = [value_sentence(actions[j], targets[j], value[i], retention[i], upgrade[i], cost[i]) for i, j in pairs]
    reasons_of = dict(zip(chosen.tolist(), with_drivers(catalogue, champions, features.reset_index(drop=True),
                                                         pairs, sentences)))
    explored, why = planned["explored"].to_numpy(bool), planned["why"].to_numpy(object)
    reasons = []
    for i in range(len(final)):
        if explored[i] and final[i] < 0:
            said = [CONTROL]  # drawn at random: no action, the group every action is measured against
        else:
            said = [EXPLORED] if explored[i] else []
            said += reasons_of[i] if final[i] >= 0 else [str(why[i]) or NOTHING_PAYS]
        reasons.append(decision_log.reasons_json(said))
    return pd.DataFrame({
        "action": names[np.where(final >= 0, final, len(names) - 1)], "action_value": value, "action_cost": cost,
        "reasons": reasons, "propensity": planned["propensity"].to_numpy(float), "explored": explored,
    })


def chosen_entry(matrix: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Each customer's entry of a (customers, actions) matrix at their choice; 0 for none."""
    if matrix.shape[1] == 0:
        return np.zeros(len(choice))
    return np.where(choice >= 0, matrix[np.arange(len(choice)), np.maximum(choice, 0)], 0.0)


def with_decisions(scores: pd.DataFrame, chunk: pd.DataFrame, planned: pd.DataFrame | None, actions: list[str],
                   catalogue: Catalogue, champions: Champions, contractual: bool) -> pd.DataFrame:
    """A chunk's scores with its customers' decisions (nulls for those not decided for:
    `in_decision_population`), in OUTPUT_COLUMNS. chunk: the chunk's features; planned: the
    rows of the plan of those decided for (`pipelines.decisions.plan_frame`), in order; None
    without decisions."""
    scores = scores.assign(**{c: None for c in DECISION_COLUMNS}, model_versions=champions.versions_json())
    rows = in_decision_population(chunk, contractual)
    if planned is not None and rows.any():
        decided = decision_columns(catalogue, champions, actions, planned, chunk[rows].reset_index(drop=True))
        scores = scores.astype({c: object for c in DECISION_COLUMNS})
        for column in DECISION_COLUMNS:
            scores.loc[rows, column] = decided[column].to_numpy()
    scores = scores.astype({"action_value": float, "action_cost": float, "propensity": float})
    return scores[list(OUTPUT_COLUMNS)]


def log_rows(output: pd.DataFrame) -> pd.DataFrame:
    """The decision log's rows of a chunk of output: its customers with a decision."""
    return output[output["action"].notna()].rename(columns={"action_value": "expected_value"})
