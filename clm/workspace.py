"""Workspace layout: every generated file lives under one folder, ignored by git.

The folder is `--workspace DIR` on every command, else `$CLM_WORKSPACE`, else
`./workspace`. Raw tables are `raw/<table>.parquet`, described by `raw/_manifest.json`.
Writers never leave a half-written folder: they build it beside the target and rename.
"""
from __future__ import annotations

import fcntl
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
# One business's data and everything made from it, in the order a replacement retires them.
BUSINESS_FOLDERS = ("raw", "features", "feature_repo", "mlflow", "decisions", "scores", "reports")
LOCK_NAME = ".clm.lock"  # held by the command writing to the workspace; says who it is


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
        try:
            return RawManifest(**json.loads(self.manifest_path.read_text()))
        except (ValueError, TypeError) as err:  # truncated or edited by hand
            raise ClmError(
                f"The raw data's manifest {self.manifest_path} is damaged ({type(err).__name__}: "
                f"{str(err)[:120]}): the workspace cannot say what it holds. Recreate its raw data with "
                "`clm simulate --replace` or `clm ingest transactions FILE --replace ...`."
            ) from None

    def read_table(self, table: Table | str, columns: list[str] | None = None) -> pd.DataFrame:
        path = self.table_path(table)
        if not path.exists():
            raise ClmError(f"Table '{Table(table).value}' is missing from {self.raw_dir}.")
        return pd.read_parquet(path, columns=columns)

    @contextmanager
    def exclusive(self, command: str) -> Iterator[None]:
        """Hold the workspace for one writing command: a second one (two `clm train` at
        once, a `clm score` during an ingest) is refused at once, naming the first.

        An OS file lock (flock): released when the holder ends, however it ends, so a
        killed command never leaves the workspace locked. A workspace folder this call
        created is removed again if the command left nothing in it.
        """
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_NAME
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another clm command"
                raise ClmError(
                    f"Workspace '{self.root}' is busy: {holder} is writing to it. Wait for it to finish, "
                    "or use another --workspace."
                ) from None
            handle.truncate(0)
            handle.write(f"`{command}` (pid {os.getpid()}, started {pd.Timestamp.now():%Y-%m-%d %H:%M:%S})")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                if created and [p.name for p in self.root.iterdir()] == [LOCK_NAME]:
                    path.unlink()
                    self.root.rmdir()

    def business_folders(self) -> list[Path]:
        """The folders holding one business's data and what was made from it, non-empty ones:
        raw data, feature snapshots, the Feast repo and the MLflow store."""
        return [f for f in (self.root / name for name in BUSINESS_FOLDERS) if f.is_dir() and any(f.iterdir())]

    def check_new_business(self, replace: bool) -> None:
        """A workspace holds one business. Writing another into it would mix the two (the
        old features and models would score the new customers): refused unless replace."""
        held = self.business_folders()
        if replace or not held:
            return
        raise ClmError(
            f"Workspace '{self.root}' already holds {self.describe()} ({', '.join(f.name for f in held)}). "
            "Writing another business into it would mix the two. Pass --replace to start it over (its raw "
            "data, features, Feast repo and MLflow models are removed once the new data is complete), or "
            "choose another --workspace."
        )

    def describe(self) -> str:
        """What the workspace holds, in words, even when its manifest is unreadable."""
        try:
            m = self.read_manifest()
        except ClmError:
            return "data"
        return f"{m.source} data ({m.business}, {m.data_start[:10]} to {m.data_end[:10]})"

    def _remove_abandoned_staging(self) -> None:
        """Folders left by a writer that was killed (its process is gone): removed."""
        for folder in [*self.root.glob(".raw-staging-*"), *self.root.glob(".raw-retired-*")]:
            pid = folder.name.split("-")[2]
            if not pid.isdigit() or not process_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def writing_raw(self, replace: bool = False) -> Iterator[Path]:
        """Yield a fresh staging folder; on success it becomes raw/ by a rename.

        A workspace already holding a business is refused unless replace (see
        `check_new_business`); with it, the old business's folders are retired only once
        the new raw data is complete, raw/ first, so that no command ever reads the new raw
        data beside old features or models. On any error the staging folder is removed and
        the workspace is untouched.
        """
        self.check_new_business(replace)
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
        retired.mkdir()
        for name in BUSINESS_FOLDERS:  # raw first: without it every command stops at "no raw data"
            if (self.root / name).exists():
                (self.root / name).rename(retired / name)
        staging.rename(self.raw_dir)
        shutil.rmtree(retired, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def write_manifest(raw_dir: Path, manifest: RawManifest) -> None:
    (raw_dir / MANIFEST_NAME).write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True))
