"""The `clm` command line.

Every command takes --workspace (default ./workspace or $CLM_WORKSPACE), exits 0 on
success and non-zero with a one-paragraph error on a user's mistake (no traceback).
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

from clm.dates import parse_day
from clm.errors import ClmError
from clm.files import write_text_atomically
from clm.limits import (
    CHUNK_ROWS,
    CUSTOMERS,
    DAYS,
    HORIZON_DAYS,
    MONEY,
    PARTITIONS,
    RELOAD_SECONDS,
    SEED,
    SHARE,
    WORKERS,
)
from clm.output_paths import check_output_dataset, check_output_file
from clm.workspace import WORKSPACE_ENV, Workspace

if TYPE_CHECKING:  # imported lazily at run time: `clm --help` stays fast
    from simulator.engine import SimulationConfig
    from training.config import ModelReport

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
ingest_app = typer.Typer(
    help="Bring real exports into a workspace.\n\nExample:  clm ingest transactions sales.csv "
    "--customer-col 'Customer ID' --date-col 'Order Date' --amount-col Total",
    invoke_without_command=True,
)
app.add_typer(ingest_app, name="ingest")
features_app = typer.Typer(
    help="Build behavioural features, register them in Feast, and load them into the online store.\n\n"
    "Example:  clm features build && clm features apply && clm features materialize",
    invoke_without_command=True,
)
app.add_typer(features_app, name="features")
models_app = typer.Typer(
    help="Manage registered models and their champion/challenger aliases.\n\n"
    "Example:  clm models list && clm models promote churn 3 && clm models rollback churn",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")


def _help_when_bare(ctx: typer.Context) -> None:
    """`clm features` (no subcommand): its help, and success."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


for _group in (ingest_app, features_app, models_app):
    _group.callback()(_help_when_bare)

ModelArg = Annotated[str, typer.Argument(help="churn, upsell, stage, clv or uplift.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why, in words: kept in the audit trail (`clm models history`).")]
TrackingOpt = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow tracking URI (default: SQLite in WORKSPACE/mlflow, or $MLFLOW_TRACKING_URI)."),
]
CatalogueOpt = Annotated[Path | None, typer.Option(
    "--catalogue", help="Action catalogue (YAML); default: the one shipped (decisions/catalogue.yaml).")]

EngineOpt = Annotated[str, typer.Option(
    "--engine", help="Where the work runs: local (DuckDB and pandas in this process) or spark (Apache Spark: "
                     "the same feature SQL and scoring functions, for bases that outgrow one machine).")]
SparkMasterOpt = Annotated[str | None, typer.Option(
    "--spark-master", help="With --engine spark: the master URL, e.g. local[8], spark://host:7077, yarn "
                           "(default local[*]). For Spark Connect set SPARK_REMOTE=sc://host:15002 instead.")]
SparkConfOpt = Annotated[Path | None, typer.Option(
    "--spark-conf", help="With --engine spark: a file of Spark properties in spark-defaults.conf format, "
                         "e.g. a line `spark.executor.memory 8g`.")]

console = Console()
err_console = Console(stderr=True)

WorkspaceOpt = Annotated[  # text, not a Path: typer reads "" as Path("."), the current folder
    str | None,
    typer.Option("--workspace", "-w", help=f"Workspace folder (default ./workspace, or ${WORKSPACE_ENV}).", show_default=False),
]

CustomersOpt = Annotated[int, typer.Option("--customers", "-n", help="Customers who sign up over the period.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed: the same arguments give byte-identical files.")]
def _a_day(param: typer.CallbackParam, value: str | None) -> str | None:
    """A day option, checked as it is read (`clm.dates.parse_day`): a date written another
    way is refused before any work, by every command alike."""
    if value is not None:
        option = param.opts[0] if param.opts else str(param.name)
        try:
            parse_day(value, option)
        except ClmError as err:
            raise typer.BadParameter(str(err).removeprefix(f"{option} ")) from None
    return value


StartOpt = Annotated[str, typer.Option(help="First simulated day, YYYY-MM-DD.", callback=_a_day)]
EndOpt = Annotated[str, typer.Option(help="Last simulated day (inclusive), YYYY-MM-DD.", callback=_a_day)]
DEFAULT_CUSTOMERS, DEFAULT_SEED, DEFAULT_START, DEFAULT_END = 5000, 42, "2024-01-01", "2025-12-31"
ReplaceOpt = Annotated[
    bool,
    typer.Option("--replace", help="Start over a workspace that already holds a business: its folders (raw data, "
                                   "features, Feast repo, MLflow models, decisions, scores, reports) are removed once "
                                   "the new data is complete; files of yours in them stop it."),
]

