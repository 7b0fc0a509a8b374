"""What a model learns from: the time window of a training session and, at every cutoff
of it, the point-in-time features (Feast) and labels (shared by `training.train`,
`training.train_uplift` and the backtest)."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from clm.stages import STAGE_FEATURES, current_stage
from clm.workspace import Workspace
from features.build import build_features
from features.feast_repo import MODEL_GROUPS
from features.store import apply as apply_features
from features.store import ENTITY_KEYS, historical_features
from training.config import TrainConfig
from training.labels import (
    Split,
    candidate_cutoffs,
    outcome_labels,
    split_with_longest_window,
    stage_labels,
    time_split,
)

KEYS = ENTITY_KEYS
# Features that are not inputs of the learners: the BTYD models' summary of a history
# (`training.btyd_models.history_summary`), which for LightGBM only repeats frequency_total.
NOT_LEARNER_INPUTS = ("purchase_days_total",)


def feature_names(frame: pd.DataFrame) -> list[str]:
    """The learners' inputs: every feature column but NOT_LEARNER_INPUTS."""
    return [c for c in frame.columns
            if c not in (*KEYS, "churn", "upsell", "clv", "stage", "current_stage", *NOT_LEARNER_INPUTS)]


def with_labels(features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The label columns added to features (`historical_features`: sorted by KEYS) row for
    row: the same (customer_id, event_timestamp) rows in the same order, one each; fixed
    order makes training reproducible. (A merge would copy the whole frame.)"""
    labels = labels.sort_values(KEYS, kind="stable", ignore_index=True)
    if len(labels) != len(features) or labels.duplicated(KEYS).any() or not all(
            _key_values(features, k).equals(_key_values(labels, k)) for k in KEYS):
        raise ValueError("features and labels are not the same (customer_id, event_timestamp) rows, "
                         "one each in the same order")
    for name in labels.columns.difference(KEYS, sort=False):
        features[name] = labels[name].array
    return features


def row_hashes(*frames: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (of several frames of the same rows: all their
    columns), the customer id left out: rows alike in all else are interchangeable,
    whatever their ids."""
    hashes = np.zeros(len(frames[0]), dtype=np.uint64)
    for frame in frames:
        for name in frame.columns:
            if name != "customer_id":
                column = pd.util.hash_pandas_object(frame[name], index=False).to_numpy()
                hashes = hashes * np.uint64(0x100000001B3) ^ column  # wraps around: any 64 bits do
    return hashes


def id_free_order(frame: pd.DataFrame) -> np.ndarray:
    """The rows' positions in an order that does not depend on the customer ids: by
    event_timestamp, then by `row_hashes`. What a learner draws by position (a bagging
    fraction, a bootstrap) is then the same whatever the ids: a workspace ingested with
    pseudonymised ids learns the same models as the plain one."""
    times = pd.DatetimeIndex(frame["event_timestamp"]).asi8
    return np.lexsort((row_hashes(frame), times))


def in_id_free_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's rows in `id_free_order`."""
    return frame.take(id_free_order(frame)).reset_index(drop=True)


def split_parts(frame: pd.DataFrame, split: Split) -> dict[str, pd.DataFrame]:
    """The train, valid and test rows of a split, each in `id_free_order` (one hash and one
    sort of the whole frame, one copy of each part)."""
    order, times = id_free_order(frame), frame["event_timestamp"]
    masks = {"train": times.isin(split.train).to_numpy(), "valid": (times == split.valid).to_numpy(),
             "test": (times == split.test).to_numpy()}
    return {name: frame.take(order[mask[order]]).reset_index(drop=True) for name, mask in masks.items()}


def customer_folds(rows: pd.DataFrame, folds: int, purpose: str) -> np.ndarray:
    """A fold (0 .. folds - 1) for each row, all of a customer's rows in one, that does not
    depend on the ids: a customer's key is the sum of their rows' `row_hashes` (any order),
    and customers with the same key (alike in every row, so interchangeable) take the folds
    in turn. The key is mixed with `purpose` first, so that folds drawn for one purpose
    (e.g. cross-fitting) are independent of another's (the split that chose these rows).
    The one rule for cross-fitting and customer splits."""
    customer, customers = pd.factorize(rows["customer_id"])
    keys = np.zeros(len(customers), dtype=np.uint64)
    np.add.at(keys, customer, row_hashes(rows))  # wraps around
    salt = np.uint64(zlib.crc32(purpose.encode()))
    mixed = pd.util.hash_array(keys ^ salt)  # scrambles every bit: a fold is not the key's remainder
    turn = pd.Series(keys).groupby(keys, sort=False).cumcount().to_numpy()
    fold = (mixed % np.uint64(folds)).astype(np.int64) + turn
    return np.asarray(fold % folds, dtype=int)[customer]


def _key_values(frame: pd.DataFrame, key: str) -> pd.Index:
    """A key column's values, times as UTC nanoseconds (whatever unit each side stores)."""
    if key == "event_timestamp":
        return pd.DatetimeIndex(pd.to_datetime(frame[key], utc=True)).as_unit("ns")
    return pd.Index(frame[key])


def stages_at(workspace: Workspace, rows: pd.DataFrame, contractual: bool) -> pd.DataFrame:
    """The stage rules at each (customer_id, event_timestamp) row, from features then."""
    feats = historical_features(workspace, rows[KEYS].drop_duplicates(), "stage", only=STAGE_FEATURES)
    return feats[KEYS].assign(stage=current_stage(feats, contractual).to_numpy())


def prepare_frames(
    workspace: Workspace, model: str, split: Split, config: TrainConfig, contractual: bool,
    shared: dict[tuple, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Features (Feast, point in time) and labels for every cutoff of the split.

    shared: frames already retrieved in this training session, by (feature groups,
    cutoffs, label settings); models whose services have the same groups reuse one retrieval.
    """
    cutoffs = sorted(set(split.all))  # a split by customer has its validation and test at one cutoff
    key = (MODEL_GROUPS[model], tuple(cutoffs), config.labels)
    if shared is not None and key in shared:
        frame = shared[key]
    else:
        labels = outcome_labels(workspace, cutoffs, config.labels, contractual)
        frame = with_labels(historical_features(workspace, labels[KEYS], model), labels)
        if shared is not None:
            shared[key] = frame
    if model == "stage":  # the shared frame's columns and two of its own (not a copy of the whole)
        frame = frame.copy(deep=False)
        horizon = pd.Timedelta(days=config.labels.horizon_days)
        later = frame[KEYS].assign(event_timestamp=frame.event_timestamp + horizon)
        build_features(workspace, sorted(later.event_timestamp.unique()), raw_checked=True)
        apply_features(workspace)
        frame["stage"] = stage_labels(frame, stages_at(workspace, later, contractual), config.labels.horizon_days)
        frame["current_stage"] = current_stage(frame, contractual).to_numpy()
    return frame


def model_window(workspace: Workspace, model: str, config: TrainConfig, as_of: pd.Timestamp) -> tuple[Split, int]:
    """The time split and label window for a model trained as of as_of. The churn, upsell
    and stage horizon is the user's question and is never changed; CLV's year is a
    convention, shortened (down to LabelConfig.shortest_clv_days) where the history is too
    short for a split without overlap. Raises NotEnoughHistory otherwise."""
    manifest = workspace.read_manifest()
    if model == "clv":
        return split_with_longest_window(manifest, as_of, config.labels.clv_days, config.labels.shortest_clv_days)
    window = config.labels.horizon_days
    return time_split(candidate_cutoffs(manifest, as_of, window), window), window
