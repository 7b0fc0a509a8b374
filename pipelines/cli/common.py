"""What every command shares: the console, the options, the one error handler, the
progress display (a `Reporter` drawn with Rich), and the option checks made before any
work. No job logic: the jobs are in `pipelines.jobs`.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

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
from rich.text import Text

from clm.dates import parse_day
from clm.errors import ClmError
from clm.limits import HORIZON_DAYS, MONEY
from clm.workspace import WORKSPACE_ENV

if TYPE_CHECKING:  # the jobs' types; the modules themselves are imported when a command runs
    from pipelines.jobs.reporting import Count, Say
    from pipelines.spark import SparkSettings

console = Console()
err_console = Console(stderr=True)


# ------------------------------------------------------------------- options
def a_day(param: typer.CallbackParam, value: str | None) -> str | None:
    """A day option, checked as it is read (`clm.dates.parse_day`): a date written another
    way is refused before any work, by every command alike."""
    if value is not None:
        option = param.opts[0] if param.opts else str(param.name)
        try:
            parse_day(value, option)
        except ClmError as err:
            raise typer.BadParameter(str(err).removeprefix(f"{option} ")) from None
    return value


WorkspaceOpt = Annotated[  # text, not a Path: typer reads "" as Path("."), the current folder
    str | None,
    typer.Option("--workspace", "-w", help=f"Workspace folder (default ./workspace, or ${WORKSPACE_ENV}).", show_default=False),
]
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
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="As-of date YYYY-MM-DD (features use data before it).",
                                             callback=a_day)]
CustomersOpt = Annotated[int, typer.Option("--customers", "-n", help="Customers who sign up over the period.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed: the same arguments give byte-identical files.")]
StartOpt = Annotated[str, typer.Option(help="First simulated day, YYYY-MM-DD.", callback=a_day)]
EndOpt = Annotated[str, typer.Option(help="Last simulated day (inclusive), YYYY-MM-DD.", callback=a_day)]
DEFAULT_CUSTOMERS, DEFAULT_SEED, DEFAULT_START, DEFAULT_END = 5000, 42, "2024-01-01", "2025-12-31"
ReplaceOpt = Annotated[
    bool,
    typer.Option("--replace", help="Start over a workspace that already holds a business: its folders (raw data, "
                                   "features, Feast repo, MLflow models, decisions, scores, reports) are removed once "
                                   "the new data is complete; files of yours in them stop it."),
]


# ------------------------------------------------------------------- checks made before any work
def check_horizon(horizon_days: int) -> None:
    HORIZON_DAYS.check(horizon_days, "--horizon-days")


def check_budget(budget: float | None) -> None:
    if budget is not None:
        MONEY.check(budget, "--budget")


def check_tracking(tracking_uri: str | None) -> None:
    """--tracking-uri, checked before any work (and before MLflow is imported)."""
    if tracking_uri is not None:
        from training.uri import check_tracking_uri  # light: no MLflow

        check_tracking_uri(tracking_uri, "--tracking-uri")


def engine_settings(engine: str, spark_master: str | None, spark_conf: Path | None) -> SparkSettings | None:
    """The Spark settings for --engine spark (None for local), checked before any work."""
    from pipelines.spark import (  # light: PySpark is imported by the session
        check_engine,
        settings_from_options,
    )

    if check_engine(engine) == "local":
        if spark_master is not None or spark_conf is not None:
            raise ClmError("--spark-master and --spark-conf apply to --engine spark; add `--engine spark`.")
        return None
    return settings_from_options(spark_master, spark_conf)


def model_list(models: str) -> tuple[str, ...]:
    """--models: comma-separated model names, each known (`churn` or `clm-churn`)."""
    from training.names import model_key  # light: names only

    try:
        chosen = tuple(dict.fromkeys(model_key(m) for m in models.split(",") if m.strip()))
    except ClmError as err:
        raise ClmError(f"--models: {err}") from None
    if not chosen:
        raise ClmError("--models names no model; give one or more of churn,upsell,stage,clv,uplift (comma-separated).")
    return chosen


# ------------------------------------------------------------------- errors
# What the machine refuses (not clm's mistake, nor the user's input): said in one sentence.
MACHINE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Print a ClmError as a paragraph on stderr and exit with its code; likewise a file
    the machine will not let clm write (no permission, a read-only or full disk)."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except ClmError as err:
            print_error(str(err))
            raise typer.Exit(code=err.exit_code) from None
        except OSError as err:
            if err.errno not in MACHINE_ERRNOS:
                raise
            where = f" {err.filename}" if err.filename else ""
            print_error(f"clm cannot use{where}: {err.strerror}. Check that you may write to the workspace (and the "
                        "output's folder) and that the disk has room, then run the command again.")
            raise typer.Exit(code=2) from None

    return cast(F, wrapper)  # functools.wraps keeps the signature typer reads


def clm_command() -> str:
    """How to call clm again as this process was called, for a command printed to be run as
    it is: `clm` when that is what PATH finds, else the path it was started by (e.g.
    `.venv/bin/clm`, the README's first command, with the virtual environment not active)."""
    started = Path(sys.argv[0])
    if started.name != "clm":  # python -m pipelines.cli, or an in-process caller
        return "clm"
    on_path = shutil.which("clm")
    return "clm" if on_path and Path(on_path).resolve() == started.resolve() else str(started)


def print_error(message: str) -> None:
    # As text, not Rich markup: a value the user gave ("local[x]", a path with brackets) is shown as given.
    err_console.print(Panel(Text(message), title="clm: error", title_align="left", border_style="red"))


def say(text: str, style: str = "", wrap: bool = True) -> None:
    """A line of text as it is (no Rich markup read in it: a user's value may hold brackets);
    wrap=False keeps a command to copy on one line."""
    console.print(Text(text, style=style), soft_wrap=not wrap)


# ------------------------------------------------------------------- the process
SIGTERM_RETRY_SECONDS = 0.05  # a SIGTERM that came during an import is taken again this much later
SIGTERM_GRACE_SECONDS = 60.0  # a process still alive this long after its first SIGTERM ends without its cleanup


def exit_cleanly_on_sigterm() -> None:
    """`kill` (SIGTERM) ends clm as Ctrl-C does: staging folders are removed, the MLflow run
    is marked failed, the workspace lock released, exit code 143. (A SIGKILL cannot be
    caught: the next writer cleans up after it.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, SigtermExit())


class SigtermExit:
    """The SIGTERM handler: SystemExit(143) raised where the main thread stands, so that
    every `finally` cleans up on the way out.

    - Not inside an import: an extension module's initialisation (numpy's, for one)
      swallows an exception raised in it, and the command would go on as if never asked to
      stop. There the signal is sent again a moment later, once the import is done.
    - Once: a second SIGTERM while the exit is under way would cut its cleanup short.
    - Within SIGTERM_GRACE_SECONDS of the first signal, whatever happens (an import that
      hangs, an exit swallowed elsewhere, a cleanup that hangs): then the process ends
      without the rest of its cleanup, which the next writer does.
    """

    def __init__(self) -> None:
        self.asked = False  # a SIGTERM came: the grace period runs
        self.raised = False  # SystemExit was raised: the cleanup is under way

    def __call__(self, signum: int, frame: Any) -> None:
        if not self.asked:
            self.asked = True
            _after(SIGTERM_GRACE_SECONDS, lambda: _exit_now(128 + signum))
        if self.raised:
            return
        if _importing(frame):
            _after(SIGTERM_RETRY_SECONDS, lambda: os.kill(os.getpid(), signum))
            return
        self.raised = True
        sys.exit(128 + signum)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _after(seconds: float, action: Callable[[], object]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True  # never holds the process open
    timer.start()


def quiet_libraries() -> None:
    """Keep the libraries' deprecation chatter and MLflow's notices off the user's screen."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*noload.*")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is first imported
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # downloads of small files
    # Feast puts its own DeprecationWarning filter in front of ours when it is imported, so
    # filters alone do not hold: drop deprecation notices where they would be shown.
    show = warnings.showwarning
    if getattr(show, "__name__", "") == "show_unless_deprecation":
        return  # already installed in this process (several commands in one, e.g. tests)

    def show_unless_deprecation(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, DeprecationWarning | PendingDeprecationWarning):
            show(message, category, *args, **kwargs)

    warnings.showwarning = show_unless_deprecation


def help_when_bare(ctx: typer.Context) -> None:
    """`clm features` (no subcommand): its help, and success."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


# ------------------------------------------------------------------- progress
def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class RichReporter:
    """The jobs' progress on the terminal: a rule per step, a spinner for work of unknown
    length, a bar for counted work, and each finished part shown as it comes."""

    def step(self, title: str) -> None:
        console.rule(Text(title, style="bold"))

    @contextlib.contextmanager
    def working(self, text: str) -> Iterator[Say]:
        with console.status(Text(text)) as status:
            yield lambda now: status.update(Text(now))

    @contextlib.contextmanager
    def counting(self, text: str, total: int | None = None) -> Iterator[Count]:
        with progress_bar() as bar:
            task = bar.add_task(text, total=total)

            def count(done: int, total: int | None, text: str | None = None) -> None:
                if total == 0:  # nothing to do: shown as done
                    done, total = 1, 1
                bar.update(task, completed=done, total=total, description=text or bar.tasks[0].description)

            yield count

    def finished(self, result: object) -> None:
        from pipelines.cli import (
            render,  # imports the jobs' result types: loaded once a job has run
        )

        render.show(result)

    def warn(self, text: str) -> None:
        say(text, "yellow")
