"""A real `clm serve` on a free loopback port, for tests that call the API as a client does."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from tests.clirun import child_environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} was not ready within {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield
    finally:
        stop(proc)


@contextmanager
def running_api(workspace: Path, *args: str, env: dict[str, str] | None = None,
                timeout_s: float = 180.0) -> Iterator[str]:
    """Start `clm serve` on the workspace; yield its base URL once /readyz says ready."""
    port = free_port()
    clm = Path(sys.executable).parent / "clm"
    url = f"http://127.0.0.1:{port}"
    with running_server([str(clm), "serve", "--port", str(port), "-w", str(workspace), *args], f"{url}/readyz",
                        workspace.parent / f"serve-{port}.log", {**child_environment(), **(env or {})},
                        timeout_s=timeout_s):
        yield url


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server (`clm serve` became it): it stops its workers, which run in
    sessions of their own; any still there after that are killed."""
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True)] if proc.poll() is None else []
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
