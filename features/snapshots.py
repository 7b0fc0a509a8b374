"""Feature snapshots as they lie in a workspace, and how to read them: one file (DuckDB) or
one folder of part files (Spark) per feature group and date, at
WORKSPACE/features/<group>/<YYYY-MM-DD>.parquet, each holding every customer known at that
date, sorted by customer_id. Written by `features.build` (and `features.spark`); read by
Feast's source, the batch, the monitor and the report."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clm.contracts import CONTRACTS
from clm.domain import Table
from clm.errors import ClmError
from clm.rawdb import raw_tables
from clm.workspace import Workspace
from features.groups import FLOAT, STRING, FeatureGroup, available_groups

# Every snapshot file of a group, whether a date's snapshot is one file (DuckDB) or a folder
# of part files (Spark): what the Feast source of the group reads.
SNAPSHOT_GLOB = "**/*.parquet"
SNAPSHOT_NAME = "????-??-??.parquet"  # a date's snapshot in a group's folder (a file, or Spark's folder)


def business_attributes(workspace: Workspace, table: Table = Table.CUSTOMERS) -> dict[str, str]:
    """A table's columns beyond its contract's (the business's own attributes, `clm ingest
    customers --attributes`: static; `attribute_history`: changing), name -> FLOAT (numbers)
    or STRING."""
    path = workspace.table_path(table)
    if not path.exists():
        return {}
    contract = set(CONTRACTS[table].schema.columns)
    return {f.name: FLOAT if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) else STRING
            for f in pq.read_schema(path) if f.name not in contract}


def workspace_groups(workspace: Workspace) -> list[FeatureGroup]:
    """The feature groups this workspace's raw tables (and attributes) give."""
    return available_groups(raw_tables(workspace), business_attributes(workspace),
                            business_attributes(workspace, Table.ATTRIBUTE_HISTORY))


def features_dir(workspace: Workspace) -> Path:
    return workspace.root / "features"


def group_dir(workspace: Workspace, group: FeatureGroup | str) -> Path:
    name = group if isinstance(group, str) else group.name
    return features_dir(workspace) / name


def snapshot_path(workspace: Workspace, group: FeatureGroup | str, as_of: pd.Timestamp) -> Path:
    return group_dir(workspace, group) / f"{as_of:%Y-%m-%d}.parquet"


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


def snapshot_batches(path: Path, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
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
    groups = workspace_groups(workspace)
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
