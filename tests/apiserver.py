"""A real `clm serve` on a free loopback port, for tests that call the API as a client does."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.servers import free_port, running_server
from tests.clirun import child_environment


@contextmanager
def running_api(workspace: Path, *args: str, env: dict[str, str] | None = None,
                timeout_s: float = 180.0) -> Iterator[str]:
    """Start `clm serve` on the workspace; yield its base URL once /readyz says ready. It
    stops at once on SIGTERM unless args give --drain-seconds (a drain would only slow the
    tests down)."""
    port = free_port()
    if "--drain-seconds" not in args:
        args = (*args, "--drain-seconds", "0")
    clm = Path(sys.executable).parent / "clm"
    url = f"http://127.0.0.1:{port}"
    with running_server([str(clm), "serve", "--port", str(port), "-w", str(workspace), *args], f"{url}/readyz",
                        workspace.parent / f"serve-{port}.log", {**child_environment(), **(env or {})},
                        timeout_s=timeout_s):
        yield url


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Whether `condition()` holds within timeout_s (polled every 0.1 s): a server's log, its
    readiness, which change a moment after the call that changes them."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
