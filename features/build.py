"""Build feature snapshots: WORKSPACE/features/<group>/<as-of date>.parquet.

Each file holds one group's features for every customer who signed up before the as-of
instant (00:00 UTC of that date), keyed by customer_id with event_timestamp = as_of: the
layout Feast reads as a FileSource. DuckDB writes one file; the Spark engine
(`features.spark`) writes a folder of that name holding part files, sorted by customer_id
across them in name order (`snapshot_parts` reads either). Builds are incremental: only dates without a file are
computed. If the raw data or a feature definition changes, every snapshot is rebuilt. Each file is written to a
temporary name and renamed, so an interrupted build leaves no half-written snapshot.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clm.contracts import require_valid
from clm.dates import parse_day
from clm.errors import ClmError
from clm.files import write_text_atomically
from clm.layout import remove_clm_files
from clm.rawdb import connect_raw, raw_tables
from clm.workspace import RawManifest, Workspace
from features.groups import FLOAT, GROUPS, FeatureGroup, available_groups

FREQUENCIES = ("monthly", "weekly")
DATES_PER_QUERY = 6
BUILD_STATE = "_build.json"
# Every snapshot file of a group, whether a date's snapshot is one file (DuckDB) or a folder
# of part files (Spark): what the Feast source of the group reads.
SNAPSHOT_GLOB = "**/*.parquet"
SNAPSHOT_NAME = "????-??-??.parquet"  # a date's snapshot in a group's folder (a file, or Spark's folder)


def features_dir(workspace: Workspace) -> Path:
    return workspace.root / "features"


def group_dir(workspace: Workspace, group: FeatureGroup | str) -> Path:
    name = group if isinstance(group, str) else group.name
    return features_dir(workspace) / name


def snapshot_path(workspace: Workspace, group: FeatureGroup | str, as_of: pd.Timestamp) -> Path:
    return group_dir(workspace, group) / f"{as_of:%Y-%m-%d}.parquet"


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


def inputs_fingerprint(workspace: Workspace) -> str:
    """Changes when the raw data or any feature definition changes."""
    h = hashlib.sha256(workspace.manifest_path.read_bytes())
    h.update(repr([(g.name, g.sql, g.features) for g in GROUPS]).encode())
    for path in sorted(workspace.raw_dir.glob("*.parquet")):
        stat = path.stat()
        h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()


def compute_group(con: duckdb.DuckDBPyConnection, group: FeatureGroup, dates: Iterable[pd.Timestamp]) -> pa.Table:
    """One group's features for the given as-of instants, as an Arrow table."""
    snapshots = pd.DataFrame({"as_of": pd.DatetimeIndex(list(dates)).astype("datetime64[us, UTC]")})
    con.register("snapshots", snapshots)
    try:
        table = con.sql(group.sql).to_arrow_table()
    finally:
        con.unregister("snapshots")
    return table.cast(arrow_schema(group, table.schema.field("event_timestamp").type))


def arrow_schema(group: FeatureGroup, timestamp_type: pa.DataType) -> pa.Schema:
    """The declared types: what Feast's views say, whatever SQL arithmetic produced."""
    return pa.schema(
        [pa.field("customer_id", pa.string()), pa.field("event_timestamp", timestamp_type)]
        + [pa.field(f.name, pa.float64() if f.kind == FLOAT else pa.string()) for f in group.features]
    )


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


def build_features(
    workspace: Workspace,
    dates: list[pd.Timestamp] | None = None,
    frequency: str = "monthly",
    progress: Callable[[int, int], None] | None = None,
    raw_checked: bool = False,
    spark=None,  # type: ignore[no-untyped-def]
) -> BuildResult:
    """Build the snapshots that are missing; returns what was built.

    dates: as-of instants to build (default: every snapshot of `frequency` in the data);
    raw_checked: the caller has already validated the raw data in this command;
    spark: a Spark session to run the SQL on (`features.spark`), else DuckDB in-process.
    """
    manifest = workspace.read_manifest() if raw_checked else require_valid(workspace)
    dates = sorted(dates if dates is not None else snapshot_dates(manifest, frequency))
    state_path = features_dir(workspace) / BUILD_STATE
    fingerprint = inputs_fingerprint(workspace)
    if features_dir(workspace).exists() and _built_from(state_path) != fingerprint:
        remove_clm_files(workspace.root, "features")  # raw data changed (or unknown): every snapshot is stale
    features_dir(workspace).mkdir(parents=True, exist_ok=True)
    write_text_atomically(state_path, json.dumps({"raw": fingerprint}))

    groups = available_groups(raw_tables(workspace))
    damaged = damaged_snapshots(workspace)
    for path in damaged:  # e.g. truncated by a full disk: made again (Feast's source reads every file)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    dates = sorted({*dates, *(pd.Timestamp(p.name.removesuffix(".parquet"), tz="UTC") for p in damaged)})
    todo = [d for d in dates if any(not snapshot_path(workspace, g, d).exists() for g in groups)]
    batches = [todo[i : i + DATES_PER_QUERY] for i in range(0, len(todo), DATES_PER_QUERY)]
    steps, done = len(batches) * len(groups), 0
    if spark is not None:
        from features.spark import build_on_spark

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, steps)

        rows = build_on_spark(spark, workspace, groups, batches, lambda g: group_dir(workspace, g), step)
        return BuildResult([g.name for g in groups], todo, len(dates) - len(todo), rows, len(damaged))
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
    return BuildResult([g.name for g in groups], todo, len(dates) - len(todo), rows, len(damaged))


