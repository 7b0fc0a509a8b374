"""Workspace layout: every generated file lives under one folder, ignored by git.

The folder is `--workspace DIR` on every command, else `$CLM_WORKSPACE`, else
`./workspace`. Raw tables are `raw/<table>.parquet`, described by `raw/_manifest.json`.
Writers never leave a half-written folder: they build it beside the target and rename.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from clm.domain import Table
from clm.errors import ClmError

DEFAULT_WORKSPACE = "workspace"
WORKSPACE_ENV = "CLM_WORKSPACE"
MANIFEST_NAME = "_manifest.json"


def resolve_workspace(path: str | os.PathLike[str] | None) -> Path:
    """The workspace folder: the explicit path, else $CLM_WORKSPACE, else ./workspace."""
    if path:
        return Path(path)
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)


@dataclass(frozen=True)
class RawManifest:
    """What a raw folder holds and where its data came from.

    source: "simulator", "ingest" (or another name for hand-made data); business: "contractual" (subscriptions, churn is a
    cancellation) or "non_contractual" (transactions only, churn is no purchase within a
    horizon); data_start/data_end: ISO UTC bounds of the observed period, no event may
    lie after data_end; tables: the raw tables present; details: how it was made.
    """

    source: str
    business: str
    data_start: str
    data_end: str
    tables: list[str]
    details: dict[str, object] = field(default_factory=dict)

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.data_start)

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.data_end)


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace folder."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None) -> "Workspace":
        root = resolve_workspace(path)
        if root.exists() and not root.is_dir():
            raise ClmError(f"Workspace '{root}' is a file, not a folder: choose another --workspace.")
        return cls(root)

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    def table_path(self, table: Table | str, raw_dir: Path | None = None) -> Path:
        return (raw_dir or self.raw_dir) / f"{Table(table).value}.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.raw_dir / MANIFEST_NAME

    def has_raw(self) -> bool:
        return self.manifest_path.exists()

    def read_manifest(self) -> RawManifest:
        if not self.manifest_path.exists():
            raise ClmError(
                f"No raw data in workspace '{self.root}': {self.manifest_path} is missing. "
                "Create it with `clm simulate --workspace "
                f"{self.root}` or `clm ingest transactions FILE --workspace {self.root} ...`."
            )
        return RawManifest(**json.loads(self.manifest_path.read_text()))

    def read_table(self, table: Table | str, columns: list[str] | None = None) -> pd.DataFrame:
        path = self.table_path(table)
        if not path.exists():
            raise ClmError(f"Table '{Table(table).value}' is missing from {self.raw_dir}.")
        return pd.read_parquet(path, columns=columns)

    def _remove_abandoned_staging(self) -> None:
        """Folders left by a writer that was killed (its process is gone): removed."""
        for folder in [*self.root.glob(".raw-staging-*"), *self.root.glob(".raw-retired-*")]:
            pid = folder.name.split("-")[2]
            if not pid.isdigit() or not _process_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def writing_raw(self) -> Iterator[Path]:
        """Yield a fresh staging folder; on success it replaces raw/ in one rename.

        On any error the staging folder is removed and the existing raw/ is untouched.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned_staging()
        staging = self.root / f".raw-staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        retired = self.root / f".raw-retired-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if self.raw_dir.exists():
            self.raw_dir.rename(retired)
        staging.rename(self.raw_dir)
        shutil.rmtree(retired, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def write_manifest(raw_dir: Path, manifest: RawManifest) -> None:
    (raw_dir / MANIFEST_NAME).write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True))
