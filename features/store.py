"""The workspace's Feast feature store: apply, materialise, retrieve (its config files: `features.repo`).

The store lives in WORKSPACE/feature_repo/: feature_store.yaml (DuckDB offline store over
the snapshot files; SQLite online store by default, Redis with `online_store="redis"`),
the file registry and the SQLite online database. Training frames come from Feast's
`get_historical_features` (point-in-time joins); online reads from `get_online_features`.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import pandas as pd
from feast import FeatureService, FeatureStore, FileSource
from google.protobuf.message import DecodeError

from clm.errors import ClmError
from clm.files import sqlite_damage
from clm.workspace import Workspace
from features.repo import (
    CONFIG_NAME,
    ONLINE_DB,
    REGISTRY_DB,
    OnlineStoreSettings,
    _relocate_config,
    repo_dir,
    write_config,
)
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

FAST_STORES: dict[str, type[ClmSqliteOnlineStore] | type[ClmRedisOnlineStore]] = {
    "sqlite": ClmSqliteOnlineStore, "redis": ClmRedisOnlineStore}
LOAD_BATCH_ROWS = 100_000
# Entity rows per Feast retrieval: its DuckDB join holds several times its result while it
# runs (3.5 GB for 490,000 rows x 78 columns at 100,000 customers), so a training frame is
# retrieved in parts of this many rows and put together.
RETRIEVAL_ROWS = 100_000
ENTITY_KEYS = ["customer_id", "event_timestamp"]  # a training frame's row: a customer at a cutoff


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
    fast = _fast_store(store)
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


def _fast_store(store: FeatureStore) -> type[ClmSqliteOnlineStore] | type[ClmRedisOnlineStore] | None:
    """clm's own online store class the store is configured with (None: one of Feast's)."""
    store_type = store.config.online_store.type
    return next((cls for cls in FAST_STORES.values() if store_type.endswith(cls.__name__)), None)


def check_can_forget(workspace: Workspace) -> None:
    """Refuse, before anything is removed, an online store clm cannot remove one customer
    from (Feast's own, chosen for comparison)."""
    if (repo_dir(workspace) / CONFIG_NAME).exists() and _fast_store(open_store(workspace)) is None:
        raise ClmError(f"The online store of {workspace.root} is one of Feast's own, which cannot remove one customer: "
                       f"configure clm's (`clm features apply --online-store sqlite` or `--online-store redis -w "
                       f"{workspace.root}`, then `clm features materialize`) and run `clm forget` again.")


def forget_online(workspace: Workspace, ids: list[str]) -> int:
    """Remove customers from the workspace's online store (SQLite, or this workspace's keys
    in Redis); returns how many it held. No store yet: 0."""
    if not (repo_dir(workspace) / CONFIG_NAME).exists():
        return 0
    store = open_store(workspace)
    fast = _fast_store(store)
    if fast is None:
        check_can_forget(workspace)
        return 0
    return fast().forget(store.config, ids)


def historical_features(workspace: Workspace, entity_df: pd.DataFrame, model: str,
                        rows_per_call: int = RETRIEVAL_ROWS, only: Collection[str] | None = None) -> pd.DataFrame:
    """Point-in-time features for (customer_id, event_timestamp) rows, for one model's
    service (only: just these features of it, e.g. what the stage rules read), sorted by
    customer_id then event_timestamp (Feast returns a call's rows in no fixed order), with
    a RangeIndex. Retrieved rows_per_call entity rows at a time: each row's join is its own,
    so the parts, each sorted, are the whole sorted, with no sort of the whole (a copy)."""
    store = open_store(workspace)
    service = store.get_feature_service(f"{model}_features")
    features: FeatureService | list[str] = service if only is None else [
        f"{view.name}:{field.name}" for view in service.feature_view_projections
        for field in view.features if field.name in only]
    rows = entity_df.sort_values(ENTITY_KEYS, kind="stable", ignore_index=True)
    parts = [store.get_historical_features(entity_df=rows.iloc[i:i + rows_per_call], features=features).to_df()
             .sort_values(ENTITY_KEYS, kind="stable", ignore_index=True)
             for i in range(0, max(len(rows), 1), rows_per_call)]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
