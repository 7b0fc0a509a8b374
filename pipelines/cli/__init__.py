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
        "Quick start:  clm run            (simulate a small business end to end)\n\n"
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


app.add_typer(features.features_app, name="features")
app.add_typer(models.models_app, name="models")
app.command("simulate")(data.simulate)
app.command("ingest")(data.ingest)
app.command("validate")(data.validate)
app.command("train")(models.train)
app.command("score")(scoring.score)
app.command("retrain")(operations.retrain)
app.command("monitor")(operations.monitor)
app.command("report")(operations.report)
app.command("serve")(scoring.serve)
app.command("evaluate-policy")(policy.evaluate_policy)
app.command("backtest")(policy.backtest)
app.command("run")(operations.run)
