"""Where the nightly batch's outputs live and how to read them (without loading the batch's
own machinery): WORKSPACE/scores/DATE.parquet, each a Parquet dataset folder whose
`_manifest.json` says its as-of date, models, counts and decisions. `clm run` and `clm
retrain` write there; `clm monitor` and `clm report` read there."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clm.workspace import Workspace

MANIFEST_NAME = "_manifest.json"


def scores_dir(workspace: Workspace) -> Path:
    return workspace.root / "scores"


def scores_path(workspace: Workspace, when: pd.Timestamp) -> Path:
    """The batch output for a date."""
    return scores_dir(workspace) / f"{when:%Y-%m-%d}.parquet"


def read_manifest(out: Path) -> dict[str, Any] | None:
    """A finished batch output's manifest, or None (no output there, or not one of ours)."""
    try:
        return json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


# What every batch output's manifest holds (and another folder's `_manifest.json`, such
# as raw data's, does not): how an earlier output is told from anything else.
BATCH_KEYS = ("as_of", "models", "input_fingerprint", "columns")


def is_batch_output(path: Path) -> bool:
    """Whether `path` is a batch output (a folder whose manifest is a batch's): clm's, to replace."""
    manifest = read_manifest(path) if path.is_dir() else None
    return isinstance(manifest, dict) and all(key in manifest for key in BATCH_KEYS)


def is_whole_batch(path: Path) -> bool:
    """Whether `path` is a batch output whose part files are whole (their footers read)."""
    if not is_batch_output(path):
        return False
    parts = sorted(path.glob("part-*.parquet"))
    try:
        for part in parts:
            pq.read_metadata(part)
    except (OSError, pa.ArrowException):
        return False
    return bool(parts)


def delivered_outputs(workspace: Workspace) -> dict[pd.Timestamp, Path]:
    """Batch outputs in WORKSPACE/scores/ by their as-of date (from each one's manifest)."""
    found = {}
    for path in sorted(scores_dir(workspace).glob("*.parquet")):
        manifest = read_manifest(path) if is_whole_batch(path) else None
        if manifest is not None:  # a whole batch has its manifest
            found[pd.Timestamp(str(manifest["as_of"]), tz="UTC")] = path
    return found


def damaged_outputs(workspace: Workspace) -> list[str]:
    """A note for each folder in WORKSPACE/scores/ that is no finished batch output (its
    manifest missing or damaged): the readers leave it out, and say so."""
    return [f"{p} is not a finished nightly batch (its {MANIFEST_NAME} or a part file is missing or damaged): left "
            "out. Run `clm retrain` (or `clm score` with that --out) again to make it whole."
            for p in sorted(scores_dir(workspace).glob("*.parquet")) if p.is_dir() and not is_whole_batch(p)]
