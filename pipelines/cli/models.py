"""Model commands: `clm train`, `clm models list|promote|rollback|history`."""
from __future__ import annotations

from typing import Annotated

import typer

from clm.workspace import Workspace
from pipelines.cli.common import (
    ModelArg,
    ReasonOpt,
    RichReporter,
    TrackingOpt,
    WorkspaceOpt,
    a_day,
    check_horizon,
    check_tracking,
    help_when_bare,
    model_list,
    say,
    user_errors,
)

models_app = typer.Typer(
    help="Manage registered models and their champion/challenger aliases.\n\n"
    "Example:  clm models list && clm models promote churn 3 && clm models rollback churn",
    invoke_without_command=True,
)
models_app.callback()(help_when_bare)


@user_errors
def train(
    models: Annotated[str, typer.Option(help="Comma-separated: churn,upsell,stage,clv,uplift.")] = "churn,upsell,stage,clv,uplift",
    horizon_days: Annotated[int, typer.Option(help="Label horizon H in days (churn, upsell, stage).")] = 90,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Train as if today were this date (YYYY-MM-DD).",
                                              callback=a_day)] = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train, evaluate and register models; a better new version becomes champion.

    Examples:

      clm train                                   # all models, as of the data's end

      clm train --models churn --as-of 2025-06-01 --horizon-days 60
    """
    check_tracking(tracking_uri)
    chosen = model_list(models)
    check_horizon(horizon_days)
    ws = Workspace.at(workspace)
    with ws.exclusive("clm train"):
        from features.build import parse_as_of
        from pipelines.cli import render
        from pipelines.jobs.train import train_models
        from training.config import TrainConfig
        from training.labels import LabelConfig

        when = parse_as_of(as_of, ws.read_manifest()) if as_of is not None else None
        config = TrainConfig(models=chosen, labels=LabelConfig(horizon_days=horizon_days), as_of=when,
                             tracking_uri=tracking_uri)
        trained = train_models(ws, config, RichReporter())
        render.show(trained)
        trained.require_some()


@models_app.command("list")
@user_errors
def list_models(tracking_uri: TrackingOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Each model's versions, aliases and key test figures.

    Example:  clm models list -w demo
    """
    check_tracking(tracking_uri)
    from pipelines.cli import render
    from pipelines.jobs.models import list_versions

    ws = Workspace.at(workspace)
    rows = list_versions(ws, tracking_uri)
    if rows is None:
        say(f"No registered models in {ws.root} yet: train them with `clm train -w {ws.root}`.")
    else:
        render.versions(rows)


@models_app.command("promote")
@user_errors
def promote(
    model: ModelArg,
    version: Annotated[str, typer.Argument(help="Version number to make champion.")],
    reason: ReasonOpt = "",
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Make a version the champion by hand (recorded with who, when and why, so that
    `clm models history` shows it and rollback can undo it).

    Example:  clm models promote churn 3 --reason "better on the Q3 backtest"
    """
    check_tracking(tracking_uri)
    from pipelines.cli import render
    from pipelines.jobs import models
    from training.names import model_key

    key = model_key(model)
    ws = Workspace.at(workspace)
    models.require_model_store(ws, tracking_uri)
    number = models.version_number(version)
    with ws.exclusive("clm models promote"):
        change = models.promote(ws, key, number, reason, tracking_uri)
    render.champion_change(change)


@models_app.command("rollback")
@user_errors
def rollback(
    model: ModelArg,
    reason: ReasonOpt = "",
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Restore the previous champion (recorded in `clm models history`).

    Example:  clm models rollback churn --reason "complaints about retention offers"
    """
    check_tracking(tracking_uri)
    from pipelines.cli import render
    from pipelines.jobs import models
    from training.names import model_key

    key = model_key(model)
    ws = Workspace.at(workspace)
    models.require_model_store(ws, tracking_uri)
    with ws.exclusive("clm models rollback"):
        change = models.rollback(ws, key, reason, tracking_uri)
    render.champion_change(change, rollback=True)


@models_app.command("history")
@user_errors
def history(model: ModelArg, tracking_uri: TrackingOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Every change of a model's champion, oldest first: when, promote or rollback, which
    version replaced which, how (the gate or by hand), by whom or which scheduler
    ($CLM_ACTOR), the command, why, and the figures it was judged on.

    Example:  clm models history churn
    """
    check_tracking(tracking_uri)
    from pipelines.cli import render
    from pipelines.jobs import models
    from training.names import model_key

    key = model_key(model)
    render.history(models.history(Workspace.at(workspace), key, tracking_uri))
