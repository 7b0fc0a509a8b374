"""The `clm` command line: it parses options into a job's settings, calls the job
(`pipelines.jobs`) and renders its result (`pipelines.cli.render`); nothing else.

Every command takes --workspace (default ./workspace or $CLM_WORKSPACE), exits 0 on
success and non-zero with a one-paragraph error on a user's mistake (no traceback).

The command tree, by module:
    data.py        simulate, ingest, validate
    features.py    features build | apply | materialize
    models.py      train, models list | promote | rollback | history
    scoring.py     score, serve
    policy.py      evaluate-policy, backtest
    operations.py  run, retrain, monitor, report
"""
from __future__ import annotations

import os
from typing import Annotated

import typer

from pipelines.cli import data, features, models, operations, policy, scoring
from pipelines.cli.common import (
    console,
    exit_cleanly_on_sigterm,
    print_error,
    quiet_libraries,
)

app = typer.Typer(
    name="clm",
    help=(
        "Customer lifecycle management: simulate or ingest customer data, validate it, build "
        "features (Feast), train and register models (MLflow), score the whole base, and "
        "backtest the scores against what happened.\n\n"
        "Quick start:  .venv/bin/clm run   (from the clone's root: simulate a small business and run every step)\n\n"
        "Everything is written under --workspace (default ./workspace, or $CLM_WORKSPACE)."
    ),
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print clm's version and exit.")] = False,
) -> None:
    quiet_libraries()
    exit_cleanly_on_sigterm()
    try:
        os.getcwd()
    except FileNotFoundError:  # removed under a shell still standing in it
        print_error("The current folder no longer exists (removed while your shell stood in it): `cd` to an "
                    "existing folder and run the command again.")
        raise typer.Exit(code=2) from None
    if version:
        from importlib.metadata import version as installed_version

        console.print(f"clm {installed_version('clm')}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # bare `clm`: the help, and success
        console.print(ctx.get_help())
        raise typer.Exit()


# Listed in `clm --help` by panel, in the order a newcomer meets them: the main job first.
START, DATA, MODELS, DECIDE, OPERATE = "Start here", "Data", "Features and models", "Decide and serve", "Operate"
app.command("run", rich_help_panel=START,
            short_help="The main job, end to end: simulate (or use ingested data), validate, features, train, judge the policy, score, report; then how to call the API.")(operations.run)
app.command("simulate", rich_help_panel=DATA)(data.simulate)
app.command("ingest", rich_help_panel=DATA)(data.ingest)
app.command("validate", rich_help_panel=DATA)(data.validate)
app.command("forget", rich_help_panel=DATA)(data.forget)
app.add_typer(features.features_app, name="features", rich_help_panel=MODELS)
app.command("train", rich_help_panel=MODELS)(models.train)
app.add_typer(models.models_app, name="models", rich_help_panel=MODELS)
app.command("backtest", rich_help_panel=MODELS)(policy.backtest)
app.command("score", rich_help_panel=DECIDE,
            short_help="The nightly batch: score and decide for every customer known at --as-of.")(scoring.score)
app.command("evaluate-policy", rich_help_panel=DECIDE,
            short_help="Judge clm's decisions against the oracle, churn-risk targeting, random and doing nothing (simulated data); an off-policy estimate from the logged decisions.")(policy.evaluate_policy)
app.command("serve", rich_help_panel=DECIDE)(scoring.serve)
app.command("retrain", rich_help_panel=OPERATE,
            short_help="The scheduled retraining: features, models, the gate, the online store and the batch, "
                       "safe to rerun and to kill.")(operations.retrain)
app.command("monitor", rich_help_panel=OPERATE,
            short_help="Is clm still working? Drift, delivered scores against what happened, the policy on matured decisions; exit code 4 on a crossed threshold.")(operations.monitor)
app.command("report", rich_help_panel=OPERATE,
            short_help="The lifecycle report for the business: one HTML file that opens anywhere.")(operations.report)
