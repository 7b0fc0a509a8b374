"""Build feature snapshots: WORKSPACE/features/<group>/<as-of date>.parquet.

Each file holds one group's features for every customer who signed up before the as-of
instant (00:00 UTC of that date), keyed by customer_id with event_timestamp = as_of: the
layout Feast reads as a FileSource. DuckDB writes one file; the Spark engine
(`features.spark`) writes a folder of that name holding part files, sorted by customer_id
across them in name order (`features.snapshots` reads either). Builds are incremental: only
dates without a file are computed, and which snapshots are still true to the raw data is
`features.freshness`'s: after a new export, the dates whose earlier rows changed are made
again (the others kept); after a feature definition changes, every one. Each file is
written to a temporary name and renamed, so an interrupted build leaves no half-written
snapshot.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clm.contracts import require_valid
from clm.dates import parse_day
from clm.errors import ClmError
from clm.layout import remove_clm_files
from clm.rawdb import connect_raw
from clm.workspace import RawManifest, Workspace
from features.freshness import BuildState, date_fingerprints, definitions_fingerprint, inputs_fingerprint
from features.groups import FeatureGroup, arrow_schema
from features.snapshots import (
    SNAPSHOT_NAME,
    damaged_snapshots,
    features_dir,
    group_dir,
    snapshot_path,
    workspace_groups,
)
from features.spark import build_on_spark

FREQUENCIES = ("monthly", "weekly")
DATES_PER_QUERY = 6


def snapshot_dates(manifest: RawManifest, frequency: str = "monthly") -> list[pd.Timestamp]:
    """As-of instants inside the data: month starts (or Mondays) after its start, up to its end."""
    if frequency not in FREQUENCIES:
        raise ClmError(f"Snapshot frequency '{frequency}' is not one of: {', '.join(FREQUENCIES)}.")
    start, end = manifest.start, manifest.end
    freq = "MS" if frequency == "monthly" else "W-MON"
    dates = pd.date_range(start + pd.Timedelta(days=1), end, freq=freq, tz="UTC")
    return [d for d in dates if start < d <= end]


def parse_as_of(text: str, manifest: RawManifest) -> pd.Timestamp:
    """--as-of as a day (`clm.dates.parse_day`) inside the workspace's data."""
    as_of = parse_day(text, "--as-of")
    if not manifest.start < as_of <= manifest.end:
        first = manifest.start.normalize() + pd.Timedelta(days=1)
        raise ClmError(
            f"--as-of {as_of:%Y-%m-%d} is outside the data: choose a date from {first:%Y-%m-%d} to "
            f"{manifest.data_end[:10]} (features need data before the as-of date, and none exists after the end)."
        )
    return as_of


def as_of_or_end(text: str | None, manifest: RawManifest) -> pd.Timestamp:
    """--as-of (`parse_as_of`), or the data's end when it is not given."""
    return manifest.end if text is None else parse_as_of(text, manifest)


def compute_group(con: duckdb.DuckDBPyConnection, group: FeatureGroup, dates: Iterable[pd.Timestamp]) -> pa.Table:
    """One group's features for the given as-of instants, as an Arrow table."""
    snapshots = pd.DataFrame({"as_of": pd.DatetimeIndex(list(dates)).astype("datetime64[us, UTC]")})
    con.register("snapshots", snapshots)
    try:
        table = con.sql(group.sql).to_arrow_table()
    finally:
        con.unregister("snapshots")
    return table.cast(arrow_schema(group, table.schema.field("event_timestamp").type))


