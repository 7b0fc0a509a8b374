"""What clm writes in a workspace: its folders, and in each the files it makes.

The one place that says which files are clm's. A replacement (`--replace`) or a rebuild
(every snapshot after the raw data changed) removes only these; a file of anyone else's
found in clm's folders (notes, a CSV, another tool's output) is never removed: a command
that would have to is refused, naming it, so that its owner can move it out first.
"""
from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

# One business's data and everything made from it, in the order a replacement retires them.
BUSINESS_FOLDERS = ("raw", "features", "feature_repo", "mlflow", "decisions", "scores", "reports", "privacy")

# What clm writes in each folder: fnmatch patterns on the path relative to the folder
# ('*' also matches '/'). Files whose name starts with '.' (clm's temporary files, being
# written or left by a killed command) are clm's in every folder.
CLM_FILES: dict[str, tuple[str, ...]] = {
    "raw": ("*.parquet", "_manifest.json", "_validated.json"),
    # A date's snapshot is a file (DuckDB) or a folder of part files (Spark).
    "features": ("_build.json", "*/????-??-??.parquet", "*/????-??-??.parquet/*", "*/????-??-??.parquet.tmp",
                 ".spark-tmp/*"),
    "feature_repo": ("feature_store.yaml", "registry.db", "online.db", "online.db-*"),
    "mlflow": ("mlflow.db", "mlflow.db-*", "artifacts/*"),
    "decisions": ("batch-????-??-??.parquet", "feedback/*.parquet"),
    "scores": ("????-??-??.parquet/*",),
    "reports": ("report.html",),
    "privacy": ("erased.json", "key"),  # `clm.privacy`: the erasure record and its key
}


def is_clm_file(folder: str, relative: str) -> bool:
    """Whether a file at `relative` (a POSIX path inside the workspace folder `folder`) is one clm writes."""
    if Path(relative).name.startswith("."):
        return True
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in CLM_FILES[folder])


def foreign_files(root: Path, folders: tuple[str, ...] = BUSINESS_FOLDERS) -> list[str]:
    """Files in a workspace's own folders that clm does not write (paths relative to the
    workspace); links are not followed."""
    found = []
    for name in folders:
        folder = root / name
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in sorted(folder.rglob("*")):
            if (path.is_file() or path.is_symlink()) and not is_clm_file(name, path.relative_to(folder).as_posix()):
                found.append(path.relative_to(root).as_posix())
    return found


def remove_clm_files(root: Path, name: str) -> None:
    """Remove what clm wrote in the workspace folder `name` (and folders left empty), and
    nothing else: anyone else's files stay where they are."""
    folder = root / name
    for path in sorted(folder.rglob("*"), reverse=True):  # deepest first: folders after their files
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink() or path.is_file():
            if is_clm_file(name, relative):
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder)
