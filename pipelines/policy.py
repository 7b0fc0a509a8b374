"""Policy evaluation against the simulator's truth: what `clm evaluate-policy` runs.

At a decision date D (a month's first day), the base is every customer decided for
(`decisions.population`), read as the nightly batch reads them (its own scoring step over
the same snapshot files: `decision_base`), so clm's choices are the batch's. Every policy
faces the same funnel (eligibility, contact history, thresholds: `serving.eligibility`),
the same budget (`decisions.budget`) and capacities, and
is judged by the same accounting: the value rule (`decisions.value`) applied to the *true*
effects of what it chose (`ground_truth_effects`, priced at the snapshot of D - 1 day), so
no policy is judged by its own models.

  clm         the decision funnel on the uplift champion's predicted effects, allocated
              by the optimiser (`serving.decide`)
  oracle      the same funnel and optimiser on the true effects: the best any policy can do
  churn_risk  the classic without uplift models, made fair: the highest churn probability
              first, each given the allowed retention action with the best *average* effect
              in the logs (`training.uplift.average_effects` over the decisions of the
              matured months before D), only where that average is worth its cost for the
              customer, while the budget and capacities last
  random      customers in random order, each given a random allowed action, likewise
  nothing     no contact
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from clm.contracts import require_valid
from clm.domain import Table
from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.catalogue import Catalogue
from decisions.value import action_costs, customer_values, expected_value
from features.build import build_features
from features.snapshots import snapshot_chunks
from pipelines.decisions import decision_order
from pipelines.score import CHUNK_ROWS
from serving.decide import decide, value_finder
from serving.scoring import load_champions, load_decision_data, score_rows
from training import registry
from training.frames import KEYS
from training.labels import LabelConfig, candidate_cutoffs, outcome_labels
from training.uplift import UpliftModel, average_effects, decision_rows

POLICIES = ("clm", "oracle", "churn_risk", "random", "nothing")
SEED = 11


@dataclass
class PolicyResult:
    """A policy's choices judged by the truth: totals over the base, and per 1,000 customers."""

    name: str
    customers: int
    value: float
    cost: float
    treated: int
    actions: dict[str, int] = field(default_factory=dict)
    value_finder: list[dict[str, object]] = field(default_factory=list)  # the funnel's policies only
    choice: np.ndarray | None = field(default=None, repr=False)  # per customer of the base: action index, -1 none

    def as_dict(self) -> dict[str, Any]:
        per = 1000.0 / max(self.customers, 1)
        out = {"value_per_1000": self.value * per, "cost_per_1000": self.cost * per,
               "customers_treated": self.treated, "actions": self.actions, "value": self.value, "cost": self.cost}
        return out | ({"value_finder": self.value_finder} if self.value_finder else {})


def _effects_matrix(effects: pd.DataFrame, ids: pd.Series, column: str, actions: Sequence[str]) -> np.ndarray:
    """(customers, actions) true effects; an action the simulation does not know changes nothing."""
    table = effects.pivot(index="customer_id", columns="action", values=column).reindex(ids)
    return table.reindex(columns=list(actions)).fillna(0.0).to_numpy()


@dataclass
class DecisionBase:
    """The base at one date as the funnel sees it, and the models it decides with."""

    customers: pd.DataFrame  # features, stage, consents, churn and upsell probability
    funnel: pd.DataFrame  # what the batch's funnel reads of them (`Scored.funnel`): its decision order's input
    history: pd.DataFrame  # contacts before the date
    uplift: UpliftModel
    uplift_version: str
    uplift_note: str  # set when the uplift model is not the champion
    plan_prices: np.ndarray
    as_of: pd.Timestamp
    contractual: bool


@dataclass
class PolicyInputs:
    """What every policy decides from and is judged by, for the base at one date: the base
    as the funnel sees it, the uplift model's predicted effects and the simulator's true
    ones, each (customers, the catalogue's contact actions)."""

    base: DecisionBase
    predicted_churn: np.ndarray
    predicted_upgrade: np.ndarray
    true_churn: np.ndarray
    true_upgrade: np.ndarray
    logged_churn_effects: dict[str, float] = field(default_factory=dict)  # action -> average effect in the logs


def check_decision_date(as_of: pd.Timestamp) -> None:
    if as_of != as_of.normalize() or as_of.day != 1:
        raise ClmError(f"--as-of {as_of:%Y-%m-%d} is not a month's first day: decisions, and the truth that "
                       "judges them, are taken on month starts (e.g. 2025-06-01).")


