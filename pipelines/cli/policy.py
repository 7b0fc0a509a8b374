"""Policy commands: `clm evaluate-policy` and `clm backtest`: how good the decisions and
the scores are, judged by the truth or by what happened."""
from __future__ import annotations

from typing import Annotated

import typer

from clm.errors import ClmError
from clm.output_paths import check_output_file
from clm.workspace import Workspace
from decisions.budget import HELP as BUDGET_HELP
from pipelines.cli.common import (
    AsOfOpt,
    CatalogueOpt,
    RichReporter,
    TrackingOpt,
    WorkspaceOpt,
    a_day,
    check_budget,
    check_horizon,
    check_tracking,
    console,
    say,
    user_errors,
)


@user_errors
def evaluate_policy(
    as_of: AsOfOpt = None,
    budget: Annotated[float | None, typer.Option(help=BUDGET_HELP)] = None,
    catalogue: CatalogueOpt = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Write the figures per policy here.")] = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Judge clm's decisions against the oracle, churn-risk targeting, random and doing
    nothing, by the simulator's true effects (simulated workspaces only).

    Every policy decides for the same base at --as-of (a month's first day), under the
    same catalogue, contact rules, budget and capacities; each is credited with the true
    incremental value of what it chose, by the same value rule.

    Examples:

      clm evaluate-policy --as-of 2025-12-01 --budget 2000

      clm evaluate-policy --as-of 2025-12-01 --catalogue my_actions.yaml --json policy.json
    """
    check_tracking(tracking_uri)
    json_path = check_output_file(json_out, "--json") if json_out is not None else None
    ws = Workspace.at(workspace)
    with ws.exclusive("clm evaluate-policy"):  # it may build the date's feature snapshots
        from decisions.catalogue import load_catalogue
        from features.build import as_of_or_end
        from pipelines.cli import render
        from pipelines.jobs import evaluate_policy as job
        from pipelines.score import write_json

        actions = load_catalogue(catalogue)  # a broken catalogue is named before any work
        check_budget(budget)
        job.require_logged_decisions(ws)
        manifest = ws.read_manifest()
        when = as_of_or_end(as_of, manifest)
        evaluation = job.evaluate_policy(ws, job.PolicySettings(when, actions, budget, tracking_uri), RichReporter())
        render.policy_evaluation(evaluation)
        if json_path is not None:
            write_json(evaluation.report, json_path)
            say(f"Report written to {json_path}")


@user_errors
def backtest(
    as_of: Annotated[str, typer.Option("--as-of", help="Scoring date D (YYYY-MM-DD); D + H must be within the data.",
                                       callback=a_day)],
    horizon_days: Annotated[int, typer.Option(help="Outcome window H in days (churn, upsell).")] = 90,
    targets: Annotated[str, typer.Option(help="Comma-separated: churn,upsell,clv.")] = "churn,upsell,clv",
    json_out: Annotated[str | None, typer.Option("--json", help="Write the full report (reliability tables too) here.")] = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """How good were the scores at a past date, on the whole base?

    Fits the models as of D on data before D only (nothing is registered; champions stay),
    scores every customer in the model population at D, and compares with what they did in
    the H days after D: ROC AUC, PR AUC, ECE, lift and capture in the top decile. Beside
    clm and its baseline: BG/NBD and Pareto/NBD on a transactions-only workspace, the
    oracle on simulated data. Figures are logged to MLflow (experiment clm-backtest).

    Examples:

      clm backtest --as-of 2025-06-01 --horizon-days 90

      clm backtest --as-of 2011-09-01 --horizon-days 91 --targets churn --json backtest.json -w shop
    """
    check_tracking(tracking_uri)
    from features.build import parse_as_of
    from pipelines.backtest import BacktestConfig, check_targets
    from pipelines.backtest import backtest as backtest_job
    from pipelines.cli import render
    from pipelines.score import write_json

    check_horizon(horizon_days)
    json_path = check_output_file(json_out, "--json") if json_out is not None else None
    chosen = tuple(t.strip() for t in targets.split(",") if t.strip())
    if not chosen:
        raise ClmError("--targets names no target; give one or more of churn,upsell,clv (comma-separated).")
    check_targets(chosen)
    ws = Workspace.at(workspace)
    when = parse_as_of(as_of, ws.read_manifest())
    config = BacktestConfig(when, horizon_days, chosen, tracking_uri)
    with ws.exclusive("clm backtest"), console.status("Backtesting") as status:
        report = backtest_job(ws, config, progress=status.update)
    render.backtest(report)
    if json_path is not None:
        write_json(report.as_dict(), json_path)
        say(f"Report written to {json_path}.")
