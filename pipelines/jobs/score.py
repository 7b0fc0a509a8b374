"""The score job: the nightly batch, scores and decisions for the whole base at a date, on
this machine (`pipelines.score`) or on Spark (`pipelines.score_spark`), the same rows."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clm.workspace import Workspace
from decisions.catalogue import Catalogue
from decisions.log import DEFAULT_EXPLORATION
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.score import CHUNK_ROWS, ScoreResult, score
from pipelines.score_spark import score_on_spark


@dataclass(frozen=True)
class ScoreSettings:
    as_of: pd.Timestamp
    out: Path  # the Parquet dataset (a folder) to write
    catalogue: Catalogue | None = None  # None: the one shipped
    budget: float | None = None  # None: `decisions.budget`'s default
    exploration: float = DEFAULT_EXPLORATION
    chunk_rows: int = CHUNK_ROWS  # local engine: customers scored at a time
    partitions: int | None = None  # Spark: partitions the base is cut into (None: Spark's)
    keep_current: bool = False  # an output of the same inputs is left as it is
    tracking_uri: str | None = None


def score_base(workspace: Workspace, settings: ScoreSettings, spark: Any = None,
               reporter: Reporter | None = None) -> ScoreResult:
    """Score and decide for every customer known at settings.as_of (on `spark` when given:
    a Spark session, see `pipelines.jobs.engine`)."""
    reporter = reporter or Quiet()
    s = settings
    if spark is not None:
        with reporter.working(f"Scoring and deciding on Spark as of {s.as_of:%Y-%m-%d}"):
            return score_on_spark(spark, workspace, s.as_of, s.out, s.tracking_uri, s.catalogue, s.budget,
                                  s.exploration, s.partitions, s.keep_current)
    with reporter.counting(f"Scoring customers as of {s.as_of:%Y-%m-%d}") as count:
        return score(workspace, s.as_of, s.out, s.tracking_uri, s.catalogue, s.budget, s.exploration, s.chunk_rows,
                     lambda step, done, total: count(done, total, f"{step} (chunks of {s.chunk_rows:,})"),
                     s.keep_current)
