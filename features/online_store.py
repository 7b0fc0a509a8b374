"""Fast online stores for Feast: one record per customer, one compact payload per view.

Feast's own SQLite and Redis stores keep one row (or hash field) per entity and feature,
each a serialized protobuf written by its own statement: about 2,600-6,000 customers/s
and over 2 GB for 100,000 customers x 30 features (../shared/STACK-NOTES.md). These stores
plug into Feast's extension point (`online_store: type: features.online_store.<Class>`),
so reads still go through `FeatureStore.get_online_features` unchanged, but keep:

- SQLite: one table per project, one row per customer, a BLOB column and a timestamp
  column per feature view;
- Redis: customers spread over a fixed number of hashes, one field per customer and view.

A payload packs a view's float features as little-endian float64 (NaN = null) followed by
its string features joined by a unit separator (a lone NUL = null), in the order of the
view's schema, which is recorded with the data. `bulk_load` writes whole snapshots in
chunks (bounded memory): into a fresh SQLite table swapped in by rename, or through
Redis pipelines with one HSET per hash and chunk.

Over 500 lines on purpose: the two stores share the payload codec, the schema record and
Feast's interface, and each is one class; split, the codec would be read away from both.
"""
from __future__ import annotations

import itertools
import json
import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import redis
from feast import Entity, FeatureView, utils
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.types import String

from clm.files import checkpoint_fully

STRING_SEP = "\x1f"
NULL_STRING = "\x00"
TS = struct.Struct("<q")
VIEWS_TABLE = "clm_online_views"


