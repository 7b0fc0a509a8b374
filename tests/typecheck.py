"""The type check (mypy, as pyproject.toml configures it), started in the background as soon
as the session knows it will run it: on a clean clone it takes about a minute, which it
then spends on the second core beside the other tests instead of after them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import child_environment

ROOT = Path(__file__).resolve().parents[1]
TEST_NAME = "test_the_types_check"
RUNNING = pytest.StashKey[subprocess.Popen]()
TIMEOUT_SECONDS = 600


def start() -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "mypy")], cwd=ROOT, env=child_environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_if_selected(session: pytest.Session) -> None:
    """Start the check early when this session will run it: not when it only collects, nor
    in an xdist worker (each would start its own; the test starts it there)."""
    config = session.config
    if config.option.collectonly or hasattr(config, "workerinput"):
        return
    if any(item.name == TEST_NAME for item in session.items):
        config.stash[RUNNING] = start()


def verdict(config: pytest.Config) -> tuple[int, str]:
    """The exit code and output of the background check (started now if it was not)."""
    running = config.stash.get(RUNNING, None) or start()
    out, err = running.communicate(timeout=TIMEOUT_SECONDS)
    return running.returncode, out + err


def stop_if_left(config: pytest.Config) -> None:
    """A check nobody collected (the session stopped early: -x, Ctrl-C) is stopped with it."""
    running = config.stash.get(RUNNING, None)
    if running is not None and running.poll() is None:
        running.terminate()
        running.communicate()
