"""A training session's settings, what it reports per model, and the fingerprint of its
inputs (shared by `training.train` and `training.train_uplift`)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import pandas as pd

from clm.workspace import Workspace
from features.freshness import BUILD_STATE, inputs_fingerprint
from features.snapshots import features_dir
from training.labels import LabelConfig
from training.names import MODEL_NAMES


@dataclass(frozen=True)
class TrainConfig:
    models: tuple[str, ...] = MODEL_NAMES
    labels: LabelConfig = LabelConfig()
    as_of: pd.Timestamp | None = None
    tracking_uri: str | None = None
    margin: float | None = None
    command: str = "clm train"  # who promotes, in the audit trail
    skip_up_to_date: bool = False  # retrain: a model whose latest version was trained on these inputs is kept


@dataclass
class ModelReport:
    model: str
    trained: bool
    note: str = ""
    version: str | None = None
    promoted: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    oracle: dict[str, float] = field(default_factory=dict)
    btyd: dict[str, float] = field(default_factory=dict)  # non-contractual: buy-till-you-die baselines
    split: dict[str, object] = field(default_factory=dict)
    registered_kind: str = "lightgbm"  # the candidate chosen (`training.candidates.choose`)
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)  # each candidate's test figures
    applies: bool = True  # False: the model has no meaning for this business (upsell without plans)
    up_to_date: bool = False  # not trained again: its latest version was trained on the same inputs


def data_fingerprint(workspace: Workspace) -> str:
    state = features_dir(workspace) / BUILD_STATE
    return json.loads(state.read_text()).get("raw", "") if state.exists() else ""


INPUTS_TAG = "training_inputs"


def training_inputs(workspace: Workspace, config: TrainConfig, as_of: pd.Timestamp) -> str:
    """What a trained version is a function of: the raw data and the feature definitions,
    the date it is trained as of, and the label settings. Same inputs, same model."""
    key = f"{inputs_fingerprint(workspace)}|{as_of:%Y-%m-%d}|{config.labels!r}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]
