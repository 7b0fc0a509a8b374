"""Operations commands: `clm run` (the main job), `clm retrain` (the scheduled one),
`clm monitor` (is clm still working?) and `clm report` (the lifecycle report)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clm.output_paths import check_output_file
from clm.workspace import Workspace
from decisions.budget import HELP as BUDGET_HELP
from pipelines.cli.common import (
    DEFAULT_CUSTOMERS,
    DEFAULT_END,
    DEFAULT_SEED,
    DEFAULT_START,
    AsOfOpt,
    CatalogueOpt,
    CustomersOpt,
    EndOpt,
    EngineOpt,
    ReplaceOpt,
    RichReporter,
    SeedOpt,
    SparkConfOpt,
    SparkMasterOpt,
    StartOpt,
    TrackingOpt,
    WorkspaceOpt,
    check_budget,
    check_horizon,
    check_tracking,
    engine_settings,
    say,
    user_errors,
)
from pipelines.cli.data import simulation_config


@user_errors
def run(
    customers: CustomersOpt = DEFAULT_CUSTOMERS,
    seed: SeedOpt = DEFAULT_SEED,
    start: StartOpt = DEFAULT_START,
    end: EndOpt = DEFAULT_END,
    replace: ReplaceOpt = False,
    catalogue: CatalogueOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The main job, end to end on embedded defaults: simulate, validate, build
    features, register them in Feast and load the online store, train and register the
    models, judge the decision policy, score and decide for the whole base
    (WORKSPACE/scores/), write the lifecycle report (WORKSPACE/reports/report.html), then
    summarise and show how to call the real-time API.

    On a workspace holding ingested data (`clm ingest`), every step after the ingest, on
    that data: it is never simulated over. A workspace holding the same simulation (the
    same -n, --seed, --start and --end) is started over; one holding another simulation
    only with --replace.

    Examples:

      clm run -n 20000 -w demo

      clm run --catalogue our_actions.yaml -w shop     # a business's own data and actions
    """
    ws, config = Workspace.at(workspace), simulation_config(customers, seed, start, end)
    with ws.exclusive("clm run"):
        from pipelines.cli import render
        from pipelines.jobs.run import run_main_job

        reporter = RichReporter()
        result = run_main_job(ws, config, replace, reporter, catalogue)
        reporter.step("Summary")
        render.main_job(ws.root, result)


