"""Running `clm` in-process for tests, and fingerprints of a workspace's files."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

from clm.workspace import LOCK_NAME
from pipelines.cli import app

runner = CliRunner()


class Outcome:
    """A CLI run: exit code, and its output with panel borders and line wrapping removed."""

    def __init__(self, exit_code: int, text: str):
        self.exit_code = exit_code
        self.output = " ".join(text.translate(str.maketrans("", "", "│╭╮╰╯─")).split())

    def mentions(self, text: str) -> bool:
        """Whether the output says `text`, even where the panel wrapped it mid-word (long paths)."""
        return "".join(text.split()) in "".join(self.output.split())


def invoke(*args: str, env: dict[str, str] | None = None) -> Outcome:
    """`clm ARGS` in this process (fast; pytest records library warnings, so they cannot show)."""
    result = runner.invoke(app, list(args), env=env)
    return Outcome(result.exit_code, result.output)


def run_clm(*args: str) -> Outcome:
    """`clm ARGS` as a user runs it: the installed console script in a fresh process, where
    any warning a library prints would reach the output."""
    clm = Path(sys.executable).parent / "clm"
    done = subprocess.run([str(clm), *args], capture_output=True, text=True, env=child_environment())
    return Outcome(done.returncode, done.stdout + done.stderr)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (relative path) and the SHA-256 of its bytes: equal digests
    mean nothing was added, removed or changed. The workspace lock file is left out: every
    writing command takes the lock, even one that then refuses to write."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_NAME
    }


CLONE = Path(__file__).resolve().parents[1]
PLAIN_PATH = "/usr/bin:/bin"  # a fresh machine's: no virtual environment activated


def run_from_clone(*args: str) -> Outcome:
    """`clm ARGS` as the README's first command runs it: `.venv/bin/clm` (relative) from
    the clone's root, with a plain PATH, in a process of its own; what it prints is what a
    user sees (the commands it prints name clm as it was called)."""
    clm = os.path.relpath(Path(sys.executable).parent / "clm", CLONE)
    done = subprocess.run([clm, *args], cwd=CLONE, capture_output=True, text=True, env=plain_environment())
    return Outcome(done.returncode, done.stdout + done.stderr)


def plain_environment() -> dict[str, str]:
    """A child's environment as on a fresh machine: `child_environment` with PLAIN_PATH."""
    return {**child_environment(), "PATH": PLAIN_PATH}


def child_environment() -> dict[str, str]:
    """This process's environment for a child, less MLFLOW_TRACKING_URI: in-process tests'
    mlflow.set_tracking_uri() exports it, and a child would write to that store."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


HOLD_THE_LOCK = textwrap.dedent("""
    import sys, time
    from clm.workspace import Workspace
    with Workspace.at(sys.argv[1]).exclusive(sys.argv[2]):
        print("holding", flush=True)
        time.sleep(120)
""")


@contextmanager
def lock_held(ws: Path, command: str) -> Iterator[subprocess.Popen]:  # type: ignore[type-arg]
    """Another process holding the workspace's lock as `command` does; killed at the end
    (SIGKILL: the lock goes with the process)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(ws), command], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def write_sales(path: Path, rows: str = "c1,2024-05-01,10\nc2,2024-05-03,4.5\nc1,2024-06-02,7\n") -> Path:
    """A small transactions export (customer, date, total)."""
    path.write_text("customer,date,total\n" + rows)
    return path


def ingest_args(export: Path, ws: Path, *extra: str) -> list[str]:
    """`clm ingest transactions` of a `write_sales` export into ws."""
    return ["ingest", "transactions", str(export), "--customer-col", "customer", "--date-col", "date",
            "--amount-col", "total", "-w", str(ws), *extra]