F = TypeVar("F", bound=Callable[..., object])


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print clm's version and exit.")] = False,
) -> None:
    _quiet_libraries()
    _exit_cleanly_on_sigterm()
    try:
        os.getcwd()
    except FileNotFoundError:  # removed under a shell still standing in it
        _print_error("The current folder no longer exists (removed while your shell stood in it): `cd` to an "
                     "existing folder and run the command again.")
        raise typer.Exit(code=2) from None
    if version:
        from importlib.metadata import version as installed_version

        console.print(f"clm {installed_version('clm')}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # bare `clm`: the help, and success
        console.print(ctx.get_help())
        raise typer.Exit()


def _exit_cleanly_on_sigterm() -> None:
    """`kill` (SIGTERM) ends clm as Ctrl-C does: staging folders are removed, the MLflow run
    is marked failed, the workspace lock released. (A SIGKILL cannot be caught: the next
    writer cleans up after it.)"""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _quiet_libraries() -> None:
    """Keep the libraries' deprecation chatter and MLflow's notices off the user's screen."""
    import os
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*noload.*")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is first imported
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # downloads of small files
    # Feast puts its own DeprecationWarning filter in front of ours when it is imported, so
    # filters alone do not hold: drop deprecation notices where they would be shown.
    show = warnings.showwarning
    if getattr(show, "__name__", "") == "show_unless_deprecation":
        return  # already installed in this process (several commands in one, e.g. tests)

    def show_unless_deprecation(message, category, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not issubclass(category, DeprecationWarning | PendingDeprecationWarning):
            show(message, category, *args, **kwargs)

    warnings.showwarning = show_unless_deprecation


# What the machine refuses (not clm's mistake, nor the user's input): said in one sentence.
MACHINE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def user_errors(func: F) -> F:
    """Print a ClmError as a paragraph on stderr and exit with its code; likewise a file
    the machine will not let clm write (no permission, a read-only or full disk)."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except ClmError as err:
            _print_error(str(err))
            raise typer.Exit(code=err.exit_code) from None
        except OSError as err:
            if err.errno not in MACHINE_ERRNOS:
                raise
            where = f" {err.filename}" if err.filename else ""
            _print_error(f"clm cannot use{where}: {err.strerror}. Check that you may write to the workspace (and the "
                         "output's folder) and that the disk has room, then run the command again.")
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _print_error(message: str) -> None:
    # As text, not Rich markup: a value the user gave ("local[x]", a path with brackets) is shown as given.
    err_console.print(Panel(Text(message), title="clm: error", title_align="left", border_style="red"))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def check_horizon(horizon_days: int) -> None:
    HORIZON_DAYS.check(horizon_days, "--horizon-days")


# ------------------------------------------------------------------- simulate
def _simulation_config(customers: int, seed: int, start: str, end: str) -> SimulationConfig:
    import pandas as pd

    from simulator.engine import SimulationConfig

    CUSTOMERS.check(customers, "--customers")
    SEED.check(seed, "--seed")
    start_ts, end_ts = parse_day(start, "--start"), parse_day(end, "--end")
    if end_ts < start_ts + pd.Timedelta(days=30):
        raise ClmError(f"--end ({end}) must be at least 30 days after --start ({start}).")
    DAYS.check((end_ts - start_ts).days, "The simulated period (--start to --end, in days)")
    return SimulationConfig(n_customers=customers, seed=seed, start=start_ts, end=end_ts)


def _simulate(workspace: Workspace, config: SimulationConfig, replace: bool) -> dict[str, int]:
    from simulator.run import simulate_to_workspace

    workspace.check_new_business(replace)  # before the progress bar
    with _progress() as bar:
        task = bar.add_task(f"Simulating {config.n_customers:,} customers", total=config.n_days)
        rows = simulate_to_workspace(config, workspace, lambda done, total: bar.update(task, completed=done), replace)
    return rows


def _print_rows(title: str, rows: dict[str, int]) -> None:
    table = RichTable(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


def _print_summary(workspace: Workspace) -> None:
    from pipelines.summary import summarise

    s = summarise(workspace)
    m = s.manifest
    console.print(
        f"[bold]Workspace[/bold] {workspace.root}: {m.source} data, {m.business} business, "
        f"{m.data_start[:10]} to {m.data_end[:10]} (exclusive)."
    )
    _print_rows("Raw tables", s.rows)
    line = f"{s.customers_ever_active:,} customers with transactions"
    if s.cancelled is not None:
        line += f"; {s.cancelled:,} cancelled over the period"
    console.print(line + ".")
    if s.latest_snapshot:
        stages = ", ".join(f"{k} {v:,}" for k, v in s.latest_stages.items())
        truth = ", ".join(f"{k} {v:.3f}" for k, v in s.latest_mean_truth.items() if v is not None)
        console.print(f"True stages on {s.latest_snapshot}: {stages}.")
        console.print(f"Mean true probabilities of active customers on {s.latest_snapshot}: {truth}.")
    if s.decisions:
        console.print("Logged decisions: " + ", ".join(f"{k} {v:,}" for k, v in s.decisions.items()) + ".")


@app.command()
@user_errors
def simulate(
    customers: CustomersOpt = DEFAULT_CUSTOMERS,
    seed: SeedOpt = DEFAULT_SEED,
    start: StartOpt = DEFAULT_START,
    end: EndOpt = DEFAULT_END,
    replace: ReplaceOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Simulate a subscription business, with its ground truth, into WORKSPACE/raw.

    Writes customers, subscriptions, transactions, usage, tickets, nps, referrals,
    actions (a logged, randomised policy), ground_truth (true churn/upgrade probabilities
    and stages at each month end) and ground_truth_effects (true effect of each action).

    Examples:

      clm simulate                                   # 5,000 customers, 2024-2025

      clm simulate -n 100000 --seed 7 --start 2023-01-01 --end 2024-12-31 -w big

      clm simulate --seed 8 --replace -w big        # start the workspace over
    """
    ws, config = Workspace.at(workspace), _simulation_config(customers, seed, start, end)
    with ws.exclusive("clm simulate"):
        rows = _simulate(ws, config, replace)
    _print_rows(f"Wrote {ws.raw_dir}", rows)


# ------------------------------------------------------------------- ingest
@ingest_app.command("transactions")
@user_errors
def ingest_transactions_cmd(
    file: Annotated[Path, typer.Argument(help="CSV (or other delimited text) or Parquet file.")],
    customer_col: Annotated[str, typer.Option("--customer-col", help="Column holding the customer id.")],
    date_col: Annotated[str, typer.Option("--date-col", help="Column holding the purchase date or time.")],
    amount_col: Annotated[str, typer.Option("--amount-col", help="Column holding the amount paid.")],
    date_format: Annotated[
        str | None, typer.Option("--date-format", help="strptime format, e.g. '%d/%m/%Y'; inferred if omitted.")
    ] = None,
    sep: Annotated[
        str | None, typer.Option("--sep", help="Separator: ',', ';', 'tab' or 'whitespace'; detected if omitted.")
    ] = None,
    decimal: Annotated[str, typer.Option("--decimal", help="Decimal mark of amounts: '.' or ','.")] = ".",
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Leave out unusable rows (and count them) instead of stopping.")
    ] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Text encoding of the file, e.g. latin-1 or cp1252 (default UTF-8).")
    ] = "utf-8-sig",
    drop_duplicates: Annotated[
        bool, typer.Option("--drop-duplicates", help="Leave out rows identical in customer, date and amount "
                                                     "(by default they are kept and counted).")
    ] = False,
    earliest_date: Annotated[
        str, typer.Option("--earliest-date", help="Purchases dated before this day (YYYY-MM-DD) are taken for "
                                                  "placeholders of a missing date (1900-01-01, 1970-01-01) and "
                                                  "refused, or left out with --skip-bad-rows.", callback=_a_day)
    ] = "1990-01-01",
    replace: ReplaceOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Ingest a transactions export (one row per purchase) as a non-contractual workspace.

    Customers are inferred from their first purchase; churn is then 'no purchase within
    the horizon'. A workspace holds one business: one that already holds data is refused
    unless --replace, which starts it over only if the whole ingest succeeds.
    Compressed files (.gz, .bz2, .xz, .zip) are read as they are; times with UTC offsets are
    converted to UTC; day/month order is read from the file itself, or from --date-format.
    Dates before --earliest-date (1990-01-01) are taken for placeholders of a missing date.

    Examples:

      clm ingest transactions orders.csv --customer-col customer --date-col date --amount-col total

      clm ingest transactions export.txt --sep ';' --decimal ',' --date-format '%d.%m.%Y' \\
          --customer-col Kunde --date-col Datum --amount-col Betrag -w shop
    """
    from pipelines.ingest import TransactionsSource, ingest_transactions

    if decimal not in (".", ","):
        raise ClmError(f"--decimal must be '.' or ',' (got '{decimal}').")
    ws = Workspace.at(workspace)
    src = TransactionsSource(file, customer_col, date_col, amount_col, date_format, sep, decimal, skip_bad_rows,
                             encoding, drop_duplicates, parse_day(earliest_date, "--earliest-date"))
    with ws.exclusive("clm ingest transactions"), console.status(f"Reading {file}"):
        s = ingest_transactions(src, ws, replace)
    console.print(
        f"Ingested {s.rows_written:,} of {s.rows_read:,} rows: {s.customers:,} customers, "
        f"{s.first_event:%Y-%m-%d} to {s.last_event:%Y-%m-%d}, into {ws.raw_dir}."
    )
    for problem, n in s.skipped.items():
        console.print(f"[yellow]Skipped {n:,} row(s): {problem}.[/yellow]")
    if s.duplicates:
        fate = "left out" if s.duplicates_dropped else "kept (pass --drop-duplicates to leave them out)"
        console.print(f"[yellow]{s.duplicates:,} row(s) repeat an earlier row exactly (customer, date, amount): "
                      f"{fate}.[/yellow]")


# ------------------------------------------------------------------- validate
def _validate(ws: Workspace) -> None:
    from clm.contracts import record_valid, validate_workspace

    with console.status("Validating") as status:
        report = validate_workspace(ws, progress=lambda name: status.update(f"Validating {name}"))
    report.raise_if_invalid()
    record_valid(ws.raw_dir)  # later commands need not check these rows again
    console.print(f"[green]Valid:[/green] {len(report.rows)} tables, {sum(report.rows.values()):,} rows checked.")


@app.command()
@user_errors
def validate(workspace: WorkspaceOpt = None) -> None:
    """Check every raw table of the workspace against its data contract.

    Reports each violation with its table, column, number of rows and examples:
    duplicated keys, nulls in keys, negative amounts, unparseable dates, timestamps after
    the data's end, events for unknown customers, events before signup, and more.
    Exits 3 if the data is invalid. Valid data is recorded as such (raw/_validated.json),
    so that later commands check it again only once a raw file changes.

    Example:  clm validate -w shop
    """
    _validate(Workspace.at(workspace))


# ------------------------------------------------------------------- features
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="As-of date YYYY-MM-DD (features use data before it).",
                                             callback=_a_day)]


def _engine_settings(engine: str, spark_master: str | None, spark_conf: Path | None):  # type: ignore[no-untyped-def]
    """The Spark settings for --engine spark (None for local), checked before any work."""
    from pipelines.spark import check_engine, settings_from_options

    if check_engine(engine) == "local":
        if spark_master is not None or spark_conf is not None:
            raise ClmError("--spark-master and --spark-conf apply to --engine spark; add `--engine spark`.")
        return None
    return settings_from_options(spark_master, spark_conf)


@contextlib.contextmanager
def _engine(ws: Workspace, settings):  # type: ignore[no-untyped-def]
    """None for the local engine; a Spark session (stopped at the end) for --engine spark."""
    from pipelines.spark import spark_session

    if settings is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        with console.status(f"Starting Spark ({settings.remote or settings.master or 'local[*]'})"):
            spark = stack.enter_context(spark_session(settings, ws.root / ".spark"))
        yield spark


def _build_features(ws: Workspace, as_of: str | None, frequency: str, spark=None) -> None:  # type: ignore[no-untyped-def]
    from features.build import build_features, parse_as_of

    dates = [parse_as_of(as_of, ws.read_manifest())] if as_of is not None else None
    with _progress() as bar:
        task = bar.add_task("Building feature snapshots" + (" on Spark" if spark is not None else ""), total=None)
        result = build_features(ws, dates, frequency, lambda done, total: bar.update(task, completed=done, total=total),
                                spark=spark)
        bar.update(task, completed=bar.tasks[0].total or 1, total=bar.tasks[0].total or 1)
    console.print(
        f"Feature groups: {', '.join(result.groups)}. Built {len(result.built_dates)} snapshot date(s) "
        f"({result.rows:,} rows); {result.skipped_dates} already built."
    )
    if result.repaired:
        console.print(f"[yellow]{result.repaired} damaged snapshot file(s) (truncated?) were made again.[/yellow]")


def _apply_features(ws: Workspace, online_store: str, redis_url: str) -> None:
    from features.store import OnlineStoreSettings, apply

    with console.status("Registering feature views in Feast"):
        store = apply(ws, OnlineStoreSettings(online_store, redis_url))
    views = [v.name for v in store.list_feature_views()]
    services = [s.name for s in store.list_feature_services()]
    console.print(f"Feast registry: {len(views)} views ({', '.join(views)}); services: {', '.join(services)}.")


def _materialize(ws: Workspace, as_of: str | None) -> None:
    from features.build import parse_as_of
    from features.store import materialize

    manifest = ws.read_manifest()
    when = parse_as_of(as_of, manifest) if as_of is not None else manifest.end
    with console.status(f"Materialising features as of {when:%Y-%m-%d} into the online store"):
        materialize(ws, when)
    console.print(f"Online store loaded with the latest snapshot at or before {when:%Y-%m-%d}.")


@features_app.command("build")
@user_errors
def features_build(
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
    from features.build import FREQUENCIES

    if frequency not in FREQUENCIES:
        raise ClmError(f"--frequency '{frequency}' is not one of: {', '.join(FREQUENCIES)}.")
    settings = _engine_settings(engine, spark_master, spark_conf)
    ws = Workspace.at(workspace)
    with ws.exclusive("clm features build"), _engine(ws, settings) as spark:
        _build_features(ws, as_of, frequency, spark)


@features_app.command("apply")
@user_errors
def features_apply(
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
    from features.store import ONLINE_STORES

    if online_store not in ONLINE_STORES:
        raise ClmError(f"--online-store '{online_store}' is not one of: {', '.join(ONLINE_STORES)}.")
    if redis_url is not None and "redis" not in online_store:
        raise ClmError(f"--redis-url applies to a Redis online store; add `--online-store redis` (the store now: "
                       f"{online_store}).")
    ws = Workspace.at(workspace)
    with ws.exclusive("clm features apply"):
        _apply_features(ws, online_store, redis_url or "localhost:6379")


@features_app.command("materialize")
@user_errors
def features_materialize(as_of: AsOfOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Load the latest snapshot at or before --as-of (default: the data's end) online.

    Example:  clm features materialize --as-of 2025-12-01
    """
    ws = Workspace.at(workspace)
    with ws.exclusive("clm features materialize"):
        _materialize(ws, as_of)


# ------------------------------------------------------------------- train
def _train(ws: Workspace, models: str, horizon_days: int, as_of: str | None, tracking_uri: str | None,
           command: str = "clm train", skip_up_to_date: bool = False) -> None:
    from features.build import parse_as_of
    from training.config import TrainConfig
    from training.labels import LabelConfig
    from training.train import train

    chosen = _model_list(models)
    check_horizon(horizon_days)
    when = parse_as_of(as_of, ws.read_manifest()) if as_of is not None else None
    config = TrainConfig(models=chosen, labels=LabelConfig(horizon_days=horizon_days), as_of=when,
                         tracking_uri=tracking_uri, command=command, skip_up_to_date=skip_up_to_date)
    with _progress() as bar:
        task = bar.add_task("Training", total=len(chosen))
        reports = train(ws, config, progress=lambda m: bar.update(task, description=f"Training {m}", advance=0))
        bar.update(task, completed=len(chosen), description="Trained")
    table = RichTable(title="Test window figures (registered model | baseline | oracle)", title_justify="left")
    for col in ("model", "version", "champion?", "figures"):
        table.add_column(col)
    for r in reports:
        if r.up_to_date:
            table.add_row(r.model, r.version or "-", "yes" if r.promoted else "-", r.note)
            continue
        if not r.trained:
            table.add_row(r.model, "-", "-", r.note)
            continue
        if r.model == "uplift":
            table.add_row(r.model, r.version or "-", "yes" if r.promoted else "no", _uplift_figures(r) + f" ({r.note})")
            continue
        key = {"churn": "roc_auc", "upsell": "roc_auc", "stage": "macro_f1", "clv": "spearman"}[r.model]
        parts = [f"{key} {r.metrics[key]:.3f} | {r.baseline[key]:.3f}"]
        if r.oracle:  # on the rows where the oracle is the probability of what happened
            mine, best = r.oracle["model_roc_auc"], r.oracle[key]
            parts[0] += f" | {best:.3f} (on the oracle's {int(r.oracle['rows']):,} rows {mine:.3f}: {mine / best:.2f} of oracle)"
        if "ece" in r.metrics:
            parts.append(f"ece {r.metrics['ece']:.3f}")
        if "stays_the_same_macro_f1" in r.metrics:
            parts.append(f"stays-the-same {r.metrics['stays_the_same_macro_f1']:.3f}")
        if "mae" in r.metrics:
            parts.append(f"mae {r.metrics['mae']:.1f} | {r.baseline['mae']:.1f}")
        if r.btyd:
            parts.append("buy-till-you-die: " + ", ".join(f"{k} {v:.3f}" for k, v in r.btyd.items()))
        if "note" in r.split:
            parts.append(str(r.split["note"]))
        if r.registered_kind == "baseline":
            parts.append("registered: the scikit-learn baseline (better than LightGBM on the validation window)")
        table.add_row(r.model, r.version or "-", "yes" if r.promoted else "no", "; ".join(parts) + f" ({r.note})")
    console.print(table)
    if not any(r.trained or r.up_to_date for r in reports):
        raise ClmError("No model was trained: " + " ".join(f"{r.model}: {r.note}" for r in reports))
    _say_what_was_left_out(reports)


def _uplift_figures(r: ModelReport) -> str:
    """The uplift model's line: uplift R2 (registered learner | the other), truth where known."""
    line = f"{r.registered_kind}: uplift R2 {r.metrics['uplift_r2']:.4f} | other learner {r.baseline['uplift_r2']:.4f}"
    if r.oracle:
        o = r.oracle
        line += (f"; vs true effects: Spearman {o['mean_spearman_value']:.2f}, top 10% / 30% capture "
                 f"{o['all_top10_captured']:.2f} / {o['all_top30_captured']:.2f} of the oracle's")
    return line


def _say_what_was_left_out(reports: list[ModelReport]) -> None:
    """A partly trained set is said in words: what is champion now, what was not trained or
    not promoted, and what scores will lack."""
    untrained = [r.model for r in reports if not r.trained and r.applies and not r.up_to_date]
    held_back = [f"{r.model} v{r.version}" for r in reports if r.trained and not r.promoted]
    if untrained:
        console.print(f"[yellow]Not trained: {', '.join(untrained)} (reasons above). Their earlier champions, if "
                      "any, stay in place; without one, `clm score` leaves their columns empty.[/yellow]")
    if held_back:
        console.print(f"[yellow]Registered as challenger only: {', '.join(held_back)} (the gate's reasons above); "
                      "their champions, if any, are unchanged.[/yellow]")


@app.command("train")
@user_errors
def train_cmd(
    models: Annotated[str, typer.Option(help="Comma-separated: churn,upsell,stage,clv,uplift.")] = "churn,upsell,stage,clv,uplift",
    horizon_days: Annotated[int, typer.Option(help="Label horizon H in days (churn, upsell, stage).")] = 90,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Train as if today were this date (YYYY-MM-DD).",
                                              callback=_a_day)] = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train, evaluate and register models; a better new version becomes champion.

    Examples:

      clm train                                   # all models, as of the data's end

      clm train --models churn --as-of 2025-06-01 --horizon-days 60
    """
    _check_tracking(tracking_uri)
    _model_list(models)
    check_horizon(horizon_days)
    ws = Workspace.at(workspace)
    with ws.exclusive("clm train"):
        _train(ws, models, horizon_days, as_of, tracking_uri)


def _model_list(models: str) -> tuple[str, ...]:
    """--models: comma-separated model names, each known (`churn` or `clm-churn`)."""
    from training.names import model_key

    chosen = tuple(dict.fromkeys(model_key(m) for m in models.split(",") if m.strip()))
    if not chosen:
        raise ClmError("--models names no model; give one or more of churn,upsell,stage,clv,uplift (comma-separated).")
    return chosen


# ------------------------------------------------------------------- models
@models_app.command("list")
@user_errors
def models_list(tracking_uri: TrackingOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Each model's versions, aliases and key test figures.

    Example:  clm models list -w demo
    """
    _check_tracking(tracking_uri)
    from training import registry

    ws = Workspace.at(workspace)
    if not registry.has_store(ws, tracking_uri):
        ws.require_existing()
        console.print(f"No registered models in {ws.root} yet: train them with `clm train -w {ws.root}`.")
        return
    client = registry.connect(ws, tracking_uri)
    table = RichTable(title="Registered models", title_justify="left")
    for col in ("model", "version", "aliases", "created", "test figures"):
        table.add_column(col)
    for rm in client.search_registered_models(order_by=["name"]):
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        for mv in sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda v: int(v.version)):
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            shown = ", ".join(f"{k[5:]} {v:.3f}" for k, v in sorted(metrics.items()) if k in SHOWN_FIGURES)
            created = pd_timestamp(mv.creation_timestamp)
            table.add_row(rm.name, str(mv.version), ", ".join(aliases_by_version.get(str(mv.version), [])), created, shown)
    console.print(table)


