"""The evaluate-policy job: clm's decisions against the oracle, churn-risk targeting, random
and doing nothing, by the simulator's true effects; and clm's policy estimated off-policy
from the logged decisions (on real data, the estimate alone)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from clm.domain import Table
from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.budget import decision_budget
from decisions.catalogue import Catalogue
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.offpolicy import OffPolicyReport, clm_offpolicy
from pipelines.policy import (
    PolicyInputs,
    PolicyResult,
    check_decision_date,
    evaluate,
    load_inputs,
    report_json,
)


@dataclass(frozen=True)
class PolicySettings:
    as_of: pd.Timestamp  # a month's first day
    catalogue: Catalogue
    budget: float | None = None  # None: the default budget for the decided base's size
    tracking_uri: str | None = None


@dataclass
class PolicyEvaluation:
    """Each policy judged by the truth (simulated data only: `results` is None without it),
    and clm's policy estimated from the logged decisions (None, with the reason, if skipped)."""

    results: dict[str, PolicyResult] | None
    inputs: PolicyInputs | None
    budget: float | None
    off_policy: OffPolicyReport | None
    off_policy_skipped: str = ""
    report: dict[str, object] = field(default_factory=dict)  # the figures, as `--json` writes them
    in_sample: str = ""  # why the truth-based figures flatter clm's policy at this date ("" when they do not)


def require_logged_decisions(workspace: Workspace) -> None:
    """Policies are judged on a base with logged decisions (the actions table): a ClmError
    otherwise (a transactions export has none)."""
    if not workspace.table_path(Table.ACTIONS).exists():
        raise ClmError(f"{workspace.root} holds no logged decisions (actions table): there is no uplift model to "
                       "decide with and nothing to evaluate a policy from. A transactions export cannot be evaluated.")


def evaluate_policy(workspace: Workspace, settings: PolicySettings, reporter: Reporter | None = None) -> PolicyEvaluation:
    reporter = reporter or Quiet()
    when = settings.as_of
    require_logged_decisions(workspace)
    check_decision_date(when)
    results, inputs, budget, report, in_sample = None, None, None, {}, ""
    if workspace.table_path(Table.GROUND_TRUTH_EFFECTS).exists():
        with reporter.working(f"Deciding for the base as of {when:%Y-%m-%d} with every policy"):
            inputs = load_inputs(workspace, when, settings.catalogue, settings.tracking_uri)
            budget = decision_budget(settings.budget, len(inputs.base.customers))
            results = evaluate(settings.catalogue, inputs, budget)
        in_sample = inputs.base.uplift.in_sample(when)
        if in_sample:
            reporter.warn(f"In sample: {in_sample}. clm's figures below flatter it; judge it at a later month start.")
        report = report_json(results, inputs, budget)
        report["run"]["in_sample"] = in_sample or None  # type: ignore[index]
    else:
        reporter.warn("No true effects here (real data): clm's policy is estimated from the logged decisions only.")
    with reporter.working("Estimating clm's policy off-policy from the logged decisions"):
        off_policy, why = clm_offpolicy(workspace, settings.catalogue, when, settings.tracking_uri)
    report["off_policy"] = {"skipped": why} if off_policy is None else off_policy.as_dict()
    return PolicyEvaluation(results, inputs, budget, off_policy, why if off_policy is None else "", report, in_sample)
