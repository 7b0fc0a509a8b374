"""Feature commands: `clm features build|apply|materialize`."""
from __future__ import annotations

from typing import Annotated

import typer

from clm.errors import ClmError
from clm.workspace import Workspace
from pipelines.cli.common import (
    AsOfOpt,
    EngineOpt,
    RichReporter,
    SparkConfOpt,
    SparkMasterOpt,
    WorkspaceOpt,
    engine_settings,
    help_when_bare,
    user_errors,
)

features_app = typer.Typer(
    help="Build behavioural features, register them in Feast, and load them into the online store.\n\n"
    "Example:  clm features build && clm features apply && clm features materialize",
    invoke_without_command=True,
)
features_app.callback()(help_when_bare)


@features_app.command("build")
@user_errors
def build(
    as_of: AsOfOpt = None,
    frequency: Annotated[str, typer.Option(help="Snapshot schedule: monthly or weekly.")] = "monthly",
    engine: EngineOpt = "local",
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Compute feature snapshots (incrementally: only dates not built yet).

    With --engine spark the same SQL runs on Spark (transpiled by sqlglot) and each
    snapshot is a folder of Parquet part files sorted by customer_id; training, scoring
    and Feast read either layout.

    Examples:

      clm features build                       # every month start in the data

      clm features build --as-of 2025-06-15    # one extra date, on demand

      clm features build --engine spark --spark-master spark://head:7077 --spark-conf spark.conf
    """
    from features.build import FREQUENCIES, parse_as_of
    from pipelines.cli import render
    from pipelines.jobs import features
    from pipelines.jobs.engine import engine_session

    if frequency not in FREQUENCIES:
        raise ClmError(f"--frequency '{frequency}' is not one of: {', '.join(FREQUENCIES)}.")
    settings = engine_settings(engine, spark_master, spark_conf)
    ws = Workspace.at(workspace)
    reporter = RichReporter()
    with ws.exclusive("clm features build"), engine_session(ws, settings, reporter) as spark:
        dates = [parse_as_of(as_of, ws.read_manifest())] if as_of is not None else None
        render.show(features.build(ws, dates, frequency, spark, reporter))


@features_app.command("apply")
@user_errors
def apply(
    online_store: Annotated[
        str, typer.Option(help="Online store: sqlite (embedded), redis, or Feast's own feast-sqlite / feast-redis.")
    ] = "sqlite",
    redis_url: Annotated[str | None, typer.Option(
        help="Redis host:port[,db=N] when --online-store redis (default localhost:6379).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Register entities, feature views and per-model feature services in Feast.

    Example:  clm features apply --online-store redis --redis-url localhost:6379
    """
    from features.repo import ONLINE_STORES, OnlineStoreSettings
    from pipelines.cli import render
    from pipelines.jobs import features

    if online_store not in ONLINE_STORES:
        raise ClmError(f"--online-store '{online_store}' is not one of: {', '.join(ONLINE_STORES)}.")
    if redis_url is not None and "redis" not in online_store:
        raise ClmError(f"--redis-url applies to a Redis online store; add `--online-store redis` (the store now: "
                       f"{online_store}).")
    ws = Workspace.at(workspace)
    with ws.exclusive("clm features apply"):
        settings = OnlineStoreSettings(online_store, redis_url or "localhost:6379")
        render.show(features.register(ws, settings, RichReporter()))


@features_app.command("materialize")
@user_errors
def materialize(as_of: AsOfOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Load the latest snapshot at or before --as-of (default: the data's end) online.

    Example:  clm features materialize --as-of 2025-12-01
    """
    from features.build import as_of_or_end
    from pipelines.cli import render
    from pipelines.jobs import features

    ws = Workspace.at(workspace)
    with ws.exclusive("clm features materialize"):
        manifest = ws.read_manifest()
        when = as_of_or_end(as_of, manifest)
        render.show(features.load_online_store(ws, when, RichReporter()))
