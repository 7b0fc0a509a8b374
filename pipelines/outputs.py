"""Where the nightly batch's outputs live and how to read them (without loading the batch's
own machinery): WORKSPACE/scores/DATE.parquet, each a Parquet dataset folder whose
`_manifest.json` says its as-of date, models, counts and decisions. `clm run` and `clm
retrain` write there; `clm monitor` and `clm report` read there."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clm.workspace import Workspace

MANIFEST_NAME = "_manifest.json"


def scores_dir(workspace: Workspace) -> Path:
    return workspace.root / "scores"


def scores_path(workspace: Workspace, when: pd.Timestamp) -> Path:
    """The batch output for a date."""
    return scores_dir(workspace) / f"{when:%Y-%m-%d}.parquet"


def read_manifest(out: Path) -> dict[str, object] | None:
    """A finished batch output's manifest, or None (no output there, or not one of ours)."""
    try:
        return json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def delivered_outputs(workspace: Workspace) -> dict[pd.Timestamp, Path]:
    """Batch outputs in WORKSPACE/scores/ by their as-of date (from each one's manifest)."""
    found = {}
    for path in sorted(scores_dir(workspace).glob("*.parquet")):
        manifest = read_manifest(path) if path.is_dir() else None
        if manifest is not None and "as_of" in manifest:
            found[pd.Timestamp(str(manifest["as_of"]), tz="UTC")] = path
    return found
