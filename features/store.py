"""The workspace's Feast feature store: config, apply, materialise, retrieve.

The store lives in WORKSPACE/feature_repo/: feature_store.yaml (DuckDB offline store over
the snapshot files; SQLite online store by default, Redis with `online_store="redis"`),
the file registry and the SQLite online database. Training frames come from Feast's
`get_historical_features` (point-in-time joins); online reads from `get_online_features`.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import redis
import yaml
from feast import FeatureStore, FileSource
from google.protobuf.message import DecodeError
from redis.backoff import NoBackoff
from redis.retry import Retry

from clm.errors import ClmError
from clm.files import read_yaml_mapping, sqlite_damage, write_text_atomically
from clm.workspace import Workspace
from features.feast_repo import (
    SNAPSHOT_TTL,
    customer,
    feature_services,
    feature_view,
    snapshot_source,
)
from features.online_store import (
    ClmRedisOnlineStore,
    ClmSqliteOnlineStore,
    ViewSnapshot,
)
from features.snapshots import (
    SNAPSHOT_GLOB,
    check_snapshots,
    features_dir,
    group_dir,
    snapshot_batches,
    snapshot_path,
    workspace_groups,
)

if TYPE_CHECKING:
    from feast.feast_object import FeastObject

PROJECT = "clm"
# Ours (one record per customer, bulk loads) and, for comparison, Feast's own.
ONLINE_STORES = ("sqlite", "redis", "feast-sqlite", "feast-redis")
FAST_STORES: dict[str, type[ClmSqliteOnlineStore] | type[ClmRedisOnlineStore]] = {
    "sqlite": ClmSqliteOnlineStore, "redis": ClmRedisOnlineStore}
LOAD_BATCH_ROWS = 100_000
CONFIG_NAME = "feature_store.yaml"
REGISTRY_DB = "registry.db"  # relative to the repo folder
ONLINE_DB = "online.db"


@dataclass(frozen=True)
class OnlineStoreSettings:
    """kind: "sqlite" (embedded default), "redis", or Feast's own "feast-sqlite" /
    "feast-redis"; redis_url: host:port[,db=N]."""

    kind: str = "sqlite"
    redis_url: str = "localhost:6379"


def repo_dir(workspace: Workspace) -> Path:
    return workspace.root / "feature_repo"


def write_config(workspace: Workspace, online: OnlineStoreSettings = OnlineStoreSettings()) -> Path:
    """Write WORKSPACE/feature_repo/feature_store.yaml; returns the repo folder.

    Paths in it are relative to the repo folder, so a copied or moved workspace uses its
    own registry and online database, never the original's. Written to a temporary file
    and renamed: a failure leaves the previous config whole.
    """
    if online.kind not in ONLINE_STORES:
        raise ClmError(f"Online store '{online.kind}' is not one of: {', '.join(ONLINE_STORES)}.")
    if online.kind in ("redis", "feast-redis"):
        check_redis(online.redis_url)
    repo = repo_dir(workspace)
    repo.mkdir(parents=True, exist_ok=True)
    online_cfg: dict[str, str] = {
        "sqlite": {"type": "features.online_store.ClmSqliteOnlineStore", "path": ONLINE_DB},
        "redis": {"type": "features.online_store.ClmRedisOnlineStore", "connection_string": online.redis_url},
        "feast-sqlite": {"type": "sqlite", "path": ONLINE_DB},
        "feast-redis": {"type": "redis", "connection_string": online.redis_url},
    }[online.kind]
    config = {
        "project": PROJECT,
        "provider": "local",
        "registry": {"registry_type": "file", "path": REGISTRY_DB},
        "offline_store": {"type": "duckdb"},
        "online_store": online_cfg,
        "entity_key_serialization_version": 3,
    }
    _write_config_file(repo, config)
    return repo


def _write_config_file(repo: Path, config: dict[str, object]) -> None:
    """feature_store.yaml, written beside and renamed: never half a config."""
    write_text_atomically(repo / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))


def check_redis(url: str, timeout_seconds: float = 5.0) -> None:
    """Redis at host:port[,db=N] must answer a ping before any config names it."""
    host_port, *params = url.split(",")
    host, _, port = host_port.partition(":")
    try:
        options = dict(p.split("=", 1) for p in params)
        client = redis.Redis(host=host or "localhost", port=int(port or 6379), db=int(options.get("db", 0)),
                             socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds,
                             retry=Retry(NoBackoff(), 0))  # one answer now, not retries with backoff (7 s)
        client.ping()
    except ValueError:
        raise ClmError(f"--redis-url '{url}' is not host:port[,db=N] (for example localhost:6379,db=0).") from None
    except redis.RedisError as err:
        raise ClmError(
            f"Cannot reach Redis at {url} ({err}). Start it, or check --redis-url; the feature store "
            "keeps its current online store until then."
        ) from None


def read_config(repo: Path) -> dict[str, Any]:
    """The repo's feature_store.yaml, whole: a damaged one (truncated, overwritten) is a
    ClmError saying how to write it again, never a parser's traceback."""
    path = repo / CONFIG_NAME
    again = ("Write it again with `clm features apply` (with --online-store redis --redis-url HOST:PORT if the "
             "online store was Redis).")
    try:
        config = read_yaml_mapping(path, "The feature store's config", "project, registry and online_store")
    except ClmError as err:
        raise ClmError(f"{err} {again}") from None
    registry = config.get("registry")
    online = config.get("online_store")
    if not (isinstance(registry, dict) and isinstance(registry.get("path"), str) and isinstance(online, dict)
            and isinstance(online.get("type"), str)):
        raise ClmError(f"The feature store's config {path} is damaged: it lacks the registry or the online store. "
                       f"{again}")
    return config