# ------------------------------------------------------------------ payloads
@dataclass(frozen=True)
class ViewLayout:
    """Column order of one view's payload: float features first, then string features."""

    floats: tuple[str, ...]
    strings: tuple[str, ...]

    @classmethod
    def of(cls, view: FeatureView) -> "ViewLayout":
        floats = tuple(f.name for f in view.features if f.dtype != String)
        strings = tuple(f.name for f in view.features if f.dtype == String)
        return cls(floats, strings)

    def to_json(self) -> str:
        return json.dumps({"floats": self.floats, "strings": self.strings})

    @classmethod
    def from_json(cls, text: str) -> "ViewLayout":
        d = json.loads(text)
        return cls(tuple(d["floats"]), tuple(d["strings"]))

    # -- encoding a batch of rows (Arrow columns) -------------------------------------
    def encode_batch(self, batch: pa.RecordBatch | pa.Table) -> list[bytes]:
        n = batch.num_rows
        if self.floats:
            matrix = np.empty((n, len(self.floats)), dtype="<f8")
            for j, name in enumerate(self.floats):
                matrix[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
            # One fixed-width void item per row: .tolist() gives each row's bytes exactly.
            floats = matrix.view(f"V{8 * len(self.floats)}").ravel().tolist()
        else:
            floats = [b""] * n
        if not self.strings:
            return floats
        cols = [[NULL_STRING if v is None else v for v in batch.column(name).to_pylist()] for name in self.strings]
        texts = [STRING_SEP.join(parts).encode() for parts in zip(*cols)]
        return [f + s for f, s in zip(floats, texts)]

    def encode_values(self, values: dict[str, ValueProto]) -> bytes:
        """One row from Feast's write path (protobuf values)."""
        floats = [_proto_float(values.get(name)) for name in self.floats]
        strings = [_proto_string(values.get(name)) for name in self.strings]
        return struct.pack(f"<{len(floats)}d", *floats) + STRING_SEP.join(strings).encode()

    def decode(self, payload: bytes, requested: set[str] | None) -> dict[str, ValueProto]:
        k = len(self.floats)
        out: dict[str, ValueProto] = {}
        for name, value in zip(self.floats, struct.unpack_from(f"<{k}d", payload)):
            if requested is None or name in requested:
                out[name] = ValueProto() if value != value else ValueProto(double_val=value)
        if self.strings:
            for name, text in zip(self.strings, payload[8 * k :].decode().split(STRING_SEP)):
                if requested is None or name in requested:
                    out[name] = ValueProto() if text == NULL_STRING else ValueProto(string_val=text)
        return out


def _proto_float(v: ValueProto | None) -> float:
    if v is None:
        return float("nan")
    kind = v.WhichOneof("val")
    return float(getattr(v, kind)) if kind and kind != "null_val" else float("nan")


def _proto_string(v: ValueProto | None) -> str:
    if v is None:
        return NULL_STRING
    kind = v.WhichOneof("val")
    if kind is None or kind == "null_val":
        return NULL_STRING
    return str(getattr(v, kind))


def entity_id(key: EntityKeyProto) -> str:
    """The customer id of a Feast entity key (single join key)."""
    value = key.entity_values[0]
    return str(getattr(value, value.WhichOneof("val")))


def _to_micros(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return int(ts.timestamp() * 1_000_000)


def _from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)


@dataclass
class ViewSnapshot:
    """One view's rows for bulk loading: Arrow batches sorted by customer_id."""

    view: FeatureView
    batches: Iterator[pa.RecordBatch]



# ------------------------------------------------------------------ batched reads
class _OneTripReads(OnlineStore):
    """All views a request needs, read in one query (SQLite) or one pipeline (Redis).

    Feast's generic path calls online_read once per view; `_read_features_per_fv` is the
    extension point Feast documents for batching (its own Redis store overrides it too).
    """

    def _layout(self, config: RepoConfig, view_name: str) -> ViewLayout | None:
        raise NotImplementedError

    def _fetch(self, config: RepoConfig, view_names: list[str], ids: list[str]) -> dict[str, list[tuple[int, bytes] | None]]:
        """(event time in us, payload) per view and customer id, None where absent."""
        raise NotImplementedError

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        ids = [entity_id(k) for k in entity_keys]
        return self._decode(config, table.name, self._fetch(config, [table.name], ids)[table.name], requested_features)

    def _decode(self, config: RepoConfig, view_name: str, hits: list[tuple[int, bytes] | None],
                requested: list[str] | None) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        layout = self._layout(config, view_name)
        wanted = set(requested) if requested else None
        return [
            (None, None) if hit is None or layout is None else (_from_micros(hit[0]), layout.decode(hit[1], wanted))
            for hit in hits
        ]

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: list,
        join_key_values: dict,
        entity_name_to_join_key_map: dict,
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        work = []
        all_ids: dict[str, None] = {}
        for table, requested in grouped_refs:
            values, idxs, output_len = utils._get_unique_entities(table, join_key_values, entity_name_to_join_key_map)
            ids = [entity_id(k) for k in utils._get_entity_key_protos(values)]
            all_ids.update(dict.fromkeys(ids))
            work.append((table, requested, ids, idxs, output_len))
        fetched = self._fetch(config, [t.name for t, *_ in work], list(all_ids))
        position = {cid: i for i, cid in enumerate(all_ids)}
        for table, requested, ids, idxs, output_len in work:
            hits = [fetched[table.name][position[cid]] for cid in ids]
            utils._populate_response_from_feature_data(
                requested, self._decode(config, table.name, hits, requested), idxs, online_features_response,
                full_feature_names, table, output_len, include_feature_view_version_metadata,
            )

# ------------------------------------------------------------------ SQLite
class ClmSqliteOnlineStoreConfig(FeastConfigBaseModel):
    type: Literal["features.online_store.ClmSqliteOnlineStore"] = "features.online_store.ClmSqliteOnlineStore"
    path: str = "online.db"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ClmSqliteOnlineStore(_OneTripReads):
    """One row per customer; columns v_<view> (payload) and t_<view> (event time, us)."""

    def __init__(self) -> None:
        self._conn: sqlite3.Connection | None = None
        self._layouts: dict[str, ViewLayout] = {}

    # -- plumbing --------------------------------------------------------------------
    def _connect(self, config: RepoConfig) -> sqlite3.Connection:
        if self._conn is None:
            path = Path(config.online_store.path)
            if not path.is_absolute() and config.repo_path is not None:  # relative to the repo, like Feast's
                path = Path(config.repo_path) / path
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {VIEWS_TABLE} (name TEXT PRIMARY KEY, layout TEXT)")
        return self._conn

    @staticmethod
    def table(config: RepoConfig) -> str:
        return f"{config.project}_online"

    def _ensure(self, config: RepoConfig, views: Sequence[FeatureView]) -> None:
        conn = self._connect(config)
        t = self.table(config)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_q(t)} (entity_key TEXT PRIMARY KEY) WITHOUT ROWID")
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({_q(t)})")}
        for view in views:
            for col, kind in ((f"v_{view.name}", "BLOB"), (f"t_{view.name}", "INTEGER")):
                if col not in have:
                    conn.execute(f"ALTER TABLE {_q(t)} ADD COLUMN {_q(col)} {kind}")
            layout = ViewLayout.of(view)
            conn.execute(f"INSERT OR REPLACE INTO {VIEWS_TABLE} VALUES (?, ?)", (view.name, layout.to_json()))
            self._layouts[view.name] = layout

    def _layout(self, config: RepoConfig, view_name: str) -> ViewLayout | None:
        if view_name not in self._layouts:
            row = self._connect(config).execute(f"SELECT layout FROM {VIEWS_TABLE} WHERE name = ?", (view_name,)).fetchone()
            if row is None:
                return None
            self._layouts[view_name] = ViewLayout.from_json(row[0])
        return self._layouts[view_name]

    # -- Feast interface -------------------------------------------------------------
    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        if table.name not in self._layouts:  # Feast's update() set it up at apply time
            self._ensure(config, [table])
        layout = self._layouts[table.name]
        v, t = _q(f"v_{table.name}"), _q(f"t_{table.name}")
        rows = [(entity_id(k), layout.encode_values(vals), _to_micros(ts)) for k, vals, ts, _ in data]
        conn = self._connect(config)
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO {_q(self.table(config))} (entity_key, {v}, {t}) VALUES (?, ?, ?) "
            f"ON CONFLICT(entity_key) DO UPDATE SET {v} = excluded.{v}, {t} = excluded.{t} "
            f"WHERE {t} IS NULL OR excluded.{t} >= {t}",
            rows,
        )
        conn.execute("COMMIT")
        if progress:
            progress(len(data))

    def _fetch(self, config: RepoConfig, view_names: list[str], ids: list[str]) -> dict[str, list[tuple[int, bytes] | None]]:
        known = [v for v in view_names if self._layout(config, v) is not None]
        out: dict[str, list[tuple[int, bytes] | None]] = {v: [None] * len(ids) for v in view_names}
        if not known or not ids:
            return out
        cols = ", ".join(f"{_q('t_' + v)}, {_q('v_' + v)}" for v in known)
        rows = self._connect(config).execute(
            f"SELECT entity_key, {cols} FROM {_q(self.table(config))} WHERE entity_key IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
        position = {cid: i for i, cid in enumerate(ids)}
        for row in rows:
            i = position[row[0]]
            for j, v in enumerate(known):
                ts, payload = row[1 + 2 * j], row[2 + 2 * j]
                if payload is not None:
                    out[v][i] = (ts, payload)
        return out

    def forget(self, config: RepoConfig, ids: Sequence[str]) -> int:
        """Remove customers' rows; returns how many there were. Deleted bytes are zeroed
        (secure_delete), the file rebuilt without them (VACUUM: no old key left in the
        b-tree's inner pages) and the write-ahead log emptied into it."""
        conn = self._connect(config)
        table = _q(self.table(config))
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (self.table(config),)).fetchone() is None:
            return 0
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN")
        held = 0
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            held += conn.execute(f"DELETE FROM {table} WHERE entity_key IN ({','.join('?' * len(chunk))})",
                                 chunk).rowcount
        conn.execute("COMMIT")
        conn.execute("VACUUM")
        checkpoint_fully(conn, Path(str(config.online_store.path)))
        return held

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        self._ensure(config, tables_to_keep)
        conn = self._connect(config)
        for view in tables_to_delete:
            conn.execute(f"DELETE FROM {VIEWS_TABLE} WHERE name = ?", (view.name,))
            self._layouts.pop(view.name, None)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        conn = self._connect(config)
        conn.execute(f"DROP TABLE IF EXISTS {_q(self.table(config))}")
        conn.execute(f"DROP TABLE IF EXISTS {VIEWS_TABLE}")
        self._layouts.clear()

    # -- bulk load ---------------------------------------------------------------------
    def bulk_load(self, config: RepoConfig, snapshots: Sequence[ViewSnapshot], as_of: datetime,
                  progress: Callable[[int], None] | None = None) -> int:
        """Replace every customer's record with these snapshots; returns customers written.

        Rows go into a fresh table that replaces the live one by rename in one
        transaction: readers see the old data or the new, never a mix.
        """
        views = [s.view for s in snapshots]
        self._ensure(config, views)
        conn = self._connect(config)
        live, fresh = self.table(config), f"{self.table(config)}__load"
        cols = ["entity_key"] + [c for v in views for c in (f"v_{v.name}", f"t_{v.name}")]
        conn.execute(f"DROP TABLE IF EXISTS {_q(fresh)}")
        conn.execute(
            f"CREATE TABLE {_q(fresh)} (entity_key TEXT PRIMARY KEY, "
            + ", ".join(f"{_q(c)} {'BLOB' if c.startswith('v_') else 'INTEGER'}" for c in cols[1:])
            + ") WITHOUT ROWID"
        )
        sql = f"INSERT INTO {_q(fresh)} ({', '.join(map(_q, cols))}) VALUES ({', '.join('?' * len(cols))})"
        ts = _to_micros(as_of)
        written = 0
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        for ids, payloads in _aligned_payloads(snapshots):
            columns: list[Iterable[object]] = [ids]
            for column in payloads:
                columns += [column, itertools.repeat(ts)]
            conn.executemany(sql, zip(*columns))
            written += len(ids)
            if progress:
                progress(len(ids))
        conn.execute(f"DROP TABLE IF EXISTS {_q(live)}")
        conn.execute(f"ALTER TABLE {_q(fresh)} RENAME TO {_q(live)}")
        conn.execute("COMMIT")
        conn.execute("PRAGMA synchronous=NORMAL")
        return written