def decision_base(workspace: Workspace, as_of: pd.Timestamp, tracking_uri: str | None = None) -> DecisionBase:
    """Every customer decided for at as_of (`in_decision_population`), as the nightly batch
    sees them: its own step 1 (`serving.scoring.score_rows`) over the same snapshot files
    and consents, so the funnel reads the very inputs the batch decides from (features, the
    stage by the rules, consents, the champions' scores, null outside the model population);
    the contact history before as_of, and the uplift champion (or,
    without one, the latest challenger, said in uplift_note)."""
    manifest = require_valid(workspace)
    client = registry.connect(workspace, tracking_uri)
    versions = {m: registry.alias_version(client, m, registry.CHAMPION) for m in ("churn", "upsell", "uplift")}
    uplift_note = ""
    uplift_version = versions["uplift"]
    if uplift_version is None:
        uplift_version = registry.alias_version(client, "uplift", registry.CHALLENGER)
        if uplift_version is None:
            raise ClmError(f"No uplift model in {workspace.root}: run `clm train --models uplift` first.")
        held = uplift_version
        uplift_note = (f"uplift v{held} is a challenger (the gate kept it back; `clm models list` says why): "
                       "clm's policy is judged with it anyway")
    contractual = manifest.business == "contractual"
    build_features(workspace, [as_of], raw_checked=True)
    frame = pd.concat(list(snapshot_chunks(workspace, as_of, CHUNK_ROWS)), ignore_index=True)
    data = load_decision_data(workspace, as_of)
    scoring = replace(load_champions(client), uplift=None)  # the effects: the caller's, in its catalogue's order
    scored = score_rows(scoring, frame, contractual, data.consents, [])
    funnel = scored.funnel.drop(columns="customer_id")
    base = frame[scored.decided].reset_index(drop=True).assign(**{c: funnel[c].to_numpy() for c in funnel.columns})
    uplift = registry.load_version(client, "uplift", uplift_version)
    assert isinstance(uplift, UpliftModel)  # the registry's uplift models are UpliftModels
    return DecisionBase(base, scored.funnel, data.history.frame, uplift, uplift_version, uplift_note,
                        data.plan_prices, as_of, contractual)


def read_true_effects(workspace: Workspace, as_of: pd.Timestamp) -> pd.DataFrame:
    """The simulator's true effects of a decision at as_of (priced at the snapshot of the
    day before); a ClmError on data without them, or for a date they do not cover."""
    manifest = workspace.read_manifest()
    effects_path = workspace.table_path(Table.GROUND_TRUTH_EFFECTS)
    if not effects_path.exists():
        raise ClmError(f"{workspace.root} holds no true effects (ground_truth_effects): policies can be judged by the "
                       "truth only on simulated data.")
    effects = pd.read_parquet(effects_path, filters=[("snapshot_date", "==", (as_of - pd.Timedelta(days=1)).date())])
    if effects.empty:
        raise ClmError(f"No true effects for a decision on {as_of:%Y-%m-%d}: the simulation covers "
                       f"{manifest.data_start[:10]} to {manifest.data_end[:10]}; choose a month start inside it.")
    return effects