def _write_snapshot(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


@dataclass
class BuildResult:
    groups: list[str]
    built_dates: list[pd.Timestamp]
    skipped_dates: int
    rows: int
    repaired: int = 0  # damaged snapshots found and made again
    stale: int = 0  # snapshot dates made again: raw rows before them changed


def build_features(
    workspace: Workspace,
    dates: list[pd.Timestamp] | None = None,
    frequency: str = "monthly",
    progress: Callable[[int, int], None] | None = None,
    raw_checked: bool = False,
    spark: Any = None,  # a pyspark SparkSession, classic or Spark Connect (PySpark is optional)
) -> BuildResult:
    """Build the snapshots that are missing; returns what was built.

    dates: as-of instants to build (default: every snapshot of `frequency` in the data);
    raw_checked: the caller has already validated the raw data in this command;
    spark: a Spark session to run the SQL on (`features.spark`), else DuckDB in-process.
    """
    manifest = workspace.read_manifest() if raw_checked else require_valid(workspace)
    dates = sorted(dates if dates is not None else snapshot_dates(manifest, frequency))
    groups = workspace_groups(workspace)
    stale = _remove_stale(workspace, groups, dates)
    damaged = damaged_snapshots(workspace)
    for path in damaged:  # e.g. truncated by a full disk: made again (Feast's source reads every file)
        _remove(path)
    asked = set(dates)
    dates = sorted({*dates, *stale, *(_date_of(p) for p in damaged)})
    todo = [d for d in dates if any(not snapshot_path(workspace, g, d).exists() for g in groups)]
    batches = [todo[i : i + DATES_PER_QUERY] for i in range(0, len(todo), DATES_PER_QUERY)]
    steps, done = len(batches) * len(groups), 0
    if spark is not None:
        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, steps)

        rows = build_on_spark(spark, workspace, groups, batches, lambda g: group_dir(workspace, g), step)
        return BuildResult([g.name for g in groups], todo, len(asked - set(todo)), rows, len(damaged), len(stale))
    con = connect_raw(workspace)
    rows = 0
    for batch in batches:
        for group in groups:
            table = compute_group(con, group, batch)
            for as_of in batch:
                mask = pc.equal(table["event_timestamp"], pa.scalar(as_of.to_pydatetime(), table["event_timestamp"].type))
                part = table.filter(mask).sort_by("customer_id")
                _write_snapshot(part, snapshot_path(workspace, group, as_of))
                rows += part.num_rows
            done += 1
            if progress is not None:
                progress(done, steps)
    con.close()
    return BuildResult([g.name for g in groups], todo, len(asked - set(todo)), rows, len(damaged), len(stale))


def _date_of(snapshot: Path) -> pd.Timestamp:
    return pd.Timestamp(snapshot.name.removesuffix(".parquet"), tz="UTC")


def _remove(snapshot: Path) -> None:
    shutil.rmtree(snapshot) if snapshot.is_dir() else snapshot.unlink(missing_ok=True)


def _remove_stale(workspace: Workspace, groups: list[FeatureGroup], asked: list[pd.Timestamp]) -> list[pd.Timestamp]:
    """Remove the snapshots the raw data no longer gives (`features.freshness`) and record
    what the rest, and the `asked` ones about to be built, are made from; returns the dates
    removed.

    A feature definition changed (or the state is unknown): every snapshot. Otherwise the
    dates whose fingerprint changed. The state is written after the removal, so a kill in
    between leaves snapshots that the next build checks again.
    """
    state = BuildState.read(workspace)
    definitions = definitions_fingerprint(workspace)
    if features_dir(workspace).exists() and state.definitions != definitions:
        remove_clm_files(workspace.root, "features")
        state = BuildState()
    features_dir(workspace).mkdir(parents=True, exist_ok=True)
    built = sorted({_date_of(p) for p in features_dir(workspace).glob(f"*/{SNAPSHOT_NAME}")})
    raw = inputs_fingerprint(workspace)
    known = state.dates if state.raw == raw else {}  # the raw files not written since: no row hashed again
    needed = [f"{d:%Y-%m-%d}" for d in sorted({*built, *asked})]
    now = {day: known[day] for day in needed if day in known}
    now.update(date_fingerprints(workspace, [pd.Timestamp(day, tz="UTC") for day in needed if day not in now]))
    stale = [d for d in built if state.dates.get(f"{d:%Y-%m-%d}") != now[f"{d:%Y-%m-%d}"]]
    for date in stale:
        for group in groups:
            _remove(snapshot_path(workspace, group, date))
    BuildState(raw, definitions, now).write(workspace)
    return stale