@user_errors
def retrain(
    as_of: AsOfOpt = None,
    horizon_days: Annotated[int, typer.Option(help="Days ahead that churn and upsell are predicted.")] = 90,
    budget: Annotated[float | None, typer.Option(help=BUDGET_HELP)] = None,
    catalogue: CatalogueOpt = None,
    engine: EngineOpt = "local",
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The scheduled retraining, in one command that is safe to rerun and safe to kill:
    features brought up to date, every model trained (a model whose latest version was
    trained on the same data, date and settings is kept, not trained again), the champion
    gate, the online store materialised, and the base scored and decided into
    WORKSPACE/scores/DATE.parquet (kept as it is when nothing changed). All of it as of
    --as-of (default: the data's end): an earlier date also loads the online store, which
    the API serves, as it was then.

    Champions change only after every model has trained, and each change is recorded in
    the audit trail (`clm models history MODEL`); a run killed before that leaves the
    previous champions serving, and the next run finishes what it left. A second run at
    the same time is refused (the workspace's lock).

    Examples:

      clm retrain                      (nightly, from cron or a scheduler: see README)

      CLM_ACTOR=airflow:clm_nightly clm retrain --as-of 2025-12-01

      clm retrain --engine spark --spark-conf spark.conf   (features and the batch on Spark;
      training reads the snapshots through Feast as always)
    """
    check_tracking(tracking_uri)
    check_budget(budget)
    check_horizon(horizon_days)
    spark = engine_settings(engine, spark_master, spark_conf)
    ws = Workspace.at(workspace)
    # The lock first, before the heavy imports: a second run is refused at once.
    with ws.exclusive("clm retrain"):
        from decisions.catalogue import load_catalogue
        from features.build import as_of_or_end
        from pipelines.jobs.retrain import RetrainSettings
        from pipelines.jobs.retrain import retrain as retrain_job

        actions = load_catalogue(catalogue)  # a broken catalogue is named before any work
        manifest = ws.read_manifest()
        when = as_of_or_end(as_of, manifest)
        retrain_job(ws, RetrainSettings(when, horizon_days, actions, budget, spark, tracking_uri), RichReporter())


@user_errors
def monitor(
    as_of: AsOfOpt = None,
    html: Annotated[str | None, typer.Option("--html", help="Also write the page (plots and tables) to this "
                                              "self-contained HTML file.")] = None,
    thresholds: Annotated[Path | None, typer.Option(help="YAML file of thresholds (default: the one shipped, "
                                                    "pipelines/monitor.yaml).")] = None,
    horizon_days: Annotated[int, typer.Option(help="Outcome window of the delivered churn and upsell scores.")] = 90,
    catalogue: CatalogueOpt = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Is clm still working? Drift of every champion's features, scores and the stage mix
    at --as-of against the rows it was judged on (PSI); the delivered scores in
    WORKSPACE/scores/ whose outcomes have matured (ROC AUC, calibration, lift); the
    uplift models and the policy on matured logged decisions. Figures go to MLflow
    (experiment clm-monitor).

    Exit code 4 when a threshold is crossed (the flags are listed), so that a scheduler
    can alert; 0 when all is well.

    Examples:

      clm monitor --as-of 2025-12-01 --html monitor.html

      clm monitor --thresholds my-thresholds.yaml || notify-team
    """
    check_tracking(tracking_uri)
    from decisions.catalogue import load_catalogue
    from features.build import as_of_or_end
    from pipelines.cli import render
    from pipelines.jobs.monitor import MonitorSettings, monitor_workspace
    from pipelines.monitor import FLAG_EXIT_CODE, load_thresholds

    check_horizon(horizon_days)
    limits = load_thresholds(thresholds)
    actions = load_catalogue(catalogue)  # a broken catalogue is named before any work
    page = check_output_file(html, "--html") if html is not None else None
    ws = Workspace.at(workspace)
    manifest = ws.read_manifest()
    when = as_of_or_end(as_of, manifest)
    with ws.exclusive("clm monitor"):
        report = monitor_workspace(ws, MonitorSettings(when, limits, horizon_days, page, tracking_uri, actions),
                                   RichReporter())
    render.monitor(report)
    if page is not None:
        say(f"Wrote {page}.")
    if report.flags:
        render.monitor_flags(report.flags)
        raise typer.Exit(FLAG_EXIT_CODE)


@user_errors
def report(
    as_of: AsOfOpt = None,
    out: Annotated[str, typer.Option("--out", help="The HTML file to write (one self-contained file).")] = "report.html",
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The lifecycle report for the business, one HTML file that opens anywhere (no
    server, no network, plots embedded): KPIs per stage (customers, churn rate, NPS, CLV)
    and how they moved over the last month, the flow between stages, cohort retention by
    signup month and by acquisition channel, who is at risk and what clm recommends (with
    the plan's value and the value finder, from the latest nightly batch), and a card per
    champion model.

    Example:  clm report --as-of 2025-12-01 --out report.html
    """
    check_tracking(tracking_uri)
    from features.build import as_of_or_end
    from pipelines.cli import render
    from pipelines.jobs.report import write_report

    page = check_output_file(out, "--out")
    ws = Workspace.at(workspace)
    manifest = ws.read_manifest()
    when = as_of_or_end(as_of, manifest)
    with ws.exclusive("clm report"):
        written = write_report(ws, when, page, tracking_uri, RichReporter())
    render.show(written)
