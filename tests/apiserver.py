"""A real `clm serve` on a free loopback port, for tests that call the API as a client does."""
from __future__ import annotations

import sys
from collections.abc import Iterator
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