def _relocate_config(repo: Path) -> None:
    """A config written by an older clm holds absolute paths (possibly another folder's):
    rewritten relative, keeping its online store."""
    config = read_config(repo)
    online = config.get("online_store", {})
    stale = Path(config["registry"]["path"]).is_absolute() or Path(str(online.get("path", ""))).is_absolute()
    if not stale:
        return
    config["registry"]["path"] = REGISTRY_DB
    if "path" in online:
        online["path"] = ONLINE_DB
    _write_config_file(repo, config)


def check_online_store(workspace: Workspace) -> None:
    """The online store is configured and loaded (SQLite: its database exists; Redis: it
    answers), before a server is started on it."""
    config_path = repo_dir(workspace) / CONFIG_NAME
    if not config_path.exists():
        raise ClmError(f"No feature store in {workspace.root}: run `clm features apply -w {workspace.root}` first.")
    online = read_config(repo_dir(workspace))["online_store"]
    if "redis" in str(online.get("type", "")):
        check_redis(str(online.get("connection_string", "localhost:6379")))
    elif not (repo_dir(workspace) / ONLINE_DB).exists():
        raise ClmError(f"The online store of {workspace.root} is empty: run "
                       f"`clm features materialize -w {workspace.root}` first.")
    elif (problem := sqlite_damage(repo_dir(workspace) / ONLINE_DB)) is not None:
        raise ClmError(f"The online store {repo_dir(workspace) / ONLINE_DB} is damaged ({problem}): load it again "
                       f"with `clm features materialize -w {workspace.root}`.")


def online_db_path(workspace: Workspace) -> Path | None:
    """The SQLite file of the workspace's online store; None for Redis."""
    online = read_config(repo_dir(workspace))["online_store"]
    return None if "redis" in str(online.get("type", "")) else repo_dir(workspace) / ONLINE_DB


def sqlite_store_problem(path: Path) -> str | None:
    """What stops a fresh connection from reading the online store's SQLite file (gone,
    truncated, overwritten), or None. Cheap enough for every readiness probe: each table's
    first and last key (the B-tree's two ends, the pages a truncation loses first), read
    without the server's connection and its cached pages."""
    if not path.is_file():
        return f"the online store's database {path} is gone"
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                for order in ("ASC", "DESC"):
                    conn.execute(f"SELECT * FROM {quoted} ORDER BY 1 {order} LIMIT 1").fetchall()
    except sqlite3.DatabaseError as err:
        return f"the online store's database {path} cannot be read ({err})"
    return None


def open_store(workspace: Workspace) -> FeatureStore:
    """The workspace's store. Its registry names snapshot files by absolute path (DuckDB
    reads them as given): in a copied or moved workspace the definitions are applied again,
    so that it reads its own snapshots, never the original's (and so are those of an older
    clm, whose sources did not read snapshot folders)."""
    repo = repo_dir(workspace)
    if not (repo / CONFIG_NAME).exists():
        raise ClmError(
            f"No feature store in {workspace.root}: run `clm features apply -w {workspace.root}` first."
        )
    _relocate_config(repo)
    _remove_damaged_online_db(workspace)
    store = FeatureStore(repo_path=str(repo))
    here = str(features_dir(workspace).resolve())
    try:
        sources = [s for s in store.list_data_sources() if isinstance(s, FileSource)]
    except DecodeError:  # a damaged registry: it holds only clm's definitions, registered again below
        (repo / REGISTRY_DB).unlink(missing_ok=True)
        store = FeatureStore(repo_path=str(repo))
        sources = []
    if not sources or any(not s.path.startswith(here + os.sep) or not s.path.endswith(SNAPSHOT_GLOB) for s in sources):
        store.apply(definitions(workspace))
    return store


