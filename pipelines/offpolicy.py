"""Off-policy evaluation of clm's policy from the logged decisions: the estimate real data
allows (`training.ope`), and on simulated data its check against the truth.

At a cutoff T whose outcome window has matured (T + H within the data), the decisions the
logged policy made at T are the evidence: for each, the action taken, its propensity, and
the reward that followed by the value rule (not churning is worth the keep value, an
upgrade the upgrade margin; minus the cost of the action taken). clm's policy decides for
the same customers (the funnel per customer, no budget: each one's best paying action or
none); IPS, SNIPS and DR estimate its incremental value per decision over doing nothing.
The reward model of DR is the uplift model's: its control probabilities plus its effects.

On simulated data the truth of the same quantity is the mean, over those decisions, of
the true incremental value of the action clm chose (the true effects, same value rule).

The estimate is honest only out of sample: at a cutoff the uplift model was trained on,
clm's policy is fitted to that very noise and IPS rewards it (figures in the README's
policy section). `clm evaluate-policy` therefore
estimates at a cutoff after the model's training and validation windows, and the fixed
policies (`everyone_allowed`) check the estimators at any cutoff.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clm.domain import NO_ACTION
from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.catalogue import Catalogue
from decisions.value import action_costs, customer_values, expected_value
from pipelines.policy import decision_base, read_true_effects, true_effect_matrices
from serving.decide import decide
from serving.eligibility import allowed_actions
from training.frames import KEYS, in_id_free_order
from training.labels import LabelConfig, candidate_cutoffs, outcome_labels
from training.ope import Estimate, incremental_value
from training.propensity import estimate_assignment
from training.uplift import UpliftModel, decision_rows, realised_value

NONE = NO_ACTION
HORIZON_DAYS = LabelConfig().horizon_days  # the uplift models' outcome window


@dataclass
class OffPolicyReport:
    cutoff: pd.Timestamp
    decisions: int
    policy_actions: dict[str, int]
    estimates: dict[str, Estimate]  # per decision
    truth: float | None  # per decision; None on real data
    in_sample: str = ""  # why the estimate flatters clm's policy (the window its model was selected on)

    def as_dict(self) -> dict[str, Any]:
        per = 1000.0
        out: dict[str, object] = {
            "cutoff": f"{self.cutoff:%Y-%m-%d}", "decisions": self.decisions, "policy_actions": self.policy_actions,
            "in_sample": self.in_sample or None,
            "truth_per_1000": None if self.truth is None else self.truth * per,
        }
        for name, e in self.estimates.items():
            out[name] = {"value_per_1000": e.value * per, "low": e.low * per, "high": e.high * per,
                         "covers_truth": None if self.truth is None else e.covers(self.truth)}
        return out


def latest_matured_cutoff(workspace: Workspace, as_of: pd.Timestamp, horizon_days: int) -> pd.Timestamp | None:
    """as_of if its outcome window has matured, else the latest month start whose has (None
    if there is none)."""
    manifest = workspace.read_manifest()
    if as_of + pd.Timedelta(days=horizon_days) <= manifest.end:
        return as_of
    cutoffs = candidate_cutoffs(manifest, min(as_of, manifest.end), horizon_days)
    return cutoffs[-1] if cutoffs else None


def clm_offpolicy(workspace: Workspace, catalogue: Catalogue, as_of: pd.Timestamp,
                  tracking_uri: str | None = None) -> tuple[OffPolicyReport | None, str]:
    """clm's policy estimated off-policy at the latest decision date at or before as_of
    whose outcomes have matured; (None, why) where there is none, or where the uplift model
    learned from that date. At the date it was chosen and promoted on (the latest matured
    one, as a rule) the estimate is made and marked in sample (`OffPolicyReport.in_sample`)."""
    cutoff = latest_matured_cutoff(workspace, as_of, HORIZON_DAYS)
    if cutoff is None:
        return None, f"no decision date at or before {as_of:%Y-%m-%d} has a matured {HORIZON_DAYS}-day outcome window"
    evidence = logged_evidence(workspace, catalogue, cutoff, tracking_uri, HORIZON_DAYS)
    flattered = evidence.uplift.in_sample(cutoff)
    fitted = evidence.uplift.fitted_through
    if fitted is not None and cutoff <= fitted:
        return None, f"the latest matured decision date is {cutoff:%Y-%m-%d}, and {flattered}: an estimate would flatter it"
    report = estimate(evidence, clm_targets(evidence, catalogue))
    report.in_sample = flattered
    return report, ""


@dataclass
class LoggedEvidence:
    """The decisions logged at one cutoff, as every estimator needs them: one row per
    decision; q: the reward model, (decisions, [none, *catalogue actions]); true_value: the
    true incremental value of each catalogue action (None on real data)."""

    cutoff: pd.Timestamp
    rows: pd.DataFrame  # the funnel's columns, action, propensity, churn, upsell
    history: pd.DataFrame
    plan_prices: np.ndarray
    actions: list[str]  # none first, then the catalogue's contact actions
    reward: np.ndarray
    q: np.ndarray
    effects: dict[str, np.ndarray]  # predicted, (decisions, the catalogue's contact actions)
    true_value: np.ndarray | None
    uplift: UpliftModel


def logged_evidence(workspace: Workspace, catalogue: Catalogue, cutoff: pd.Timestamp,
                    tracking_uri: str | None = None, horizon_days: int = HORIZON_DAYS) -> LoggedEvidence:
    base = decision_base(workspace, cutoff, tracking_uri)
    logged = decision_rows(workspace, [cutoff])
    if logged.empty:
        raise ClmError(f"No logged decisions on {cutoff:%Y-%m-%d}: nothing to estimate a policy's value from.")
    labels = outcome_labels(workspace, [cutoff], LabelConfig(horizon_days=horizon_days), base.contractual)
    rows = in_id_free_order(base.customers.merge(logged, on=KEYS, how="inner").merge(
        labels[[*KEYS, "churn", "upsell"]], on=KEYS, how="inner"))  # draws by position: the same whatever the ids
    # A targeted campaign's probabilities, estimated as training does (`training.propensity`, here from the uplift
    # model's features); an action without support is left out.
    assignment = estimate_assignment(rows, base.uplift.features)
    rows = assignment.rows
    if assignment.unsupported and not (rows["action"] != NONE).any():
        raise ClmError(f"No logged action on {cutoff:%Y-%m-%d} can be judged: " + "; ".join(
            f"{action}: {why}" for action, why in assignment.unsupported.items()) + ".")
    entries = catalogue.contact_actions
    actions = [NONE, *catalogue.contact_ids]
    values = customer_values(rows, base.plan_prices, catalogue.value)
    cost = np.column_stack([np.zeros(len(rows)), action_costs(entries, values.monthly_revenue)])
    n = np.arange(len(rows))
    taken_at = np.array([actions.index(a) if a in actions else -1 for a in rows["action"]])
    if (taken_at < 0).any():
        unknown = sorted(set(rows["action"][taken_at < 0]))
        raise ClmError(f"Logged action(s) {', '.join(unknown)} are not in the catalogue: their cost is unknown.")
    reward = realised_value(rows, values) - cost[n, taken_at]
    effects = base.uplift.effects(rows, catalogue.contact_ids)
    control = base.uplift.control_probabilities(rows)
    p_churn0, p_up0 = np.nan_to_num(control["churn"]), np.nan_to_num(control["upgrade"])
    churn = np.column_stack([p_churn0, p_churn0[:, None] + effects["churn"]])
    upgrade = np.column_stack([p_up0, p_up0[:, None] + effects["upgrade"]])
    q = -churn * values.keep_value[:, None] + upgrade * values.upgrade_margin[:, None] - cost
    true_value = None
    try:
        true_churn, true_upgrade = true_effect_matrices(read_true_effects(workspace, cutoff), rows["customer_id"],
                                                        catalogue.contact_ids)
    except ClmError:  # real data: no truth to compare with
        pass
    else:
        contact = expected_value(true_churn, true_upgrade, values, cost[:, 1:]).total
        true_value = np.column_stack([np.zeros(len(rows)), contact])
    return LoggedEvidence(cutoff, rows, base.history, base.plan_prices, actions, reward, q, effects, true_value,
                          base.uplift)


def clm_targets(evidence: LoggedEvidence, catalogue: Catalogue) -> np.ndarray:
    """clm's policy on the logged customers: the funnel per customer (no budget)."""
    rows = evidence.rows
    decided = decide(catalogue, rows, evidence.effects["churn"], evidence.effects["upgrade"], evidence.history,
                     evidence.cutoff, evidence.plan_prices)
    return decided.action.astype(str)