# ------------------------------------------------------------------ Redis
class ClmRedisOnlineStoreConfig(FeastConfigBaseModel):
    type: Literal["features.online_store.ClmRedisOnlineStore"] = "features.online_store.ClmRedisOnlineStore"
    connection_string: str = "localhost:6379"
    # Customers are spread over this many hashes (a power of two). A bulk load then sends
    # one HSET per hash and batch instead of one per customer: the per-command cost of a
    # client dominates a load, not Redis.
    buckets: int = 4096
    # The prefix of every key of this store: one workspace's own (`features.repo` writes one
    # per workspace), so that workspaces sharing a Redis database never touch each other's
    # keys (a load, a teardown, `clm forget`). Empty: the Feast project (stores made before).
    namespace: str = ""


def _prefix(config: RepoConfig) -> str:
    return config.online_store.namespace or config.project


class ClmRedisOnlineStore(_OneTripReads):
    """Hashes '<namespace>:b:<bucket>', bucket = crc32(customer id) mod buckets; one field per
    customer and view, '<view>:<customer id>' -> event time (8 bytes) + payload."""

    def __init__(self) -> None:
        self._client: Any = None
        self._layouts: dict[str, ViewLayout] = {}

    def _redis(self, config: RepoConfig) -> Any:
        if self._client is None:
            host_port, *params = config.online_store.connection_string.split(",")
            host, _, port = host_port.partition(":")
            kwargs = dict(p.split("=", 1) for p in params)
            self._client = redis.Redis(host=host, port=int(port or 6379), db=int(kwargs.get("db", 0)))
        return self._client

    @staticmethod
    def bucket_key(config: RepoConfig, customer: str) -> str:
        buckets = config.online_store.buckets
        return f"{_prefix(config)}:b:{zlib.crc32(customer.encode()) & (buckets - 1)}"

    def _layouts_key(self, config: RepoConfig) -> str:
        return f"{_prefix(config)}:{VIEWS_TABLE}"

    def _ensure(self, config: RepoConfig, views: Sequence[FeatureView]) -> None:
        buckets = config.online_store.buckets
        if buckets <= 0 or buckets & (buckets - 1):
            raise ValueError(f"online_store.buckets must be a power of two, got {buckets}")
        mapping = {}
        for view in views:
            layout = ViewLayout.of(view)
            self._layouts[view.name] = layout
            mapping[view.name] = layout.to_json()
        if mapping:
            self._redis(config).hset(self._layouts_key(config), mapping=mapping)

    def _layout(self, config: RepoConfig, view_name: str) -> ViewLayout | None:
        if view_name not in self._layouts:
            raw = self._redis(config).hget(self._layouts_key(config), view_name)
            if raw is None:
                return None
            self._layouts[view_name] = ViewLayout.from_json(raw.decode())
        return self._layouts[view_name]

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        if table.name not in self._layouts:  # Feast's update() set it up at apply time
            self._ensure(config, [table])
        layout = self._layouts[table.name]
        client = self._redis(config)
        ids = [entity_id(k) for k, _, _, _ in data]
        keys = [self.bucket_key(config, cid) for cid in ids]
        fields = [f"{table.name}:{cid}" for cid in ids]
        # Keep the newer value when writers race: read the stored times first.
        pipe = client.pipeline(transaction=False)
        for key, field in zip(keys, fields):
            pipe.hget(key, field)
        stored = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for key, field, old, (_, values, ts, _) in zip(keys, fields, stored, data):
            micros = _to_micros(ts)
            if old is not None and TS.unpack_from(old)[0] > micros:
                continue
            pipe.hset(key, field, TS.pack(micros) + layout.encode_values(values))
        pipe.execute()
        if progress:
            progress(len(data))

    def _fetch(self, config: RepoConfig, view_names: list[str], ids: list[str]) -> dict[str, list[tuple[int, bytes] | None]]:
        client = self._redis(config)
        if len(ids) == 1:
            rows = [client.hmget(self.bucket_key(config, ids[0]), [f"{v}:{ids[0]}" for v in view_names])]
        else:
            pipe = client.pipeline(transaction=False)
            for cid in ids:
                pipe.hmget(self.bucket_key(config, cid), [f"{v}:{cid}" for v in view_names])
            rows = pipe.execute()
        return {
            v: [None if row[j] is None else (TS.unpack_from(row[j])[0], row[j][8:]) for row in rows]
            for j, v in enumerate(view_names)
        }

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        self._ensure(config, tables_to_keep)
        if tables_to_delete:
            self._redis(config).hdel(self._layouts_key(config), *[v.name for v in tables_to_delete])

    def forget(self, config: RepoConfig, ids: Sequence[str]) -> int:
        """Remove customers' values of every view (this store's keys only); returns how
        many customers had any."""
        client = self._redis(config)
        views = [v.decode() for v in client.hkeys(self._layouts_key(config))]
        if not views:
            return 0
        held = 0
        for start in range(0, len(ids), 1_000):
            pipe = client.pipeline(transaction=False)
            for cid in ids[start:start + 1_000]:
                pipe.hdel(self.bucket_key(config, cid), *[f"{v}:{cid}" for v in views])
            held += sum(1 for removed in pipe.execute() if removed)
        return held

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        client = self._redis(config)
        for key in client.scan_iter(match=f"{_prefix(config)}:*", count=10_000):
            client.unlink(key)
        self._layouts.clear()

    def bulk_load(self, config: RepoConfig, snapshots: Sequence[ViewSnapshot], as_of: datetime,
                  progress: Callable[[int], None] | None = None) -> int:
        """Write every customer's views, one HSET per bucket and batch, pipelined; returns
        customers written. Each field is replaced whole: a reader sees a view's old or new
        value, never a mix."""
        views = [s.view for s in snapshots]
        self._ensure(config, views)
        client = self._redis(config)
        prefix = TS.pack(_to_micros(as_of))
        mask = config.online_store.buckets - 1
        written = 0
        for ids, payloads in _aligned_payloads(snapshots):
            bucket = np.fromiter((zlib.crc32(c.encode()) for c in ids), dtype=np.int64, count=len(ids)) & mask
            order = np.argsort(bucket, kind="stable")
            starts = np.flatnonzero(np.diff(bucket[order])) + 1
            pipe = client.pipeline(transaction=False)
            for rows in np.split(order, starts):
                args: list[object] = ["HSET", f"{_prefix(config)}:b:{bucket[rows[0]]}"]
                for view, column in zip(views, payloads):
                    name = view.name
                    for i in rows.tolist():
                        args += (f"{name}:{ids[i]}", prefix + column[i])
                pipe.execute_command(*args)
            pipe.execute()
            written += len(ids)
            if progress:
                progress(len(ids))
        return written


# ------------------------------------------------------------------ shared
def _aligned_payloads(snapshots: Sequence[ViewSnapshot]) -> Iterable[tuple[list[str], list[list[bytes]]]]:
    """Zip the views' batches (same customers, same order) into (ids, payloads per view)."""
    layouts = [ViewLayout.of(s.view) for s in snapshots]
    for batches in zip(*(s.batches for s in snapshots), strict=True):
        first = batches[0].column("customer_id")
        for b in batches[1:]:
            if not b.column("customer_id").equals(first):
                raise ValueError("feature snapshots of one date must list the same customers in the same order")
        ids = first.to_pylist()
        yield ids, [layout.encode_batch(b) for layout, b in zip(layouts, batches)]