def definitions(workspace: Workspace) -> list[FeastObject]:
    """Entity, sources, views and services for the groups this workspace has."""
    expected = workspace_groups(workspace)
    groups = [g for g in expected if any(group_dir(workspace, g).glob("*.parquet"))]
    if not groups:
        raise ClmError(f"No feature snapshots in {workspace.root}: run `clm features build` first.")
    missing = [g.name for g in expected if g not in groups]
    if missing:
        raise ClmError(
            f"Feature group(s) {', '.join(missing)} have no snapshots in {workspace.root} while the others do "
            "(was a build interrupted?): run `clm features build` first."
        )
    views = {}
    for g in groups:
        source = snapshot_source(g, str(group_dir(workspace, g).resolve() / SNAPSHOT_GLOB))
        views[g.name] = feature_view(g, source)
    return [customer, *views.values(), *feature_services(views)]


def apply(workspace: Workspace, online: OnlineStoreSettings | None = None) -> FeatureStore:
    """Register every definition (idempotent) and return the store.

    online: the online store to configure; None keeps the one already configured
    (SQLite for a new repo).
    """
    objects = definitions(workspace)  # fails before anything is written if nothing is built
    if online is not None or not (repo_dir(workspace) / CONFIG_NAME).exists():
        write_config(workspace, online or OnlineStoreSettings())
    store = open_store(workspace)
    store.apply(objects)
    return store


def _remove_damaged_online_db(workspace: Workspace) -> None:
    """The embedded online store holds only what materialising loads from the snapshots: a
    damaged one (truncated, overwritten) is removed, to be loaded again whole by `clm
    features materialize` (`clm serve` says it is empty until then)."""
    db = repo_dir(workspace) / ONLINE_DB
    if sqlite_damage(db) is not None:
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)


def latest_snapshot_date(workspace: Workspace, views: list[str], as_of: pd.Timestamp) -> pd.Timestamp:
    """The latest date at or before as_of (within the views' TTL) with a snapshot of every view."""
    common: set[pd.Timestamp] | None = None
    for view in views:
        dates = {pd.Timestamp(p.stem, tz="UTC") for p in group_dir(workspace, view).glob("*.parquet")}
        common = dates if common is None else common & dates
    usable = sorted(d for d in (common or set()) if as_of - SNAPSHOT_TTL <= d <= as_of)
    if not usable:
        raise ClmError(
            f"No feature snapshot within {SNAPSHOT_TTL.days} days before {as_of:%Y-%m-%d}: "
            f"run `clm features build --as-of {as_of:%Y-%m-%d}` first."
        )
    return usable[-1]


def materialize(
    workspace: Workspace, as_of: pd.Timestamp, progress: Callable[[int], None] | None = None
) -> FeatureStore:
    """Load each view's latest snapshot at or before as_of into the online store.

    Our stores take the snapshot files in bounded chunks through `bulk_load`; Feast's own
    stores go through `FeatureStore.materialize`.
    """
    check_snapshots(workspace)
    store = open_store(workspace)
    store_type = store.config.online_store.type
    fast = next((cls for cls in FAST_STORES.values() if store_type.endswith(cls.__name__)), None)
    if fast is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            store.materialize(
                start_date=(as_of - SNAPSHOT_TTL).to_pydatetime(),
                end_date=(as_of + pd.Timedelta(seconds=1)).to_pydatetime(),
            )
        return store
    views = store.list_feature_views()
    if not views:
        raise ClmError(f"No feature views registered in {workspace.root}: run `clm features apply` first.")
    date = latest_snapshot_date(workspace, [v.name for v in views], as_of)
    snapshots = [
        ViewSnapshot(
            view,
            snapshot_batches(snapshot_path(workspace, view.name, date), LOAD_BATCH_ROWS,
                             ["customer_id", *[f.name for f in view.features]]),
        )
        for view in views
    ]
    fast().bulk_load(store.config, snapshots, date.to_pydatetime(), progress)
    return store


def historical_features(workspace: Workspace, entity_df: pd.DataFrame, model: str) -> pd.DataFrame:
    """Point-in-time features for (customer_id, event_timestamp) rows, for one model's service."""
    store = open_store(workspace)
    service = store.get_feature_service(f"{model}_features")
    return store.get_historical_features(entity_df=entity_df, features=service).to_df()