def _built_from(state_path: Path) -> str | None:
    """The raw data's fingerprint the snapshots were built from (None if unknown: missing or damaged)."""
    try:
        return str(json.loads(state_path.read_text()).get("raw"))
    except (OSError, ValueError, AttributeError):
        return None


def readable(path: Path) -> bool:
    """Whether a snapshot's Parquet files can be read (their footers are whole)."""
    try:
        parts = snapshot_parts(path)
        for part in parts:
            pq.read_metadata(part)
    except (OSError, pa.ArrowException):
        return False
    return bool(parts)


def damaged_snapshots(workspace: Workspace) -> list[Path]:
    """Every snapshot in the workspace that cannot be read (a truncated file)."""
    return [p for p in sorted(features_dir(workspace).glob(f"*/{SNAPSHOT_NAME}")) if not readable(p)]


def check_snapshots(workspace: Workspace) -> None:
    """Before reading snapshots without building them first: a damaged one is said, with
    how to make it again (`clm features build` does)."""
    damaged = damaged_snapshots(workspace)
    if damaged:
        raise ClmError(f"Feature snapshot(s) {', '.join(str(p) for p in damaged)} are damaged (truncated?): run "
                       f"`clm features build --workspace {workspace.root}` to make them again.")


def snapshot_parts(path: Path) -> list[Path]:
    """A snapshot's Parquet files: the file itself (built by DuckDB), or the part files of a
    folder of that name (built by Spark), in name order; either way rows come sorted by
    customer_id when read in this order."""
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


def snapshot_rows(path: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in snapshot_parts(path))


def snapshot_batches(path: Path, batch_size: int, columns: list[str] | None = None) -> Iterable[pa.RecordBatch]:
    """A snapshot's rows (of `columns`, default all) in order, in record batches."""
    for part in snapshot_parts(path):
        yield from pq.ParquetFile(part).iter_batches(batch_size=batch_size, columns=columns)


def snapshot_columns(path: Path) -> list[str]:
    return pq.ParquetFile(snapshot_parts(path)[0]).schema_arrow.names


def read_snapshot(workspace: Workspace, group: str, as_of: pd.Timestamp) -> pd.DataFrame:
    parts = snapshot_parts(snapshot_path(workspace, group, as_of))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if len(parts) > 1 else pd.read_parquet(parts[0])


def snapshot_files(workspace: Workspace, as_of: pd.Timestamp) -> list[Path]:
    """Each group's snapshot file at as_of (built first by `build_features`)."""
    groups = available_groups(raw_tables(workspace))
    missing = [g.name for g in groups if not snapshot_path(workspace, g, as_of).exists()]
    if missing:
        raise ClmError(f"No {', '.join(missing)} snapshot at {as_of:%Y-%m-%d} in {workspace.root}: "
                       f"run `clm features build --as-of {as_of:%Y-%m-%d}` first.")
    return [snapshot_path(workspace, g, as_of) for g in groups]


def _exact_chunks(path: Path, rows: int, columns: list[str] | None = None) -> Iterable[pa.Table]:
    """The snapshot's rows (of `columns`, default all), exactly `rows` at a time (the last
    chunk the rest), whatever its files and row groups: snapshots of equal length then yield
    chunks that line up."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in snapshot_batches(path, rows, columns):
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def snapshot_chunks(workspace: Workspace, as_of: pd.Timestamp, rows: int,
                    columns: Iterable[str] | None = None) -> Iterable[pd.DataFrame]:
    """Every group's features at as_of, `rows` customers at a time: the point-in-time
    features of every customer known then (each file holds the same customers, sorted by
    id, so the groups' chunks line up; a test holds this equal to Feast's retrieval).
    columns: only these features (and the keys), read from only the files that hold them."""
    files = snapshot_files(workspace, as_of)
    if len({snapshot_rows(f) for f in files}) > 1:
        raise ClmError(f"The feature snapshots at {as_of:%Y-%m-%d} hold different numbers of customers (was a build "
                       "interrupted?): run `clm features build` again.")
    wanted = None if columns is None else set(columns)
    keys = ["customer_id", "event_timestamp"]
    names = [snapshot_columns(f) for f in files]
    selected = [(f, None if wanted is None else keys + [c for c in held if c in wanted])
                for i, (f, held) in enumerate(zip(files, names))
                if wanted is None or i == 0 or wanted & set(held)]
    for tables in zip(*(_exact_chunks(f, rows, cols) for f, cols in selected)):
        ids = tables[0].column("customer_id")
        if any(not t.column("customer_id").equals(ids) for t in tables[1:]):
            raise ClmError(f"The feature snapshots at {as_of:%Y-%m-%d} do not hold the same customers in the same "
                           "order (built by another clm version?): run `clm features build` again.")
        features = [tables[0], *(t.drop_columns(["customer_id", "event_timestamp"]) for t in tables[1:])]
        columns = {name: col for t in features for name, col in zip(t.column_names, t.columns)}
        yield pa.table(columns).to_pandas()
