"""The one check of a path a user names for clm to write (`--out`, `--json`, `--html`),
made before any work, so that a mistake costs a sentence, not a finished run:

- not inside a workspace's own folders (`raw/`, `features/`, `mlflow/`, ...) nor the
  workspace folder itself: an output there would overwrite what clm keeps;
- a file output is not a folder, and replaces only a file clm wrote (its HTML pages and
  JSON reports carry clm's signature); a folder output (a Parquet dataset) replaces only
  an earlier output of the same kind, never another folder or file;
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
from clm.files import check_path_length
from clm.workspace import is_clm_name, workspace_holding

# How clm's own output files say so (a later run may replace them, and nothing else).
HTML_SIGNATURE = '<meta name="generator" content="clm">'
JSON_SIGNATURE = ("generator", "clm")  # the first key of a JSON report


def written_by_clm(path: Path) -> bool:
    """Whether the file at `path` is an HTML page or a JSON report that clm wrote."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    key, value = JSON_SIGNATURE
    return HTML_SIGNATURE.encode() in head or f'"{key}": "{value}"'.encode() in head


def check_output_file(path: Path | str, option: str) -> Path:
    """A file clm will write at `path`: nothing there yet, or a file clm wrote before
    (replaced). A path ending in '/' names a folder, not a file."""
    if str(path).endswith(os.sep):
        raise ClmError(f"{option} {path} names a folder; name a file in it, e.g. {Path(path) / _example_name(option)}.")
    path = Path(path)
    check_path_length(path, option)
    _refuse_inside_a_workspace(path, option)
    if path.is_dir():
        raise ClmError(f"Cannot write {option} {path}: it is a folder; name a file in it, e.g. "
                       f"{path / _example_name(option)}.")
    if (path.exists() or path.is_symlink()) and not written_by_clm(path):
        raise ClmError(f"{option} {path} already exists and is not a page or report clm wrote: clm replaces only "
                       "its own files. Name a new file, or move that one away.")
    _check_folder_writable(path, option)
    return path


def check_output_dataset(path: Path, option: str, is_earlier_output: Callable[[Path], bool], what: str) -> Path:
    """A folder clm will write at `path` (a dataset): nothing there yet, or an earlier
    output of the same kind (`is_earlier_output`, described as `what`), which it replaces."""
    check_path_length(path, option)
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