def true_effect_matrices(effects: pd.DataFrame, ids: pd.Series, actions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(churn, upgrade) true effects, (customers, actions), for the customer ids given."""
    return (_effects_matrix(effects, ids, "effect_churn_90d", actions),
            _effects_matrix(effects, ids, "effect_upgrade_90d", actions))


def load_inputs(workspace: Workspace, as_of: pd.Timestamp, catalogue: Catalogue,
                tracking_uri: str | None = None) -> PolicyInputs:
    """The inputs of every policy, effects in the catalogue's order of contact actions."""
    check_decision_date(as_of)
    effects = read_true_effects(workspace, as_of)  # refuses before the work of deciding
    base = decision_base(workspace, as_of, tracking_uri)
    true_churn, true_upgrade = true_effect_matrices(effects, base.customers["customer_id"], catalogue.contact_ids)
    predicted = base.uplift.effects(base.customers, catalogue.contact_ids)
    return PolicyInputs(base, predicted["churn"], predicted["upgrade"], true_churn, true_upgrade,
                        logged_churn_effects(workspace, as_of, base.contractual))


def logged_churn_effects(workspace: Workspace, as_of: pd.Timestamp, contractual: bool) -> dict[str, float]:
    """Each action's average churn effect over the logged decisions of the months before
    as_of whose outcomes had matured by then (what a business knows of its campaigns)."""
    config = LabelConfig()
    cutoffs = candidate_cutoffs(workspace.read_manifest(), as_of, config.horizon_days)
    rows = decision_rows(workspace, cutoffs) if cutoffs else pd.DataFrame()
    if rows.empty:
        return {}
    labels = outcome_labels(workspace, sorted(set(rows.event_timestamp)), config, contractual, rows=rows[KEYS])
    return average_effects(rows.merge(labels[[*KEYS, "churn"]], on=KEYS, how="inner"))


def churn_risk_choice(risk: np.ndarray, average_value: np.ndarray, allowed: np.ndarray, cost: np.ndarray,
                      budget: float, capacity: np.ndarray) -> np.ndarray:
    """The fair churn-risk policy: customers by falling risk, each given the allowed action
    (columns: the catalogue's contact actions; only retention actions have an average value,
    NaN elsewhere) of the best average value for them, where it is above 0, while the
    budget and capacities last. Returns each customer's action index (-1: none)."""
    worth = np.where(allowed & np.isfinite(average_value) & (average_value > 0), average_value, -np.inf)
    best = worth.argmax(axis=1) if worth.shape[1] else np.zeros(len(worth), dtype=int)
    paying = np.isfinite(worth[np.arange(len(worth)), best]) if worth.shape[1] else np.zeros(len(worth), dtype=bool)
    options = [[int(best[i])] if paying[i] else [] for i in range(len(worth))]
    return _in_order(np.argsort(-np.nan_to_num(risk, nan=-1.0), kind="stable"), options, cost, budget, capacity)


def _in_order(order: np.ndarray, options: Sequence[Sequence[int]], cost: np.ndarray, budget: float,
              capacity: np.ndarray) -> np.ndarray:
    """First come, first served: customers in `order`, each given the first of their
    options (action indices, best first) that the remaining budget and capacity allow."""
    choice = np.full(cost.shape[0], -1)
    left, used = budget, np.zeros(cost.shape[1])
    for i in order:
        for j in options[i]:
            if cost[i, j] <= left and used[j] < capacity[j]:
                choice[i], left, used[j] = j, left - cost[i, j], used[j] + 1
                break
    return choice


def evaluate(catalogue: Catalogue, inputs: PolicyInputs, budget: float, seed: int = SEED) -> dict[str, PolicyResult]:
    """Every policy at one budget, judged by the true effects."""
    base, c = inputs.base, inputs.base.customers
    entries, ids = catalogue.contact_actions, catalogue.contact_ids
    values = customer_values(c, base.plan_prices, catalogue.value)
    cost = action_costs(entries, values.monthly_revenue)
    true_value = expected_value(inputs.true_churn, inputs.true_upgrade, values, cost).total
    capacity = catalogue.capacities
    n = len(c)
    choices: dict[str, np.ndarray] = {}
    finders = {}
    # Decided in the nightly batch's order (its allocation's ties), then put back in the base's.
    order = decision_order(base.funnel, inputs.predicted_churn, inputs.predicted_upgrade)
    back = np.argsort(order)
    in_order = c.take(order).reset_index(drop=True)
    for name, churn, upgrade in (("clm", inputs.predicted_churn, inputs.predicted_upgrade),
                                 ("oracle", inputs.true_churn, inputs.true_upgrade)):
        decisions = decide(catalogue, in_order, churn[order], upgrade[order], base.history, base.as_of,
                           base.plan_prices, budget=budget)
        choices[name], finders[name] = decisions.choice[back], value_finder(decisions)
    allowed = decisions.allowed[back]  # the rules' verdict, the same for every policy
    logged = np.array([inputs.logged_churn_effects.get(e.id, np.nan) if e.target == "retain" else np.nan
                       for e in entries])
    average_value = -logged[None, :] * values.keep_value[:, None] - cost
    choices["churn_risk"] = churn_risk_choice(c["churn_probability"].to_numpy(dtype=float), average_value, allowed,
                                              cost, budget, capacity)
    rng = np.random.default_rng(seed)
    choices["random"] = _in_order(rng.permutation(n),
                                  [list(rng.permutation(np.flatnonzero(allowed[i]))) for i in range(n)],
                                  cost, budget, capacity)
    choices["nothing"] = np.full(n, -1)
    results = {}
    for name in POLICIES:
        choice = choices[name]
        chosen = choice >= 0
        rows, cols = np.flatnonzero(chosen), choice[chosen]
        counts = pd.Series(np.asarray(ids, dtype=object)[cols]).value_counts()
        results[name] = PolicyResult(
            name, n, value=float(true_value[rows, cols].sum()), cost=float(cost[rows, cols].sum()),
            treated=int(chosen.sum()), actions={a: int(counts.get(a, 0)) for a in ids},
            value_finder=finders.get(name, []), choice=choice,
        )
    return results


def report_json(results: dict[str, PolicyResult], inputs: PolicyInputs, budget: float) -> dict[str, object]:
    """The JSON report: one entry per policy name, and `run` with the settings."""
    out: dict[str, object] = {name: r.as_dict() for name, r in results.items()}
    base = inputs.base
    out["run"] = {"as_of": f"{base.as_of:%Y-%m-%d}", "budget": budget, "customers": len(base.customers),
                  "uplift_version": base.uplift_version, "note": base.uplift_note}
    return out
