"""Workspace layout: every generated file lives under one folder, ignored by git.

The folder is `--workspace DIR` on every command, else `$CLM_WORKSPACE`, else
`./workspace`; an empty one (`-w ""`, a script's unset variable) is an error, never the
current folder. Raw tables are `raw/<table>.parquet`, described by `raw/_manifest.json`.
Writers never leave a half-written folder: they build it beside the target and rename.

A folder is a clm workspace only when it says so: clm writes the marker `.clm-workspace`
when it makes a folder its workspace (a new or empty folder, or one an earlier clm filled
before markers existed, told by its raw data's manifest). clm writes into, and removes
folders from, no other folder: a project's own `features/` is never taken for clm's.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from clm.domain import Table
from clm.errors import ClmError
from clm.files import check_path_length, write_text_atomically
from clm.layout import BUSINESS_FOLDERS, foreign_files

DEFAULT_WORKSPACE = "workspace"
WORKSPACE_ENV = "CLM_WORKSPACE"
MANIFEST_NAME = "_manifest.json"
BUSINESSES = ("contractual", "non_contractual")
LOCK_NAME = ".clm.lock"  # held by the command writing to the workspace; says who it is
MARKER_NAME = ".clm-workspace"  # written when clm makes a folder its workspace: what makes it clm's
# Leftovers of clm's own writers (staging of raw data, Spark's scratch): clm's names too.
CLM_HIDDEN = (LOCK_NAME, MARKER_NAME, ".spark")
CLM_HIDDEN_PREFIXES = (".raw-staging-", ".raw-retired-")


def resolve_workspace(path: str | os.PathLike[str] | None) -> Path:
    """The workspace folder: the explicit path, else $CLM_WORKSPACE, else ./workspace.

    An empty path is refused, never read as the current folder (`Path("")` is `.`): a
    script's `-w "$WS"` with WS unset would otherwise write into wherever it runs."""
    if path is not None:
        text = os.fspath(path)
        if not text.strip():
            raise ClmError("--workspace is empty (in a script, is its variable set?): name a folder, e.g. "
                           "`-w ./workspace`, or leave the option out for ./workspace.")
        return check_path_length(Path(text), "--workspace")
    from_env = os.environ.get(WORKSPACE_ENV)
    if from_env is not None:
        if not from_env.strip():
            raise ClmError(f"${WORKSPACE_ENV} is set but empty: set it to a folder (e.g. "
                           f"`export {WORKSPACE_ENV}=$HOME/clm-workspace`), unset it for ./workspace, or pass -w.")
        return check_path_length(Path(from_env), f"${WORKSPACE_ENV}")
    return Path(DEFAULT_WORKSPACE)


