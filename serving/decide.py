"""The decision funnel: which action each customer gets, and why. One implementation, called
by the nightly batch, the real-time API and the policy evaluation.

Named steps, each counting what it dropped per action:

1. eligibility     consent for the channel, stage, segment, tenure (`serving.eligibility`)
2. applicability   cooldowns and the contact limit, from the contact history
3. suitability     the models' scores within the action's thresholds
4. value           the expected incremental value (`decisions.value`) must be positive
5. arbitration     score = value x the action's business weight x the context weight
6. selection       per customer the highest score (no budget, no capacity), or, for a
                   batch under a budget and daily capacities, the allocation that
                   maximises the total score (`serving.allocation`)

"Do nothing" is the answer where no action survives, with the reason: the step at which
the last contact action fell. Context (what the caller says about the moment) only
multiplies weights (`context_weights`); levers live in the catalogue.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clm.domain import NO_ACTION
from decisions.catalogue import Catalogue, Context
from decisions.value import VALUE_COLUMNS, ValueParts, action_costs, customer_values, expected_value
from serving.allocation import allocate
from serving.eligibility import Contacts, allowed_actions
from training.models import Columns, Rows, column

STEPS = ("eligibility", "applicability", "suitability", "value", "selection")
NONE = NO_ACTION


def context_weights(catalogue: Catalogue, context: Context | None) -> np.ndarray:
    """Per contact action (catalogue order): the weight the context adds (1 = none)."""
    entries = catalogue.contact_actions
    weights = np.ones(len(entries))
    if context is None:
        return weights
    by_target = catalogue.context.intent.get(context.intent or "", {})
    for j, entry in enumerate(entries):
        weights[j] *= by_target.get(entry.target, 1.0)
        if context.channel is not None and entry.channel == context.channel:
            weights[j] *= catalogue.context.same_channel
    return weights


@dataclass
class Decisions:
    """The funnel's outcome for a frame of customers.

    actions: the contact action ids, in the column order of every (customers, actions) array;
    action: each customer's action (`none` for no contact), choice its index; allowed: the
    pairs the rules let through (eligibility to suitability); value/retention/upgrade/cost:
    the chosen action's expected value and its parts (0 for none); score: the arbitration
    score of every pair (NaN where the pair did not reach arbitration); parts: the value
    parts of every pair; dropped[step][action]: pairs that step removed; why and fell_at: for
    customers left with none, the reason and the step where their last action fell."""

    customer_id: np.ndarray
    actions: list[str]
    action: np.ndarray
    choice: np.ndarray  # index of each customer's action in `actions`, -1 for none
    allowed: np.ndarray  # (customers, actions): the pairs the rules allow (through suitability)
    value: np.ndarray
    retention: np.ndarray
    upgrade: np.ndarray
    cost: np.ndarray
    score: np.ndarray
    parts: ValueParts
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    why: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    fell_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # the step, for those with none
    at_stake: np.ndarray = field(default_factory=lambda: np.zeros(0))  # what the step cost them
    gap: float = 0.0

    def ranked(self, i: int, limit: int) -> list[tuple[str, float]]:
        """Customer i's actions that reached arbitration, best score first: (action, score)."""
        row = self.score[i]
        order = [j for j in np.argsort(-np.nan_to_num(row, nan=-np.inf), kind="stable") if np.isfinite(row[j])]
        return [(self.actions[j], float(row[j])) for j in order[:limit]]


def _pick(score: np.ndarray, candidate: np.ndarray, cost: np.ndarray, catalogue: Catalogue,
          budget: float | None, per_customer: bool = False) -> tuple[np.ndarray, float]:
    """Index of each customer's action (-1: none) and the allocation's proven gap; each
    customer's best where nothing is shared (per_customer, or no budget and no capacity)."""
    capacity = catalogue.capacities
    if per_customer or (budget is None and np.isinf(capacity).all()):
        masked = np.where(candidate, score, -np.inf)
        best = masked.argmax(axis=1) if masked.shape[1] else np.zeros(len(masked), dtype=int)
        return np.where(candidate.any(axis=1), best, -1), 0.0
    result = allocate(np.where(candidate, score, 0.0), cost, candidate, np.inf if budget is None else budget, capacity)
    return result.choice, result.gap


