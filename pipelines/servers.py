"""A server run as a child process until a block ends (`clm serve`, `feast serve`, an
MLflow tracking server): started, waited for until its ready URL answers, stopped with
its workers. Used by the tests and the benchmarks alike, so that both measure and check
the same start and stop."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a loopback URL of ours
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running_server(command: list[str], ready_url: str, log: Path, env: dict[str, str],
                   cwd: Path | None = None, timeout_s: float = 180.0) -> Iterator[None]:
    """Run a server command (output to log) until the block ends; enter the block once
    ready_url answers 200."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not answers(ready_url):
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} was not ready within {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server (`clm serve` became it): it stops its workers, which run in
    sessions of their own; any still there after that are killed."""
    workers = list(psutil.Process(proc.pid).children(recursive=True)) if proc.poll() is None else []
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for worker in workers:
        try:
            worker.wait(timeout=10)
        except psutil.TimeoutExpired:
            worker.kill()
        except psutil.NoSuchProcess:
            pass