def is_clm_name(name: str) -> bool:
    """A name clm itself gives to what it writes at a workspace's top level."""
    return name in BUSINESS_FOLDERS or name in CLM_HIDDEN or name.startswith(CLM_HIDDEN_PREFIXES)


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

    def __post_init__(self) -> None:
        """A manifest edited by hand is checked here, where every reader meets it: a
        ValueError says which field is wrong (the readers call it damaged)."""
        if self.business not in BUSINESSES:
            raise ValueError(f"business '{self.business}' is not one of {', '.join(BUSINESSES)}")
        bounds = []
        for name, text in (("data_start", self.data_start), ("data_end", self.data_end)):
            try:
                bound = pd.Timestamp(text)
            except (ValueError, TypeError):
                bound = pd.NaT
            if pd.isna(bound) or bound.tzinfo is None:
                raise ValueError(f"{name} '{text}' is not an ISO time in UTC such as 2024-01-01T00:00:00+00:00")
            bounds.append(bound)
        if not bounds[0] < bounds[1]:
            raise ValueError(f"data_end {self.data_end} is not after data_start {self.data_start}")
        if not isinstance(self.tables, list) or not all(isinstance(t, str) for t in self.tables):
            raise ValueError("tables is not a list of table names")

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

    @property
    def marker_path(self) -> Path:
        return self.root / MARKER_NAME

    def is_marked(self) -> bool:
        return self.marker_path.is_file()

    def _made_by_an_earlier_clm(self) -> bool:
        """A folder without the marker that clm filled before markers existed: its raw data's
        manifest is clm's (source, business and data bounds)."""
        try:
            return bool(self.read_manifest().business)
        except (ClmError, OSError):
            return False

    def _foreign_entries(self) -> list[str]:
        """What stops an unmarked folder from becoming a workspace: anything clm did not
        name, and clm's folder names holding something (e.g. a project's `features/`)."""
        foreign = []
        for entry in sorted(self.root.iterdir()):
            if not is_clm_name(entry.name):
                foreign.append(entry.name)
            elif entry.name in BUSINESS_FOLDERS and (not entry.is_dir() or any(entry.iterdir())):
                foreign.append(f"{entry.name}/")
        return foreign

    def claim(self) -> Path | None:
        """Make sure the folder is a clm workspace before anything is written to it: a
        missing folder is created, and it, an empty folder or one an earlier clm filled get
        the marker; any other folder is refused, with nothing written. Returns what this
        call made (the folder, or the marker in a folder that was there), None if nothing."""
        if self.is_marked():
            return None
        self.check_ours()
        created = not self.root.exists()
        marker = {"clm_workspace": 1, "marked_at": f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%dT%H:%M:%SZ}"}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_text_atomically(self.marker_path, json.dumps(marker) + "\n")
        except OSError as err:
            raise ClmError(f"Cannot write to workspace '{self.root}': {err.strerror}. Choose a folder you can "
                           "write to with --workspace.") from None
        return self.root if created else self.marker_path

    def check_ours(self) -> None:
        """Refuse a folder clm may not write to: one that holds files clm did not make and
        is not marked as a workspace (nor filled by an earlier clm). Writes nothing."""
        if self.root.is_symlink() and not self.root.exists():
            raise ClmError(f"Workspace '{self.root}' is a symbolic link to nowhere (a missing folder, or a loop): "
                           "choose another --workspace.")
        if self.root.exists() and not self.root.is_dir():
            raise ClmError(f"Workspace '{self.root}' is a file, not a folder: choose another --workspace.")
        outer = workspace_holding(self.root.parent)
        if outer is not None:
            inside = Path(os.path.abspath(self.root)).relative_to(outer).parts
            if is_clm_name(inside[0]):
                raise ClmError(f"Workspace '{self.root}' would lie inside workspace '{outer}' (its folder {inside[0]}/), "
                               "where clm keeps that workspace's data and would remove it with a --replace. Choose "
                               "a folder outside it.")
        if not self.root.exists() or self.is_marked():
            return
        foreign = self._foreign_entries()
        if foreign and not self._made_by_an_earlier_clm():
            shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
            raise ClmError(
                f"'{self.root}' is not a clm workspace: it holds files clm did not make ({shown}), and clm "
                f"writes only into a folder it made (marked by a {MARKER_NAME} file). Choose a new or empty "
                "folder with --workspace, e.g. `-w ./workspace`."
            )

    def check_folders(self) -> None:
        """The workspace's own folders must be folders it made: a file or a link in their
        place (to somewhere else's data) is refused, never written through or removed."""
        for name in BUSINESS_FOLDERS:
            path = self.root / name
            if path.is_symlink() or path.exists() and not path.is_dir():
                kind = "a symbolic link" if path.is_symlink() else "a file"
                raise ClmError(f"{path} is {kind}, not a folder clm made: clm keeps its {name} there. Move it "
                               "away, or choose another --workspace.")

    def require_existing(self) -> None:
        """A command that only reads: the folder must be there and be a workspace (nothing
        is created)."""
        if self.root.is_dir() and not self.is_marked() and not self._made_by_an_earlier_clm():
            raise ClmError(f"'{self.root}' is not a clm workspace (it has no {MARKER_NAME} file nor raw data of "
                           "clm's): name one with --workspace, e.g. `-w ./workspace`.")
        if not self.root.is_dir():
            raise ClmError(f"No workspace at '{self.root}'. Create one with `clm run`, `clm simulate --workspace "
                           f"{self.root}` or `clm ingest transactions FILE --workspace {self.root} ...`, or name an "
                           "existing one with --workspace.")

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
        made = self.claim()
        self.check_folders()
        path = self.root / LOCK_NAME
        new_lock = not path.exists()
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
                if made is not None and new_lock and {p.name for p in self.root.iterdir()} <= {LOCK_NAME, MARKER_NAME}:
                    self._unmake(made)

    def _unmake(self, made: Path) -> None:
        """Undo `claim` for a command that wrote nothing: the folder it made, or the marker
        (and the lock) it added to a folder that was there."""
        if made == self.root:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            made.unlink(missing_ok=True)
            (self.root / LOCK_NAME).unlink(missing_ok=True)

    def business_folders(self) -> list[Path]:
        """The folders holding one business's data and what was made from it, non-empty ones:
        raw data, feature snapshots, the Feast repo and the MLflow store."""
        return [f for f in (self.root / name for name in BUSINESS_FOLDERS) if f.is_dir() and any(f.iterdir())]

    def check_new_business(self, replace: bool) -> None:
        """A workspace holds one business. Writing another into it would mix the two (the
        old features and models would score the new customers): refused unless replace.
        A folder that is not a clm workspace is refused whatever replace says (`claim`)."""
        self.check_ours()
        self.check_folders()
        held = self.business_folders()
        if not held:
            return
        if not replace:
            raise ClmError(
                f"Workspace '{self.root}' already holds {self.describe()} ({', '.join(f.name for f in held)}). "
                "Writing another business into it would mix the two. Pass --replace to start it over (its "
                f"folders {', '.join(BUSINESS_FOLDERS)} are removed once the new data is complete), or choose "
                "another --workspace."
            )
        others = foreign_files(self.root)
        if others:
            shown = ", ".join(others[:6]) + (f" and {len(others) - 6} more" if len(others) > 6 else "")
            raise ClmError(
                f"Workspace '{self.root}' holds files clm did not make in its own folders ({shown}): --replace "
                "would remove them with the old business. Move them out of the workspace's folders first (the "
                "workspace folder itself is fine), then run again."
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
    def writing_raw(self, replace: bool = False, same_business: bool = False) -> Iterator[Path]:
        """Yield a fresh staging folder; on success it becomes raw/ by a rename.

        A workspace already holding a business is refused unless replace (see
        `check_new_business`); with it, the old business's folders are retired only once
        the new raw data is complete, raw/ first, so that no command ever reads the new raw
        data beside old features or models. same_business: the business already there gains
        or replaces tables of its own (`clm ingest`): only raw/ is swapped, and what was made
        from it stays (feature snapshots are rebuilt from the new raw data, the models are
        the business's). On any error the staging folder is removed and the workspace is
        untouched.
        """
        if not same_business:
            self.check_new_business(replace)
        self.claim()
        self._remove_abandoned_staging()
        staging = self.root / f".raw-staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        retired = self.root / f".raw-retired-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with interrupts_held():  # several renames: a Ctrl-C or `kill` between them would leave no raw/
            retired.mkdir()
            for name in ("raw",) if same_business else BUSINESS_FOLDERS:  # raw first: without it every command stops
                if (self.root / name).exists():
                    (self.root / name).rename(retired / name)
            staging.rename(self.raw_dir)
        shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """A Ctrl-C or `kill` (SIGINT, SIGTERM) that comes during the block takes effect once
    it is done: for a few renames that must happen all or none. Their handlers run in the
    main thread, so a block elsewhere is not held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        if pending:
            os.kill(os.getpid(), pending[0])  # now, to the handler it was meant for


def workspace_holding(path: Path) -> Path | None:
    """The workspace folder that `path` lies in (or is), if any: the nearest folder above
    it marked as a workspace, or filled by an earlier clm (its raw data's manifest)."""
    target = Path(os.path.abspath(path))
    for folder in (target, *target.parents):
        if (folder / MARKER_NAME).is_file() or (folder / "raw" / MANIFEST_NAME).is_file():
            return folder
    return None


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


def notebook_workspace(folder: Path | None = None) -> Workspace:
    """The workspace a notebook reads: $CLM_WORKSPACE, else ./workspace, as every command.
    A relative path is looked for in the notebook's folder (where Jupyter starts its
    kernel: `notebooks/`), then in that folder's parent, the clone's root, where the
    README's `clm run` writes it; not found in either, a ClmError says where it looked."""
    path = resolve_workspace(None)
    if path.is_absolute():
        return Workspace.at(path)
    here = folder or Path.cwd()
    for base in (here, here.parent):
        if (base / path / "raw" / MANIFEST_NAME).is_file():
            return Workspace.at(base / path)
    raise ClmError(f"No workspace with data at {here / path} nor at {here.parent / path}: run the README's first "
                   f"command in the clone's root (it writes ./workspace), or set {WORKSPACE_ENV} to a workspace's "
                   "folder (absolute, or relative to the clone's root).")
