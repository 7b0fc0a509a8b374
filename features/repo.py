"""The Feast repo's files, read and checked without Feast itself: feature_store.yaml (written
atomically, read with a clear error when damaged), where the registry and the SQLite online
database live, and whether the online store can be read (SQLite: a fresh connection reads
each table; Redis: it answers). Light on purpose: `clm serve` checks a workspace with these
before it starts a server, and readiness probes call them (Feast itself: `features.store`).
"""
from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from clm.errors import ClmError
from clm.files import read_yaml_mapping, sqlite_damage, write_text_atomically
from clm.workspace import Workspace

PROJECT = "clm"
# Ours (one record per customer, bulk loads) and, for comparison, Feast's own.
ONLINE_STORES = ("sqlite", "redis", "feast-sqlite", "feast-redis")
CONFIG_NAME = "feature_store.yaml"
REGISTRY_DB = "registry.db"  # relative to the repo folder
ONLINE_DB = "online.db"


@dataclass(frozen=True)
class OnlineStoreSettings:
    """kind: "sqlite" (embedded default), "redis", or Feast's own "feast-sqlite" /
    "feast-redis"; redis_url: host:port[,db=N]."""

    kind: str = "sqlite"
    redis_url: str = "localhost:6379"


def redis_namespace(workspace: Workspace) -> str:
    """The prefix of this workspace's keys in Redis: `clm-` and 12 hex digits of its folder's
    path when the store is configured (kept in the config: moving the folder keeps it)."""
    return "clm-" + hashlib.sha256(str(workspace.root.resolve()).encode()).hexdigest()[:12]


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
        "redis": {"type": "features.online_store.ClmRedisOnlineStore", "connection_string": online.redis_url,
                  "namespace": redis_namespace(workspace)},
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
