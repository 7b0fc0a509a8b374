"""Where a job's heavy work runs: in this process (None) or on a Spark session."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from clm.workspace import Workspace
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.spark import SparkSettings, spark_session


@contextlib.contextmanager
def engine_session(workspace: Workspace, settings: SparkSettings | None,
                   reporter: Reporter | None = None) -> Iterator[Any]:
    """None for the local engine; a Spark session (stopped at the end) for Spark settings.
    (The session is typed Any: PySpark is an optional dependency.)"""
    if settings is None:
        yield None
        return
    reporter = reporter or Quiet()
    with contextlib.ExitStack() as stack:
        with reporter.working(f"Starting Spark ({settings.remote or settings.master or 'local[*]'})"):
            spark = stack.enter_context(spark_session(settings, workspace.root / ".spark"))
        yield spark