def everyone_allowed(evidence: LoggedEvidence, catalogue: Catalogue, action: str) -> np.ndarray:
    """A fixed policy: `action` to every customer the funnel's rules allow it for (an
    upgrade offer only where a higher plan exists), else none.

    The estimators need support: the logged policy must have been able to take the target
    action. It never offered an upgrade to a customer on the top plan, so a policy that
    does cannot be judged from its log (IPS then overstates it several times over)."""
    allowed = allowed_actions(catalogue, evidence.rows, evidence.history, evidence.cutoff).allowed[action]
    ok = allowed.to_numpy(dtype=bool)
    if catalogue.entry(action).target == "upgrade":
        ok &= customer_values(evidence.rows, evidence.plan_prices, catalogue.value).upgrade_margin > 0
    return np.where(ok, action, NONE).astype(str)


def estimate(evidence: LoggedEvidence, target: np.ndarray, seed: int = 0) -> OffPolicyReport:
    """IPS, SNIPS and DR of the target policy's incremental value, and the truth if known."""
    n = np.arange(len(evidence.rows))
    target_at = np.array([evidence.actions.index(a) for a in target])
    taken = evidence.rows["action"].to_numpy().astype(str)
    taken_at = np.array([evidence.actions.index(a) for a in taken])
    estimates = incremental_value(evidence.reward, taken, target, evidence.rows["propensity"].to_numpy(),
                                  evidence.q[n, target_at], evidence.q[:, 0], evidence.q[n, taken_at], none=NONE,
                                  seed=seed)
    truth = None if evidence.true_value is None else float(evidence.true_value[n, target_at].mean())
    counts = pd.Series(target).value_counts()
    return OffPolicyReport(evidence.cutoff, len(n), {a: int(counts.get(a, 0)) for a in evidence.actions},
                           estimates, truth)
