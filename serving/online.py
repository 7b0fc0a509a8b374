"""The online store as the real-time API reads it: a failure is a 503 the caller can retry
(`StoreUnavailable`), never a 500, and the store is opened again after one, or when its
SQLite file was replaced, so that a store repaired under a running server (loaded again,
restored from a copy) is read without a restart. `problem()` is what readiness asks: the
file read through a fresh connection, then a real online read."""
from __future__ import annotations

import threading
from typing import Any

from feast import FeatureStore

from clm.errors import ClmError
from clm.workspace import Workspace
from serving.errors import StoreUnavailable
from features.repo import online_db_path, sqlite_store_problem
from features.store import open_store


def _identity(path: Any) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class OnlineStore:
    """The workspace's Feast store for online reads (what `Runtime` calls `store`)."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.path = online_db_path(workspace)
        self._lock = threading.Lock()
        self._broken = False
        self.feast: FeatureStore = open_store(workspace)
        self._file = _identity(self.path) if self.path else None

    def _current(self) -> FeatureStore:
        """The store, opened again first if the last read failed or its file was replaced."""
        replaced = self.path is not None and _identity(self.path) != self._file
        if self._broken or replaced:
            with self._lock:
                # A damaged file reads as missing rows (SQLite zero-fills what a truncation lost): checked first.
                if self.path is not None and (problem := sqlite_store_problem(self.path)) is not None:
                    raise StoreUnavailable(f"{problem}: load it again with `clm features materialize -w "
                                           f"{self.workspace.root}`")
                try:
                    self.feast = open_store(self.workspace)
                except ClmError as err:
                    raise StoreUnavailable(str(err)) from None
                self._file = _identity(self.path) if self.path else None
                self._broken = False
        return self.feast

    def get_feature_service(self, name: str) -> Any:
        return self._current().get_feature_service(name)

    def get_online_features(self, **kwargs: Any) -> Any:
        """Feast's online read; StoreUnavailable if the store cannot answer."""
        try:
            return self._current().get_online_features(**kwargs)
        except StoreUnavailable:
            self._broken = True
            raise
        except Exception as err:  # noqa: BLE001 - whatever the store's driver raises, the caller gets a 503
            self._broken = True
            raise StoreUnavailable(f"the online store cannot be read now ({type(err).__name__}: {err}); retry, and "
                                   f"if it lasts, load it again (`clm features materialize -w "
                                   f"{self.workspace.root}`)") from None

    def problem(self, service: Any, probe_id: str) -> str | None:
        """Why the store cannot answer now, or None (readiness)."""
        if self.path is not None and (found := sqlite_store_problem(self.path)) is not None:
            self._broken = True
            return found
        try:
            self.get_online_features(features=service, entity_rows=[{"customer_id": probe_id}])
        except StoreUnavailable as err:
            return str(err)
        return None
