"""Which feature snapshots still match the raw data: a snapshot as of t reads only rows before
t, so a new export that adds later rows (or brings the same rows again) leaves it true.

Two fingerprints decide it, kept in WORKSPACE/features/_build.json:
- the definitions': every feature group's SQL and features, the raw tables and their
  columns, and the DuckDB version (its row hash). Any change makes every snapshot stale.
- one per snapshot date: of every raw row the snapshot can read (the customers who signed
  up before it, the events before it), the row count and the sum of the rows' hashes, table
  by table. A row added, removed or changed before t changes t's fingerprint and every
  later one, and nothing earlier.
The raw files' sizes and times (`inputs_fingerprint`) are kept too: while they are the same,
no row is hashed again.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from clm.contracts import CONTRACTS
from clm.domain import TRUTH_TABLES, Table
from clm.files import write_text_atomically
from clm.rawdb import connect_raw, raw_tables
from clm.workspace import Workspace
from features.groups import GROUPS
from features.snapshots import SNAPSHOT_NAME, features_dir, workspace_groups

BUILD_STATE = "_build.json"


def inputs_fingerprint(workspace: Workspace) -> str:
    """Changes when the raw data or any feature definition changes (files' sizes and times:
    cheap, and changes too when a file is written again with the same rows)."""
    h = hashlib.sha256(workspace.manifest_path.read_bytes())
    h.update(repr([(g.name, g.sql, g.features) for g in [*GROUPS, *workspace_groups(workspace)]]).encode())
    for path in sorted(workspace.raw_dir.glob("*.parquet")):
        stat = path.stat()
        h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()


def feature_tables(workspace: Workspace) -> list[Table]:
    """The raw tables feature groups may read: all but the simulator's truth."""
    return sorted(raw_tables(workspace) - set(TRUTH_TABLES))


def definitions_fingerprint(workspace: Workspace) -> str:
    """Changes when a feature group, a raw table's columns or the row hash could change."""
    h = hashlib.sha256(repr([(g.name, g.sql, g.features) for g in workspace_groups(workspace)]).encode())
    for table in feature_tables(workspace):
        h.update(f"{table.value}:{pq.read_schema(workspace.table_path(table)).remove_metadata().to_string()}".encode())
    h.update(f"duckdb {duckdb.__version__}".encode())
    return h.hexdigest()


def _row_time(table: Table) -> str:
    """The time a row becomes known to a snapshot (a customer's signup, an event's time)."""
    return CONTRACTS[table].time_columns[0]


def date_fingerprints(workspace: Workspace, dates: Iterable[pd.Timestamp]) -> dict[str, str]:
    """Each as-of date's fingerprint of the raw rows its snapshot can read (date -> hex).

    One streaming pass per table: a row's bucket is the number of dates at or before its
    time (0: before the first date); the k-th date reads buckets 0..k-1, so its fingerprint
    is the running count and hash sum of those buckets.
    """
    days = sorted({pd.Timestamp(d) for d in dates})
    if not days:
        return {}
    digests = [hashlib.sha256() for _ in days]
    con = connect_raw(workspace)
    try:
        for table in feature_tables(workspace):
            time = f"r.{_row_time(table)}"
            bucket = " + ".join(f"CAST({time} >= TIMESTAMPTZ '{d.isoformat()}' AS INTEGER)" for d in days)
            rows = con.sql(f"SELECT {bucket} AS bucket, count(*) AS n, sum(hash(r)) AS h FROM {table.value} r "
                           f"GROUP BY bucket").fetchall()
            per_bucket = {int(b): (int(n), int(h)) for b, n, h in rows}
            count, total = 0, 0
            for k, digest in enumerate(digests):  # date k+1 reads buckets 0..k
                n, h = per_bucket.get(k, (0, 0))
                count, total = count + n, (total + h) % 2**64
                digest.update(f"{table.value}:{count}:{total};".encode())
    finally:
        con.close()
    return {f"{d:%Y-%m-%d}": digest.hexdigest() for d, digest in zip(days, digests, strict=True)}


@dataclass
class BuildState:
    """What the snapshots in WORKSPACE/features were built from."""

    raw: str = ""  # `inputs_fingerprint` when the dates' fingerprints were made
    definitions: str = ""  # `definitions_fingerprint`
    dates: dict[str, str] = field(default_factory=dict)  # as-of date -> `date_fingerprints`

    @staticmethod
    def path(workspace: Workspace) -> Path:
        return features_dir(workspace) / BUILD_STATE

    @classmethod
    def read(cls, workspace: Workspace) -> BuildState:
        """The state on disk; empty (every snapshot of unknown origin) if missing or damaged."""
        try:
            data = json.loads(cls.path(workspace).read_text())
            return cls(str(data["raw"]), str(data["definitions"]), {str(k): str(v) for k, v in data["dates"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()

    def write(self, workspace: Workspace) -> None:
        write_text_atomically(self.path(workspace), json.dumps(
            {"raw": self.raw, "definitions": self.definitions, "dates": dict(sorted(self.dates.items()))}))


def record_snapshots(workspace: Workspace) -> None:
    """Record the snapshots on disk as made from the raw data as it is now: for a tool that
    writes snapshots itself (a benchmark tiling a base's snapshots to a larger base)."""
    days = {p.name.removesuffix(".parquet") for p in features_dir(workspace).glob(f"*/{SNAPSHOT_NAME}")}
    dates = [pd.Timestamp(day, tz="UTC") for day in sorted(days)]
    BuildState(inputs_fingerprint(workspace), definitions_fingerprint(workspace),
               date_fingerprints(workspace, dates)).write(workspace)
