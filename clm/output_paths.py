"""The one check of a path a user names for clm to write (`--out`, `--json`, `--html`),
made before any work, so that a mistake costs a sentence, not a finished run:

- not inside a workspace's own folders (`raw/`, `features/`, `mlflow/`, ...) nor the
  workspace folder itself: an output there would overwrite what clm keeps;
- a file output is not a folder; a folder output (a Parquet dataset) replaces only an
  earlier output of the same kind, never another folder or file;
- its folder exists or can be made, and can be written (tried, not assumed: permission
  bits say nothing to root, nor about a read-only file system).

The writers then write to a temporary name and rename (`clm.files`).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from clm.errors import ClmError
from clm.workspace import MANIFEST_NAME, MARKER_NAME, is_clm_name


def check_output_file(path: Path, option: str) -> Path:
    """A file clm will write at `path` (an earlier file there is replaced)."""
    _refuse_inside_a_workspace(path, option)
    if path.is_dir():
        raise ClmError(f"Cannot write {option} {path}: it is a folder; name a file in it, e.g. "
                       f"{path / _example_name(option)}.")
    _check_folder_writable(path, option)
    return path


def check_output_dataset(path: Path, option: str, is_earlier_output: Callable[[Path], bool], what: str) -> Path:
    """A folder clm will write at `path` (a dataset): nothing there yet, or an earlier
    output of the same kind (`is_earlier_output`, described as `what`), which it replaces."""
    _refuse_inside_a_workspace(path, option)
    if path.is_dir() and not is_earlier_output(path):
        raise ClmError(f"{option} {path} is a folder that holds no earlier {what}: clm replaces only its own "
                       f"output. Name a new path in it, e.g. {path / 'scores.parquet'}.")
    if path.exists() and not path.is_dir() or path.is_symlink():
        raise ClmError(f"{option} {path} is a file that is not an earlier {what} (which is a folder): clm does not "
                       "replace it. Name a new path, or move the file away.")
    _check_folder_writable(path, option)
    return path


def _example_name(option: str) -> str:
    return {"--json": "report.json", "--html": "monitor.html"}.get(option, "report.html")


def workspace_holding(path: Path) -> Path | None:
    """The workspace folder that `path` lies in (or is), if any: the nearest folder above
    it marked as a workspace, or filled by an earlier clm (its raw data's manifest)."""
    target = Path(os.path.abspath(path))
    for folder in (target, *target.parents):
        if (folder / MARKER_NAME).is_file() or (folder / "raw" / MANIFEST_NAME).is_file():
            return folder
    return None


def _refuse_inside_a_workspace(path: Path, option: str) -> None:
    root = workspace_holding(path)
    if root is None:
        return
    inside = Path(os.path.abspath(path)).relative_to(root).parts
    if inside and not is_clm_name(inside[0]):
        return  # beside clm's folders, e.g. WORKSPACE/my-scores.parquet
    where = f"its folder {inside[0]}/" if inside else "the workspace folder itself"
    raise ClmError(f"{option} {path} is {where} of workspace '{root}', where clm keeps its own data: writing there "
                   f"could overwrite it. Name a path outside the workspace's folders, e.g. "
                   f"{root.parent / (path.name if inside else 'scores.parquet')}.")


def _check_folder_writable(path: Path, option: str) -> None:
    """The folder of `path` exists and takes a new file, or the nearest existing folder
    above it can hold the folders to make."""
    existing = Path(os.path.abspath(path)).parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ClmError(f"Cannot create the folder of {option} {path}: {existing} is a file, not a folder.")
    probe = existing / f".clm-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as err:
        raise ClmError(f"Cannot write {option} {path}: {existing} does not take new files ({err.strerror}). Name "
                       "a path in a folder you can write to.") from None