def decide(catalogue: Catalogue, customers: Rows, churn_change: np.ndarray, upgrade_change: np.ndarray,
           history: pd.DataFrame | Contacts, now: pd.Timestamp, plan_prices: np.ndarray, context: Context | None = None,
           budget: float | None = None, per_customer: bool = False) -> Decisions:
    """Run the funnel. customers: `serving.eligibility.CUSTOMER_COLUMNS` and the value
    rule's columns (a DataFrame, or `Columns`); churn_change, upgrade_change: (customers,
    catalogue.contact_ids) effects of each action on the probabilities (predicted by the
    uplift model, or true ones); history: past contacts (a frame, or `Contacts`).
    per_customer: each customer decided on their own, as the API does (no budget; the daily
    capacities are the batch's to share out across the base, so no solver runs)."""
    if per_customer and budget is not None:
        raise ValueError("a budget is shared across customers: it cannot be given with per_customer")
    entries = catalogue.contact_actions
    ids = catalogue.contact_ids
    allowed = allowed_actions(catalogue, customers, history, now)
    contact = [allowed.names.index(a) for a in ids]
    passed = allowed.matrix[:, contact]
    values = customer_values(_value_columns(customers), plan_prices, catalogue.value)
    cost = action_costs(entries, values.monthly_revenue)
    parts = expected_value(churn_change, upgrade_change, values, cost)
    value = parts.total
    positive = passed & (value > 0)
    weight = np.array([e.weight for e in entries]) * context_weights(catalogue, context)
    score = np.where(positive, value * weight, np.nan)
    choice, gap = _pick(np.nan_to_num(score, nan=0.0), positive, cost, catalogue, budget, per_customer)

    n = len(customers)
    rows = np.arange(n)
    chosen = choice >= 0
    pick = np.where(chosen, choice, 0)

    def chosen_of(matrix: np.ndarray) -> np.ndarray:
        return np.where(chosen, matrix[rows, pick], 0.0) if matrix.shape[1] else np.zeros(n)

    dropped = {step: dict(counts) for step, counts in allowed.dropped.items()}
    dropped["value"] = {a: int((passed[:, j] & ~positive[:, j]).sum()) for j, a in enumerate(ids)}
    dropped["selection"] = {a: int((positive[:, j] & (choice != j)).sum()) for j, a in enumerate(ids)}
    action = np.where(chosen, np.asarray(ids + [NONE], dtype=object)[np.where(chosen, choice, len(ids))], NONE)
    in_order = [a for a in allowed.names if a != NO_ACTION]  # the steps' column order
    order = [in_order.index(a) for a in ids]
    survivors = {step: matrix[:, order] for step, matrix in allowed.steps.items()}
    why, fell_at, at_stake = _why_nothing(survivors, value, positive, chosen, ids)
    return Decisions(
        customer_id=column(customers, "customer_id"), actions=ids, action=action, choice=choice, allowed=passed,
        value=chosen_of(value), retention=chosen_of(parts.retention), upgrade=chosen_of(parts.upgrade),
        cost=chosen_of(cost), score=score, parts=parts, dropped=dropped,
        why=why, fell_at=fell_at, at_stake=at_stake, gap=gap,
    )


def _value_columns(customers: Rows) -> pd.DataFrame:
    """What the value rule reads of the customers, as the frame it takes (from `Columns`, a
    frame of those columns alone)."""
    if not isinstance(customers, Columns):
        return customers
    return pd.DataFrame({c: customers[c] for c in VALUE_COLUMNS if c in customers}, index=pd.RangeIndex(len(customers)))


WHY_NOTHING = {
    "eligibility": "eligible for no action (consent, stage, segment or tenure)",
    "applicability": "contacted recently: cooldowns or the contact limit",
    "suitability": "the actions' thresholds on churn or upsell probability exclude them",
    "selection": "the budget or a capacity went to customers where actions are worth more",
}


def _why_nothing(survivors: dict[str, np.ndarray], value: np.ndarray, positive: np.ndarray, chosen: np.ndarray,
                 ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each customer left with none: the reason in words, the step where their last
    contact action fell, and the value at stake there (the best expected value among the
    actions that reached that step, if positive)."""
    why = np.full(chosen.size, "", dtype=object)
    fell_at = np.full(chosen.size, "", dtype=object)
    at_stake = np.zeros(chosen.size)
    reaching = {"eligibility": np.ones_like(positive), "applicability": survivors["eligibility"],
                "suitability": survivors["applicability"], "value": survivors["suitability"], "selection": positive}
    passed = survivors["suitability"]
    best_value = np.where(passed, value, -np.inf)
    for i in np.flatnonzero(~chosen):
        step = next((s for s in ("eligibility", "applicability", "suitability") if not survivors[s][i].any()), None)
        if step is not None:
            why[i] = WHY_NOTHING[step]
        elif not positive[i].any():
            step = "value"
            j = int(best_value[i].argmax())
            why[i] = f"no action pays: the best, {ids[j]}, is worth {value[i, j]:.2f} after costs"
        else:
            step = "selection"
            why[i] = WHY_NOTHING[step]
        fell_at[i] = step
        at_stake[i] = max(np.where(reaching[step][i], value[i], 0.0).max(initial=0.0), 0.0)
    return why, fell_at, at_stake


def value_finder(decisions: Decisions) -> list[dict[str, object]]:
    """Of the customers who got no action: how many fell at each funnel step, and the value
    the step left on the table: each customer's best expected value among the actions
    that reached that step (positive only). Eligibility and applicability are the rules'
    cost; selection is the budget's and the capacities'; at the value step nothing pays."""
    rows = []
    for step in STEPS:
        fell = decisions.fell_at == step
        rows.append({"step": step, "customers": int(fell.sum()), "value_left": float(decisions.at_stake[fell].sum()),
                     "with_a_paying_action": int((fell & (decisions.at_stake > 0)).sum())})
    return rows