def _check_tracking(tracking_uri: str | None) -> None:
    """--tracking-uri, checked before any work (and before MLflow is imported)."""
    if tracking_uri is not None:
        from training.uri import check_tracking_uri

        check_tracking_uri(tracking_uri, "--tracking-uri")


def _require_model_store(ws: Workspace, tracking_uri: str | None) -> None:
    """Models to read: a store by URI, or the workspace's own (said before anything is made)."""
    from training import registry

    if not registry.has_store(ws, tracking_uri):
        ws.require_existing()
        registry.tracking_uri(ws, tracking_uri)  # says there are no models yet, and how to train them


SHOWN_FIGURES = ("test_roc_auc", "test_ece", "test_macro_f1", "test_spearman", "test_mae", "test_uplift_r2")


def pd_timestamp(millis: int) -> str:
    import pandas as pd

    return f"{pd.Timestamp(millis, unit='ms', tz='UTC'):%Y-%m-%d %H:%M}"


@models_app.command("promote")
@user_errors
def models_promote(
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
    _check_tracking(tracking_uri)
    from training.names import model_key

    model = model_key(model)
    ws = Workspace.at(workspace)
    from mlflow.exceptions import MlflowException

    from training import registry

    _require_model_store(ws, tracking_uri)
    if not version.strip().isdigit() or int(version) < 1:
        raise ClmError(f"VERSION '{version}' is not a version number: see `clm models list` (e.g. 3).")
    version = str(int(version))  # 03 is version 3
    with ws.exclusive("clm models promote"):
        client = registry.connect(ws, tracking_uri)
        try:
            client.get_model_version(registry.registered_name(model), version)
        except MlflowException:
            raise ClmError(f"{registry.registered_name(model)} has no version {version}; see `clm models list`.") from None
        registry.load_version(client, model, version)  # one whose files are gone is said now, not by the next batch
        changed = registry.set_champion(client, model, version, reason=reason, command="clm models promote")
    if changed:
        console.print(f"{registry.registered_name(model)}: version {version} is now champion.")
    else:
        console.print(f"{registry.registered_name(model)}: version {version} is already champion; nothing changed.")


@models_app.command("rollback")
@user_errors
def models_rollback(
    model: ModelArg,
    reason: ReasonOpt = "",
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Restore the previous champion (recorded in `clm models history`).

    Example:  clm models rollback churn --reason "complaints about retention offers"
    """
    _check_tracking(tracking_uri)
    from training.names import model_key

    model = model_key(model)
    ws = Workspace.at(workspace)
    from mlflow.exceptions import MlflowException

    from training import registry

    _require_model_store(ws, tracking_uri)
    with ws.exclusive("clm models rollback"):
        client = registry.connect(ws, tracking_uri)
        try:
            version = registry.rollback(client, model, reason=reason, command="clm models rollback")
        except MlflowException:
            raise ClmError(f"No registered model {registry.registered_name(model)}; run `clm train` first.") from None
    console.print(f"{registry.registered_name(model)}: version {version} is champion again.")


@models_app.command("history")
@user_errors
def models_history(model: ModelArg, tracking_uri: TrackingOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Every change of a model's champion, oldest first: when, promote or rollback, which
    version replaced which, how (the gate or by hand), by whom or which scheduler
    ($CLM_ACTOR), the command, why, and the figures it was judged on.

    Example:  clm models history churn
    """
    _check_tracking(tracking_uri)
    from training.names import model_key

    model = model_key(model)
    ws = Workspace.at(workspace)
    from mlflow.exceptions import MlflowException

    from training import audit, registry

    _require_model_store(ws, tracking_uri)
    client = registry.connect(ws, tracking_uri)
    try:
        events = audit.history(client, registry.registered_name(model))
    except MlflowException:
        raise ClmError(f"No registered model {registry.registered_name(model)}; run `clm train` first.") from None
    if not events:
        console.print(f"{registry.registered_name(model)}: no champion change recorded yet.")
        return
    console.print(f"[bold]{registry.registered_name(model)}: champion changes, oldest first[/bold]")
    for e in events:
        figures = ", ".join(f"{k.removeprefix('test_')} {v:.3f}" for k, v in sorted(e.figures.items())
                            if k in SHOWN_FIGURES)
        how = f"{e.how} ({e.command})" if e.command else e.how
        console.print(f"{e.at[:19].replace('T', ' ')} UTC  [bold]{e.event}[/bold] version {e.previous or '-'} -> "
                      f"{e.version}, {how}, by {e.by}", soft_wrap=True, highlight=False)
        console.print(f"    why: {e.reason or '(not given)'}", soft_wrap=True, highlight=False)
        if figures:
            console.print(f"    figures: {figures}", soft_wrap=True, highlight=False)


# ------------------------------------------------------------------- score
@app.command("score")
@user_errors
def score_cmd(
    out: Annotated[Path, typer.Option("--out", help="Parquet dataset (a folder) to write; an earlier output there is replaced.")],
    as_of: AsOfOpt = None,
    budget: Annotated[float | None, typer.Option(
        help="What the decided actions may cost in all (contacts and discounts), allocated across the whole "
             "base; default: no limit but the catalogue's daily capacities.")] = None,
    catalogue: CatalogueOpt = None,
    exploration: Annotated[float, typer.Option(
        help="Share of decisions replaced by a random allowed action (or none), logged with its propensity.")] = 0.02,
    chunk_rows: Annotated[int, typer.Option(
        help="Customers scored at a time: memory stays flat whatever the size of the base.")] = 100_000,
    engine: EngineOpt = "local",
    spark_master: SparkMasterOpt = None,
    spark_conf: SparkConfOpt = None,
    partitions: Annotated[int | None, typer.Option(
        help="With --engine spark: partitions the base is cut into (default: Spark's).")] = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Score and decide for every customer known at --as-of with the champion models:
    the nightly batch.

    Writes a Parquet dataset (a folder of part files, with _manifest.json: models and
    versions, counts, timings, input fingerprint) with customer_id, churn_probability,
    upsell_probability, stage (current, by the stage rules), predicted_stage,
    stage_probabilities (JSON), clv, as_of, action, action_value, action_cost, reasons
    (JSON list of sentences), propensity, explored, model_versions (JSON). It appears
    only when complete; a killed run leaves the earlier output and can be run again.

    Who gets scores: on a transactions-only (non-contractual) workspace, every customer
    with a purchase before --as-of, including those the stage rules call dormant or
    churned (churn there is an estimate: lapsed customers are win-back targets). On a
    contractual workspace, a cancelled customer keeps null churn, upsell and CLV scores
    (the contract has ended) and the predicted stage 'churned'.

    With an uplift champion, each scored customer also gets a decision, allocated under
    --budget and the daily capacities across the whole base; decisions are logged in
    WORKSPACE/decisions/. Read the output with pandas.read_parquet(OUT).

    --engine spark scores and decides on Spark with the same functions: the models run on
    the executors, the budget's allocation across the whole base on the driver, so every
    decision is the one the local engine makes (see pipelines/score_spark.py).

    Examples:

      clm score --as-of 2025-12-01 --out scores.parquet

      clm score --as-of 2025-12-01 --out plan.parquet --budget 5000 --catalogue my_actions.yaml

      clm score --out scores.parquet --engine spark --spark-master local[8]
    """
    _check_tracking(tracking_uri)
    from decisions.catalogue import load_catalogue
    from features.build import parse_as_of
    from pipelines.outputs import is_batch_output

    check_output_dataset(out, "--out", is_batch_output, "`clm score` output")  # before any work
    settings = _engine_settings(engine, spark_master, spark_conf)
    actions = load_catalogue(catalogue)
    _check_budget(budget)
    SHARE.check(exploration, "--exploration")
    CHUNK_ROWS.check(chunk_rows, "--chunk-rows")
    if partitions is not None:
        if engine != "spark":
            raise ClmError(f"--partitions {partitions} applies to --engine spark; add `--engine spark`.")
        PARTITIONS.check(partitions, "--partitions")
    ws = Workspace.at(workspace)
    manifest = ws.read_manifest()
    when = parse_as_of(as_of, manifest) if as_of is not None else manifest.end
    with ws.exclusive("clm score"), _engine(ws, settings) as spark:
        _score(ws, when, out, tracking_uri, actions, budget, exploration, chunk_rows, spark=spark,
               partitions=partitions)


def _score(ws: Workspace, when, out: Path, tracking_uri: str | None, actions, budget: float | None,  # type: ignore[no-untyped-def]
           exploration: float = 0.02, chunk_rows: int = 100_000, keep_current: bool = False, spark=None,
           partitions: int | None = None) -> None:
    from pipelines.score import score

    if spark is not None:
        from pipelines.score_spark import score_on_spark

        with console.status(f"Scoring and deciding on Spark as of {when:%Y-%m-%d}"):
            result = score_on_spark(spark, ws, when, out, tracking_uri, actions, budget, exploration, partitions,
                                    keep_current)
    else:
        with _progress() as bar:
            task = bar.add_task(f"Scoring customers as of {when:%Y-%m-%d}", total=None)

            def show(step: str, done: int, total: int) -> None:
                bar.update(task, description=f"{step} (chunks of {chunk_rows:,})", completed=done, total=total)

            result = score(ws, when, out, tracking_uri, actions, budget, exploration, chunk_rows, show, keep_current)
    used = ", ".join(f"{m} v{v}" for m, v in result.models.items() if v) or "none"
    if result.kept:
        console.print(f"{result.path} already holds the scores of these champions ({used}) on these data as of "
                      f"{when:%Y-%m-%d}: left as it is.")
        return
    line = (f"Scored {result.scored:,} of {result.customers:,} customers as of {when:%Y-%m-%d} in "
            f"{result.timings['total_s']:.1f} s ({result.customers / max(result.timings['total_s'], 1e-9):,.0f}/s)")
    if result.decisions is not None:
        d = result.decisions
        mix = ", ".join(f"{a} {k:,}" for a, k in d["actions"].items())  # type: ignore[union-attr]
        limit = "" if d["budget"] is None else f" (budget {d['budget']:,.0f})"
        line += (f"; decisions: {mix}; expected value {d['expected_value']:,.0f} for a cost of "
                 f"{d['spent']:,.0f}{limit}; {d['explored']:,} explored")
    console.print(f"{line}. Wrote {result.path} (champions: {used}).")


REPORT_NAME = "reports/report.html"  # where `clm run` writes the lifecycle report, in the workspace


def _check_budget(budget: float | None) -> None:
    if budget is not None:
        MONEY.check(budget, "--budget")


# ------------------------------------------------------------------- retrain
@app.command("retrain")
@user_errors
def retrain_cmd(
    as_of: AsOfOpt = None,
    horizon_days: Annotated[int, typer.Option(help="Days ahead that churn and upsell are predicted.")] = 90,
    budget: Annotated[float | None, typer.Option(help="Budget for the decisions (default: the default budget "
                                                 "for the base's size).")] = None,
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
    _check_tracking(tracking_uri)
    _check_budget(budget)
    check_horizon(horizon_days)
    settings = _engine_settings(engine, spark_master, spark_conf)
    ws = Workspace.at(workspace)
    # The lock first, before the heavy imports: a second run is refused at once.
    with ws.exclusive("clm retrain"):
        from decisions.catalogue import load_catalogue

        actions = load_catalogue(catalogue)  # a broken catalogue is named before any work
        _retrain(ws, as_of, horizon_days, budget, actions, settings, tracking_uri)


def _retrain(ws: Workspace, as_of: str | None, horizon_days: int, budget: float | None, actions, settings,  # type: ignore[no-untyped-def]
             tracking_uri: str | None) -> None:
    from features.build import parse_as_of
    from features.store import apply
    from pipelines import outputs
    from pipelines.policy import default_budget

    with _engine(ws, settings) as spark:
        when = parse_as_of(as_of, ws.read_manifest()) if as_of is not None else ws.read_manifest().end
        console.rule("[bold]1/4 Features")
        _build_features(ws, None, "monthly", spark)
        _build_features(ws, f"{when:%Y-%m-%d}", "monthly", spark)
        with console.status("Registering feature views in Feast"):
            apply(ws)  # the online store already configured stays
        console.rule("[bold]2/4 Train, gate and promote")
        _train(ws, "churn,upsell,stage,clv,uplift", horizon_days, f"{when:%Y-%m-%d}", tracking_uri,
               command="clm retrain", skip_up_to_date=True)
        console.rule("[bold]3/4 Online store")
        _materialize(ws, f"{when:%Y-%m-%d}")
        console.rule("[bold]4/4 Score and decide")
        spend = default_budget(_customers(ws)) if budget is None else budget
        _score(ws, when, outputs.scores_path(ws, when), tracking_uri, actions, spend, keep_current=True, spark=spark)


# ------------------------------------------------------------------- monitor
@app.command("monitor")
@user_errors
def monitor_cmd(
    as_of: AsOfOpt = None,
    html: Annotated[str | None, typer.Option("--html", help="Also write the page (plots and tables) to this "
                                              "self-contained HTML file.")] = None,
    thresholds: Annotated[Path | None, typer.Option(help="YAML file of thresholds (default: the one shipped, "
                                                    "pipelines/monitor.yaml).")] = None,
    horizon_days: Annotated[int, typer.Option(help="Outcome window of the delivered churn and upsell scores.")] = 90,
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
    _check_tracking(tracking_uri)
    from features.build import parse_as_of
    from pipelines import monitor as mon

    check_horizon(horizon_days)
    limits = mon.load_thresholds(thresholds)
    page = check_output_file(html, "--html") if html is not None else None
    ws = Workspace.at(workspace)
    manifest = ws.read_manifest()
    when = parse_as_of(as_of, manifest) if as_of is not None else manifest.end
    with ws.exclusive("clm monitor"), console.status(f"Monitoring as of {when:%Y-%m-%d}"):
        report = mon.monitor(ws, when, limits, tracking_uri, horizon_days)
        if page is not None:
            from pipelines.monitor_page import render

            write_text_atomically(page, render(report))
        mon.log_to_mlflow(ws, report, tracking_uri, page)
    _print_monitor(report)
    if page is not None:
        console.print(f"Wrote {page}.")
    if report.flags:
        err_console.print(f"[bold red]{len(report.flags)} flag(s):[/bold red] " + "; ".join(report.flags))
        raise typer.Exit(mon.FLAG_EXIT_CODE)


def _print_monitor(report) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    drift = report.drift
    table = RichTable(title=f"Drift as of {report.as_of:%Y-%m-%d} ({report.rows:,} customers)", title_justify="left")
    for col in ("model", "kind", "variable", "PSI", "flagged"):
        table.add_column(col)
    shown = drift[(drift.kind != "feature") | drift.flagged]
    top = drift[drift.kind == "feature"].drop_duplicates("variable").head(5)
    for r in pd.concat([shown, top]).drop_duplicates(["model", "kind", "variable"]).itertuples():
        table.add_row(r.model, r.kind, r.variable, f"{r.psi:.3f}", "yes" if r.flagged else "")
    console.print(table)
    if len(report.performance):
        perf = RichTable(title="Delivered scores, matured", title_justify="left")
        for col in ("scored at", "model", "customers", "ROC AUC", "champion's test AUC", "ECE", "lift top 10%"):
            perf.add_column(col)
        for r in report.performance.itertuples():
            perf.add_row(r.scored_at, r.model, f"{r.customers:,}", f"{r.roc_auc:.3f}",
                         "-" if r.champion_test_auc is None else f"{r.champion_test_auc:.3f}", f"{r.ece:.3f}",
                         f"{r.lift_top_decile:.2f}")
        console.print(perf)
    if len(report.policy):
        pol = RichTable(title="Policy value per decision over doing nothing (off-policy, DR)", title_justify="left")
        for col in ("decided at", "decisions", "DR", "interval", "truth", "uplift learned from it"):
            pol.add_column(col)
        for r in report.policy.itertuples():
            truth = "-" if r.true_value_per_decision is None or r.true_value_per_decision != r.true_value_per_decision \
                else f"{r.true_value_per_decision:.2f}"
            pol.add_row(r.decided_at, f"{r.decisions:,}", f"{r.dr_value_per_decision:.2f}",
                        f"{r.dr_low:.2f} .. {r.dr_high:.2f}", truth, "yes" if r.uplift_learned_from_it else "no")
        console.print(pol)
    for note in report.notes:
        console.print(f"[yellow]{note}[/yellow]")


# ------------------------------------------------------------------- report
@app.command("report")
@user_errors
def report_cmd(
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
    _check_tracking(tracking_uri)
    from features.build import parse_as_of

    page = check_output_file(out, "--out")
    ws = Workspace.at(workspace)
    manifest = ws.read_manifest()
    when = parse_as_of(as_of, manifest) if as_of is not None else manifest.end
    with ws.exclusive("clm report"):
        _write_report(ws, when, page, tracking_uri)


def _write_report(ws: Workspace, when, out: Path, tracking_uri: str | None) -> None:  # type: ignore[no-untyped-def]
    from pipelines.report import lifecycle_report
    from pipelines.report_page import render

    with console.status(f"Writing the lifecycle report as of {when:%Y-%m-%d}"):
        page = render(lifecycle_report(ws, when, tracking_uri))
    write_text_atomically(out, page)
    console.print(f"Lifecycle report: {out.resolve()}")


# ------------------------------------------------------------------- serve
def _example_customer(ws: Workspace) -> str:
    """A customer the online store knows and the models score, for the examples printed."""
    import pandas as pd

    from decisions.population import in_population
    from features.snapshots import group_dir

    latest = max(group_dir(ws, "profile").glob("*.parquet"), default=None)
    if latest is None:
        return "C0000001"
    profile = pd.read_parquet(latest, columns=["customer_id", "is_subscribed"])
    contractual = ws.read_manifest().business == "contractual"
    rfm = group_dir(ws, "rfm") / latest.name
    frame = profile if contractual or not rfm.exists() else pd.read_parquet(rfm, columns=["customer_id",
                                                                                          "frequency_total"])
    live = frame["customer_id"][in_population(frame, contractual)]
    return str(live.iloc[0] if len(live) else frame["customer_id"].iloc[0])


def _check_port_free(host: str, port: int) -> None:
    """The address must be free before the server starts (else BentoML fails in a traceback)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ClmError(f"--host '{host}' is not an address of this machine ({err.strerror}); e.g. 127.0.0.1 or "
                       "0.0.0.0.") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: a closing socket is no user
        try:
            probe.bind(address)
        except OSError as err:
            raise ClmError(f"Cannot listen on {host}:{port} ({err.strerror}): another server holds the port? Choose "
                           "another with --port, e.g. --port 3001.") from None


def _curl(host: str, port: int, customer: str) -> str:
    body = '{"customer_id": "%s", "context": {"intent": "cancelling", "channel": "phone"}}' % customer
    return f"curl -s -X POST http://{host}:{port}/score -H 'content-type: application/json' -d '{body}'"


@app.command("serve")
@user_errors
def serve_cmd(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 for every interface).")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Worker processes; each holds its own models.")] = 1,
    reload_seconds: Annotated[float, typer.Option(
        help="How often to look for a newly promoted champion (served without a restart).")] = 5.0,
    catalogue: CatalogueOpt = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start the real-time API (BentoML) on the workspace's champions and online store.

    Endpoints: POST /score, /score_batch, /score_features, /feedback; GET /healthz,
    /readyz, /metrics; the OpenAPI page at http://HOST:PORT/. API keys (optional): set
    CLM_API_KEYS=key1,key2 or CLM_API_KEYS_FILE=keys.txt, and send X-API-Key.

    Examples:

      clm serve --port 3000 -w demo

      curl -s -X POST http://127.0.0.1:3000/score -H 'content-type: application/json' -d '{"customer_id": "C0000001"}'

      CLM_API_KEYS=s3cret clm serve --workers 2
    """
    _check_tracking(tracking_uri)
    from decisions.catalogue import load_catalogue
    from features.store import check_online_store
    from pipelines.score import require_champions
    from training import registry

    if not 0 < port < 65536:
        raise ClmError(f"--port {port} is not a port number (1-65535).")
    WORKERS.check(workers, "--workers")
    RELOAD_SECONDS.check(reload_seconds, "--reload-seconds")
    _check_port_free(host, port)
    load_catalogue(catalogue)  # a broken catalogue is named before the server starts
    ws = Workspace.at(workspace)
    ws.read_manifest()
    require_champions(ws, registry.connect(ws, tracking_uri))
    check_online_store(ws)
    env = {**os.environ, "CLM_WORKSPACE": str(ws.root), "CLM_WORKERS": str(workers),
           "CLM_RELOAD_SECONDS": str(reload_seconds)}
    if tracking_uri:
        env["CLM_TRACKING_URI"] = tracking_uri
    if catalogue:
        env["CLM_CATALOGUE"] = str(catalogue.resolve())
    code_root = Path(__file__).resolve().parent.parent
    console.print(f"Serving {ws.root} on http://{host}:{port} (OpenAPI page there). Try:\n  "
                  f"{_curl(host if host != '0.0.0.0' else '127.0.0.1', port, _example_customer(ws))}", soft_wrap=True)
    bentoml = Path(sys.executable).parent / "bentoml"
    sys.stdout.flush()
    # Become the BentoML server (no parent left behind): a signal to this process reaches
    # the server itself, which stops its workers (they run in sessions of their own).
    os.execve(str(bentoml), [str(bentoml), "serve", "serving.service:Clm", "--host", host, "--port", str(port),
                             "--working-dir", str(code_root)], env)


# ------------------------------------------------------------------- policy


def _evaluate_policy(ws: Workspace, as_of: str | None, budget: float | None, catalogue: Path | None,
                     json_out: Path | None, tracking_uri: str | None) -> None:
    from clm.domain import Table
    from decisions.catalogue import load_catalogue
    from features.build import parse_as_of
    from pipelines.offpolicy import clm_offpolicy
    from pipelines.policy import check_decision_date, default_budget, evaluate, load_inputs, report_json
    from pipelines.score import write_json

    actions = load_catalogue(catalogue)  # a broken catalogue is named before any work
    _check_budget(budget)
    if not ws.table_path(Table.ACTIONS).exists():
        raise ClmError(f"{ws.root} holds no logged decisions (actions table): there is no uplift model to decide "
                       "with and nothing to evaluate a policy from. A transactions export cannot be evaluated.")
    manifest = ws.read_manifest()
    when = parse_as_of(as_of, manifest) if as_of is not None else manifest.end
    check_decision_date(when)
    report: dict[str, object] = {}
    if ws.table_path(Table.GROUND_TRUTH_EFFECTS).exists():
        with console.status(f"Deciding for the base as of {when:%Y-%m-%d} with every policy"):
            inputs = load_inputs(ws, when, tracking_uri)
            spend = default_budget(len(inputs.customers)) if budget is None else budget
            results = evaluate(actions, inputs, spend)
        _print_policies(results, inputs, spend)
        report = report_json(results, inputs, spend)
    else:
        console.print("No true effects here (real data): clm's policy is estimated from the logged decisions only.")
    with console.status("Estimating clm's policy off-policy from the logged decisions"):
        offpolicy, why = clm_offpolicy(ws, actions, when, tracking_uri)
    if offpolicy is None:
        console.print(f"[yellow]Off-policy estimate skipped: {why}.[/yellow]")
        report["off_policy"] = {"skipped": why}
    else:
        _print_offpolicy(offpolicy)
        report["off_policy"] = offpolicy.as_dict()
    if json_out is not None:
        write_json(report, json_out)
        console.print(f"Report written to {json_out}")


def _print_policies(results, inputs, spend: float) -> None:  # type: ignore[no-untyped-def]
    from pipelines.policy import POLICIES

    oracle = results["oracle"].value
    table = RichTable(title=f"Policies as of {inputs.as_of:%Y-%m-%d}, budget {spend:,.0f} for {len(inputs.customers):,} "
                      "customers: true incremental value (simulator's effects)", title_justify="left")
    for col in ("policy", "value per 1,000", "cost per 1,000", "treated", "of oracle"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name in POLICIES:
        r, d = results[name], results[name].as_dict()
        share = f"{r.value / oracle:.0%}" if oracle > 0 else "-"
        table.add_row(name, f"{d['value_per_1000']:,.0f}", f"{d['cost_per_1000']:,.0f}", f"{r.treated:,}", share)
    console.print(table)
    mix = RichTable(title="Actions chosen", title_justify="left")
    mix.add_column("policy", no_wrap=True)
    for action in results["oracle"].actions:
        mix.add_column(action.replace("_", " "), justify="right")
    for name in POLICIES[:-1]:
        mix.add_row(name, *(f"{k:,}" for k in results[name].actions.values()))
    console.print(mix)
    finder = RichTable(title="Value finder (clm): customers left with no action, by the funnel step where their "
                       "last action fell, and the value that step left (clm's estimate of their best action that "
                       "reached it)", title_justify="left")
    for col in ("step", "customers", "of them with a paying action", "value left"):
        finder.add_column(col, justify="left" if col == "step" else "right")
    for row in results["clm"].value_finder:
        finder.add_row(str(row["step"]), f"{row['customers']:,}", f"{row['with_a_paying_action']:,}",
                       f"{row['value_left']:,.0f}")
    console.print(finder)
    if inputs.uplift_note:
        console.print(f"[yellow]Note: {inputs.uplift_note}.[/yellow]")


def _print_offpolicy(report) -> None:  # type: ignore[no-untyped-def]
    d = report.as_dict()
    table = RichTable(title=f"Off-policy estimate of clm's policy (no budget) from the {report.decisions:,} decisions "
                      f"logged on {report.cutoff:%Y-%m-%d}: incremental value per 1,000 decisions", title_justify="left")
    for col in ("estimator", "estimate", "95% interval", "truth", "covered"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    truth = d["truth_per_1000"]
    for name in ("ips", "snips", "dr"):
        e = d[name]
        table.add_row(name.upper(), f"{e['value_per_1000']:,.0f}", f"{e['low']:,.0f} .. {e['high']:,.0f}",
                      "-" if truth is None else f"{truth:,.0f}",
                      "-" if e["covers_truth"] is None else ("yes" if e["covers_truth"] else "no"))
    console.print(table)


@app.command("evaluate-policy")
@user_errors
def evaluate_policy_cmd(
    as_of: AsOfOpt = None,
    budget: Annotated[float | None, typer.Option(
        help="What this decision run may spend (contacts and discounts); default 0.15 per customer of the base.")] = None,
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
    _check_tracking(tracking_uri)
    json_path = check_output_file(json_out, "--json") if json_out is not None else None
    ws = Workspace.at(workspace)
    with ws.exclusive("clm evaluate-policy"):  # it may build the date's feature snapshots
        _evaluate_policy(ws, as_of, budget, catalogue, json_path, tracking_uri)


# ------------------------------------------------------------------- backtest
@app.command("backtest")
@user_errors
def backtest_cmd(
    as_of: Annotated[str, typer.Option("--as-of", help="Scoring date D (YYYY-MM-DD); D + H must be within the data.",
                                       callback=_a_day)],
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
    _check_tracking(tracking_uri)
    from features.build import parse_as_of
    from pipelines.backtest import BacktestConfig, backtest, check_targets
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
        report = backtest(ws, config, progress=status.update)
    _print_backtest(report)
    if json_path is not None:
        write_json(report, json_path)
        console.print(f"Report written to {json_path}.")


def _print_backtest(report: dict) -> None:
    table = RichTable(title=f"Backtest as of {report['as_of']}: {report['customers_scored']:,} customers scored, "
                      f"outcomes over the next {report['horizon_days']} days", title_justify="left")
    for col in ("target", "model", "customers", "figures"):
        table.add_column(col)
    for target, block in report["targets"].items():
        for name, f in block["models"].items():
            if "roc_auc" in f:
                shown = (f"roc_auc {f['roc_auc']:.4f}  pr_auc {f['pr_auc']:.4f}  ece {f['ece']:.4f}  "
                         f"lift@10% {f['lift_top_decile']:.2f}  capture@10% {f['capture_top_decile']:.2f}")
                if "clm_roc_auc_same_customers" in f:
                    shown += f"  (clm on these customers {f['clm_roc_auc_same_customers']:.4f})"
            else:
                shown = f"spearman {f['spearman']:.4f}  mae {f['mae']:.1f}  ({block['window_days']}-day value)"
            table.add_row(target, name, f"{f['customers']:,}", shown)
    console.print(table)
    for note in report["notes"]:
        console.print(f"[yellow]{note}[/yellow]")


# ------------------------------------------------------------------- run
def _customers(ws: Workspace) -> int:
    import pyarrow.parquet as pq

    from clm.domain import Table

    return pq.ParquetFile(ws.table_path(Table.CUSTOMERS)).metadata.num_rows


def _holds_this_simulation(ws: Workspace, config: SimulationConfig) -> bool:
    """The same main job again (a simulation with these arguments): `clm run` starts it over
    by itself. Another business, or another simulation, needs --replace."""
    import pandas as pd

    try:
        m = ws.read_manifest()
    except ClmError:  # no manifest, or a damaged one: not ours to remove
        return False
    same = (m.details.get("customers"), m.details.get("seed"), m.start) == (config.n_customers, config.seed, config.start)
    return m.source == "simulator" and same and m.end == config.end + pd.Timedelta(days=1)


@app.command()
@user_errors
def run(
    customers: CustomersOpt = DEFAULT_CUSTOMERS,
    seed: SeedOpt = DEFAULT_SEED,
    start: StartOpt = DEFAULT_START,
    end: EndOpt = DEFAULT_END,
    replace: ReplaceOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The main job, end to end on embedded defaults: simulate, validate, build
    features, register them in Feast and load the online store, train and register the
    models, judge the decision policy, score and decide for the whole base
    (WORKSPACE/scores/), write the lifecycle report (WORKSPACE/reports/report.html), then
    summarise and show how to call the real-time API.

    A workspace holding the same simulation (the same -n, --seed, --start and --end) is
    started over; one holding another simulation or ingested data only with --replace.

    Example:  clm run -n 20000 -w demo
    """
    ws, config = Workspace.at(workspace), _simulation_config(customers, seed, start, end)
    with ws.exclusive("clm run"):
        console.rule("[bold]1/5 Simulate")
        _simulate(ws, config, replace or _holds_this_simulation(ws, config))
        console.rule("[bold]2/5 Validate")
        _validate(ws)
        console.rule("[bold]3/5 Features")
        _build_features(ws, None, "monthly")
        _apply_features(ws, "sqlite", "")
        console.rule("[bold]4/5 Online store")
        _materialize(ws, None)
        console.rule("[bold]5/5 Train")
        _train(ws, "churn,upsell,stage,clv,uplift", 90, None, None)
        console.rule("[bold]Policy")
        try:
            _evaluate_policy(ws, None, None, None, None, None)
        except ClmError as err:  # e.g. too few logged decisions to learn uplift on a tiny base
            console.print(f"[yellow]Policy evaluation skipped: {err}[/yellow]")
        console.rule("[bold]Score and decide")
        from decisions.catalogue import load_catalogue
        from pipelines import outputs
        from pipelines.policy import default_budget

        manifest = ws.read_manifest()
        try:
            _score(ws, manifest.end, outputs.scores_path(ws, manifest.end), None, load_catalogue(None),
                   default_budget(_customers(ws)))
        except ClmError as err:  # e.g. no model passed the gate on a tiny base
            console.print(f"[yellow]Scoring skipped: {err}[/yellow]")
        console.rule("[bold]Report")
        _write_report(ws, manifest.end, ws.root / REPORT_NAME, None)
        console.rule("[bold]Summary")
        _print_summary(ws)
        console.print(f"\nThe lifecycle report (open it in a browser): {(ws.root / REPORT_NAME).resolve()}",
                      soft_wrap=True)
        console.print(f"\nThe real-time API: start it with\n  clm serve -w {ws.root}\nand, from another "
                      f"terminal, ask for a customer's scores and next-best actions:\n  "
                      f"{_curl('127.0.0.1', 3000, _example_customer(ws))}", soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover - `python -m pipelines.cli`
    app()
