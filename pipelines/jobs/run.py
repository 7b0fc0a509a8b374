"""The main job, end to end on embedded defaults: simulate (unless the workspace holds
ingested data), validate, build features,
register them in Feast and load the online store, train and register the models, judge
the decision policy, score and decide for the whole base, write the lifecycle report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clm.contracts import ValidationReport
from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.catalogue import load_catalogue
from features.build import BuildResult
from features.repo import OnlineStoreSettings
from pipelines import outputs
from pipelines.jobs.evaluate_policy import (
    PolicyEvaluation,
    PolicySettings,
    evaluate_policy,
)
from pipelines.jobs.features import (
    Materialized,
    Registered,
    build,
    load_online_store,
    register,
)
from pipelines.jobs.report import REPORT_NAME, ReportWritten, write_report
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.jobs.score import ScoreSettings, score_base
from pipelines.jobs.serve import showcase_customer
from pipelines.jobs.simulate import Simulated, simulate
from pipelines.jobs.train import Trained, train_models
from pipelines.jobs.validate import validate
from pipelines.score import ScoreResult, write_json
from pipelines.summary import WorkspaceSummary, summarise
from simulator.engine import SimulationConfig
from training.config import TrainConfig


POLICY_NAME = "reports/policy.json"  # the policy evaluation's figures, beside the report


@dataclass
class RunResult:
    simulated: Simulated | None  # None: the workspace holds ingested data, never simulated over
    validation: ValidationReport
    features: BuildResult
    registered: Registered
    online: Materialized
    trained: Trained
    policy: PolicyEvaluation | None  # None: skipped (the reason in `skipped`)
    scores: ScoreResult | None
    report: ReportWritten
    summary: WorkspaceSummary
    example_customer: str  # one the API scores, for the example printed
    skipped: dict[str, str]  # step -> why it was skipped


def holds_this_simulation(workspace: Workspace, config: SimulationConfig) -> bool:
    """The same main job again (a simulation with these arguments): `clm run` starts it over
    by itself. Another business, or another simulation, needs --replace."""
    try:
        m = workspace.read_manifest()
    except ClmError:  # no manifest, or a damaged one: not ours to remove
        return False
    same = (m.details.get("customers"), m.details.get("seed"), m.start) == (config.n_customers, config.seed, config.start)
    return m.source == "simulator" and same and m.end == config.end + pd.Timedelta(days=1)


def decision_day(end: pd.Timestamp) -> pd.Timestamp:
    """The latest month start at or before the data's end: decisions are judged on month
    starts (a simulation ends on one; an export rarely does)."""
    return end.normalize().replace(day=1)


def holds_ingested_data(workspace: Workspace) -> bool:
    """A business's own data (`clm ingest`): `clm run` works on it and never simulates over it."""
    try:
        return workspace.read_manifest().source == "ingest"
    except ClmError:
        return False


def run_main_job(workspace: Workspace, config: SimulationConfig, replace: bool = False,
                 reporter: Reporter | None = None, catalogue: Path | None = None) -> RunResult:
    """Every step in turn. On a workspace holding ingested data, everything after the
    ingest, on that data (it is never simulated over: `replace` is refused); otherwise on a
    simulated business: a workspace holding the same simulation is started over, one holding
    another business only with `replace`. The policy's judgement and the batch are skipped,
    with the reason, where the data cannot support them (too few logged decisions to learn
    uplift, no model past the gate)."""
    reporter = reporter or Quiet()
    actions = load_catalogue(catalogue)  # a broken catalogue is named before any work
    skipped: dict[str, str] = {}
    simulated = None
    if holds_ingested_data(workspace):
        if replace:
            raise ClmError(f"Workspace '{workspace.root}' holds ingested data ({workspace.describe()}): `clm run` "
                           "works on it as it is and never simulates over it. Leave out --replace, or choose another "
                           "--workspace for a simulation.")
        reporter.step("1/5 Ingested data (no simulation)")
    else:
        reporter.step("1/5 Simulate")
        simulated = simulate(workspace, config, replace or holds_this_simulation(workspace, config), reporter)
        reporter.finished(simulated)
    reporter.step("2/5 Validate")
    validation = validate(workspace, reporter)
    reporter.finished(validation)
    reporter.step("3/5 Features")
    features = build(workspace, None, "monthly", None, reporter)
    reporter.finished(features)
    registered = register(workspace, OnlineStoreSettings("sqlite", ""), reporter)
    reporter.finished(registered)
    reporter.step("4/5 Online store")
    end = workspace.read_manifest().end
    online = load_online_store(workspace, end, reporter)
    reporter.finished(online)
    reporter.step("5/5 Train")
    trained = train_models(workspace, TrainConfig(), reporter)
    reporter.finished(trained)
    trained.require_some()
    reporter.step("Policy")
    policy = None
    try:
        policy = evaluate_policy(workspace, PolicySettings(decision_day(end), actions), reporter)
        reporter.finished(policy)
        write_json(policy.report, workspace.root / POLICY_NAME)  # what `clm evaluate-policy --json` writes
    except ClmError as err:  # e.g. too few logged decisions to learn uplift on a tiny base
        (workspace.root / POLICY_NAME).unlink(missing_ok=True)  # an earlier run's figures are not this run's
        skipped["policy"] = str(err)
        reporter.warn(f"Policy evaluation skipped: {err}")
    reporter.step("Score and decide")
    scores = None
    try:
        scores = score_base(workspace, ScoreSettings(end, outputs.scores_path(workspace, end), actions), None,
                            reporter)
        reporter.finished(scores)
    except ClmError as err:  # e.g. no model passed the gate on a tiny base
        skipped["scores"] = str(err)
        reporter.warn(f"Scoring skipped: {err}")
    reporter.step("Report")
    report = write_report(workspace, end, workspace.root / REPORT_NAME, None, reporter)
    reporter.finished(report)
    return RunResult(simulated, validation, features, registered, online, trained, policy, scores, report,
                     summarise(workspace), showcase_customer(workspace), skipped)
