"""Decide for a whole base at a date: the decision funnel (`serving.decide`) on the uplift
champion's effects, exploration, reasons in words, and the decision log. What `clm score`
adds to the scores when an uplift model exists.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm.domain import Action, Table
from clm.workspace import Workspace
from serving import decision_log
from serving.catalogue import Catalogue
from serving.decide import decide
from serving.reasons import top_drivers, value_sentence
from training.models import TrainedModel
from training.uplift import UpliftModel

DECISION_COLUMNS = ("action", "action_value", "action_cost", "reasons", "propensity", "explored")
# Which score an action answers to, by its target: its reasons are that score's drivers.
DRIVER_MODEL = {"retain": "churn", "activate": "churn", "win_back": "churn", "upgrade": "upsell", "refer": "upsell"}


@dataclass
class BatchDecisions:
    frame: pd.DataFrame  # customer_id and DECISION_COLUMNS
    budget: float | None
    spent: float
    gap: float


def with_consents(workspace: Workspace, customers: pd.DataFrame) -> pd.DataFrame:
    """customers with their channel consents (from the customers table; none if absent)."""
    consent_columns = ["consent_email", "consent_phone"]
    if not workspace.table_path(Table.CUSTOMERS).exists():
        return customers.assign(**{c: False for c in consent_columns})
    consents = workspace.read_table(Table.CUSTOMERS, columns=["customer_id", *consent_columns])
    return customers.drop(columns=consent_columns, errors="ignore").merge(consents, on="customer_id", how="left")


def contact_history(workspace: Workspace, before: pd.Timestamp) -> pd.DataFrame:
    """Contacts (not none) before a date: the logged ones and clm's own."""
    frames = []
    if workspace.table_path(Table.ACTIONS).exists():
        frames.append(workspace.read_table(Table.ACTIONS, columns=["customer_id", "action", "event_time"]))
    own = decision_log.read_decisions(workspace)
    if len(own):
        frames.append(own.rename(columns={"decided_at": "event_time"})[["customer_id", "action", "event_time"]])
    if not frames:
        return pd.DataFrame({"customer_id": pd.Series(dtype=str), "action": pd.Series(dtype=str),
                             "event_time": pd.Series(dtype="datetime64[ns, UTC]")})
    history = pd.concat(frames, ignore_index=True)
    return history[(history.event_time < before) & (history.action != Action.NONE.value)]


def decide_batch(workspace: Workspace, catalogue: Catalogue, customers: pd.DataFrame, as_of: pd.Timestamp,
                 uplift: UpliftModel, scorers: dict[str, TrainedModel], plan_prices: np.ndarray,
                 budget: float | None, exploration: float, seed: int = 0) -> BatchDecisions:
    """Decisions for every row of customers (the funnel's columns and the models' features),
    logged in the workspace's decision log. scorers: the churn and upsell champions whose
    drivers become the reasons."""
    history = contact_history(workspace, as_of)
    effects = uplift.effects(customers)
    decided = decide(catalogue, customers, effects["churn"], effects["upgrade"], history, as_of, plan_prices,
                     budget=budget)
    ids, choice = decided.actions, decided.choice
    used = np.bincount(choice[choice >= 0], minlength=len(ids))
    rng = np.random.default_rng([seed, int(as_of.value // 10**9)])  # the same date explores the same way
    final, propensity, explored = decision_log.explore(
        choice, decided.allowed, exploration, rng, catalogue.capacities - used, decided.parts.cost,
        np.inf if budget is None else budget - float(_of(decided.parts.cost, choice).sum()))
    names = np.asarray([*ids, Action.NONE.value], dtype=object)
    action = names[np.where(final >= 0, final, len(ids))]
    value, cost = _of(decided.parts.total, final), _of(decided.parts.cost, final)
    reasons = _reasons(catalogue, customers, decided, final, explored, scorers)
    frame = pd.DataFrame({"customer_id": customers["customer_id"].to_numpy(), "action": action,
                          "action_value": value, "action_cost": cost, "reasons": reasons, "propensity": propensity,
                          "explored": explored})
    log = frame.rename(columns={"action_value": "expected_value"}).drop(columns="action_cost")
    decision_log.write_batch(workspace, as_of, log)
    return BatchDecisions(frame, budget, float(cost.sum()), decided.gap)


def _of(matrix: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Each customer's entry of a (customers, actions) matrix at their choice; 0 for none."""
    if matrix.shape[1] == 0:
        return np.zeros(len(choice))
    return np.where(choice >= 0, matrix[np.arange(len(choice)), np.maximum(choice, 0)], 0.0)


def _reasons(catalogue: Catalogue, customers: pd.DataFrame, decided, final: np.ndarray,  # type: ignore[no-untyped-def]
             explored: np.ndarray, scorers: dict[str, TrainedModel]) -> list[str]:
    """Per customer, a JSON list: the value and its parts, then the top drivers of the score
    the action answers to; for none, why; for an explored action, that it was exploration."""
    ids, entries = decided.actions, catalogue.contact_actions
    out: list[list[str]] = [[] for _ in range(len(customers))]
    by_model: dict[str, list[int]] = {}
    for i, j in enumerate(final):
        if explored[i]:
            out[i].append("exploration: a random allowed action, so that every action's effect stays measurable")
        if j < 0:
            out[i].append(decided.why[i] or "do nothing: exploration's control group")
            continue
        p = decided.parts
        out[i].append(value_sentence(ids[j], p.total[i, j], p.retention[i, j], p.upgrade[i, j], p.cost[i, j]))
        model = DRIVER_MODEL.get(entries[j].target)
        if model in scorers:
            by_model.setdefault(model, []).append(i)
    for model, rows in by_model.items():
        for i, drivers in zip(rows, top_drivers(scorers[model], customers.iloc[rows])):
            out[i].extend(drivers)
    return [decision_log.reasons_json(r) for r in out]
