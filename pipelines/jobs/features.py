"""The feature jobs: snapshots built, definitions registered in Feast, the online store loaded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from clm.workspace import Workspace
from features.build import BuildResult, build_features
from features.repo import OnlineStoreSettings
from features.store import apply, materialize
from pipelines.jobs.reporting import Quiet, Reporter


def build(workspace: Workspace, dates: list[pd.Timestamp] | None = None, frequency: str = "monthly",
          spark: Any = None, reporter: Reporter | None = None) -> BuildResult:
    """The snapshots not built yet: every `frequency` date in the data, or the dates given
    (on a Spark session when one is given)."""
    reporter = reporter or Quiet()
    where = " on Spark" if spark is not None else ""
    with reporter.counting(f"Building feature snapshots{where}") as count:
        result = build_features(workspace, dates, frequency, lambda done, total: count(done, total), spark=spark)
        done = len(result.built_dates) + result.skipped_dates
        count(done, done)
    return result


@dataclass
class Registered:
    views: list[str]
    services: list[str]


def register(workspace: Workspace, online: OnlineStoreSettings | None = None,
             reporter: Reporter | None = None) -> Registered:
    """Entities, feature views and per-model feature services registered in Feast (online:
    the online store to configure; None keeps the one configured)."""
    reporter = reporter or Quiet()
    with reporter.working("Registering feature views in Feast"):
        store = apply(workspace, online)
    return Registered([v.name for v in store.list_feature_views()], [s.name for s in store.list_feature_services()])


@dataclass
class Materialized:
    as_of: pd.Timestamp


def load_online_store(workspace: Workspace, as_of: pd.Timestamp, reporter: Reporter | None = None) -> Materialized:
    """The latest snapshot at or before as_of loaded into the online store."""
    reporter = reporter or Quiet()
    with reporter.working(f"Materialising features as of {as_of:%Y-%m-%d} into the online store"):
        materialize(workspace, as_of)
    return Materialized(as_of)
