"""The candidates a model is chosen from, the rule that chooses, and the version that ships.

Every model has two candidates, LightGBM and its scikit-learn baseline. The churn model of
a transactions-only workspace has four more (`btyd_candidates`): BG/NBD and Pareto/NBD
(their probability of no purchase within the horizon), the stack (LightGBM on the
features and BG/NBD's outputs at each cutoff) and the blend of all the others
(`training.blend`: weights fitted on the validation window, refitted on the latest).

Each candidate is fitted on the training cutoffs (a BTYD model: on the purchases before
the cutoff it scores), calibrated on the validation window and judged on the test window,
the latest whose outcomes are complete: that is how it would have done one window ahead.

`choose` picks the candidate that ships, on the latest window: the first in PREFERENCE
order (the fewest fitted parameters first: Pareto/NBD, BG/NBD, the blend, the stack,
LightGBM, the baseline) that is not significantly worse than the best there (a paired
bootstrap of the gate's metric), among those the gate would find calibrated once
recalibrated, when any is. The latest window, not the validation window: a base drifts
(customers age, cohorts thin out), the window nearest the scoring date says most about
it, and the validation window flatters LightGBM, whose trees stopped and were calibrated
on it. A paired test, not the best figure alone: on one window of a few thousand
customers the candidates' order within a few thousandths of AUC is noise (README: on a
few hundred customers the classic models ship, on CDNOW's 23,570 the blend).

`shipped` is a candidate brought up to date: LightGBM, the stack and the baseline fitted
again on the training and validation windows (LightGBM with the trees early stopping
chose), BG/NBD or Pareto/NBD (and the stack's BG/NBD) refitted on every purchase before
as_of, and each recalibrated on the latest window (Platt keeps its ranking).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from training import btyd
from training import evaluate as ev
from training.blend import BlendModel, fit_blend
from training.btyd_models import (
    BTYD_KINDS,
    FIT_ERRORS,
    HISTORY_FEATURES,
    STACK_COLUMNS,
    BtydEstimator,
    BtydModel,
    StackModel,
    fit_estimator,
    stack_columns,
)
from training.evaluate import GATE_METRIC
from training.models import (
    BINARY,
    MULTICLASS,
    TrainedModel,
    calibrated,
    fit_baseline,
    fit_lightgbm,
    refit_lightgbm,
)

CANDIDATE_KINDS = ("lightgbm", "baseline", "bgnbd", "pareto_nbd", "stack", "blend")
PREFERENCE = ("pareto_nbd", "bgnbd", "blend", "stack", "lightgbm", "baseline")
BOOTSTRAP_DRAWS = 200
SIGNIFICANT = 0.95  # share of resamples in which the best must beat a preferred candidate


@dataclass
class BtydCandidates:
    """The BTYD candidates and the stack, judged as the module's docstring says, and the
    BTYD models refitted as of the training date that their shipped versions use."""

    judged: dict[str, TrainedModel] = field(default_factory=dict)
    at_as_of: dict[str, BtydEstimator] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The BTYD models as fitted at the validation cutoff: what scores the validation window
    # (the judged ones were fitted at the test cutoff, on purchases inside its label window).
    on_valid: dict[str, TrainedModel] = field(default_factory=dict)


def figures(model: TrainedModel, frame: pd.DataFrame) -> dict[str, float]:
    """The model's figures on frame (binary, multiclass or regression metrics)."""
    y = frame[model.spec.label].to_numpy()
    if model.spec.task == BINARY:
        return ev.binary_metrics(y, model.predict(frame))
    if model.spec.task == MULTICLASS:
        return ev.multiclass_metrics(y.astype(str), model.predict(frame), model.classes)
    return ev.regression_metrics(y, model.predict(frame))


def _estimators(transactions: pd.DataFrame, kind: str, cutoffs: list[pd.Timestamp],
                horizon: int) -> dict[pd.Timestamp, BtydEstimator]:
    return {c: fit_estimator(kind, btyd.rfm_summary(transactions, c), horizon) for c in cutoffs}


def btyd_candidates(
    transactions: pd.DataFrame, parts: dict[str, pd.DataFrame], features: list[str],
    cutoffs: dict[str, list[pd.Timestamp]], as_of: pd.Timestamp, horizon: int, lgbm: TrainedModel,
) -> BtydCandidates:
    """BG/NBD, Pareto/NBD and the stack for a churn model (see the module's docstring).
    cutoffs: the split's train, valid and test cutoffs. A model that cannot be fitted
    (no convergence on a small or odd base) is left out and said so in `notes`."""
    out = BtydCandidates()
    spec = lgbm.spec
    valid = parts["valid"]
    (valid_cutoff,), (test_cutoff,) = cutoffs["valid"], cutoffs["test"]
    for kind in BTYD_KINDS:
        try:
            fitted = _estimators(transactions, kind, [valid_cutoff, test_cutoff, as_of], horizon)
        except FIT_ERRORS as err:
            out.notes.append(f"{kind} not fitted ({type(err).__name__})")
            continue
        raw_valid = BtydModel(spec, HISTORY_FEATURES, {}, fitted[valid_cutoff], kind=kind)
        judged = BtydModel(spec, HISTORY_FEATURES, {}, fitted[test_cutoff], kind=kind)
        if not (np.isfinite(raw_valid.raw_scores(valid)).all() and np.isfinite(judged.raw_scores(parts["test"])).all()):
            out.notes.append(f"{kind} left out: its probabilities are not all finite on this base")
            continue
        on_valid = calibrated(raw_valid, valid)
        out.on_valid[kind] = on_valid
        out.judged[kind] = replace(judged, calibrator=on_valid.calibrator)
        out.at_as_of[kind] = fitted[as_of]
    if "bgnbd" in out.at_as_of:
        try:
            out.judged["stack"] = fit_stack(transactions, parts, features, cutoffs, horizon, lgbm, out.judged["bgnbd"])
        except FIT_ERRORS as err:  # BG/NBD on the few customers of an early cutoff
            out.notes.append(f"stack not fitted (BG/NBD at a training cutoff: {type(err).__name__})")
    return out


def with_blend(candidates: dict[str, TrainedModel], valid: pd.DataFrame,
               on_valid: dict[str, TrainedModel]) -> dict[str, TrainedModel]:
    """candidates and, for binary models with more than the two default candidates, the
    blend of them all: its weights fitted on the validation window, scored there by each
    part as of the validation cutoff (`on_valid`: a BTYD model fitted then), then the parts
    as judged on the test window."""
    first = next(iter(candidates.values()))
    if first.spec.task != BINARY or len(candidates) <= 2:
        return candidates
    weighed = fit_blend({kind: on_valid.get(kind, model) for kind, model in candidates.items()}, valid)
    return {**candidates, "blend": replace(weighed, parts=dict(candidates))}


def fit_stack(
    transactions: pd.DataFrame, parts: dict[str, pd.DataFrame], features: list[str],
    cutoffs: dict[str, list[pd.Timestamp]], horizon: int, lgbm: TrainedModel, bgnbd_on_test: TrainedModel,
) -> StackModel:
    """LightGBM on the features and BG/NBD's outputs, each row's from BG/NBD fitted on the
    purchases before its own cutoff (never after: those are the labels)."""
    train_cutoffs = sorted(set(cutoffs["train"]))
    fitted = _estimators(transactions, "bgnbd", train_cutoffs + cutoffs["valid"], horizon)
    assert isinstance(bgnbd_on_test.estimator, BtydEstimator)
    fitted[cutoffs["test"][0]] = bgnbd_on_test.estimator

    def with_outputs(frame: pd.DataFrame) -> pd.DataFrame:
        pieces = [stack_columns(fitted[c], rows) for c, rows in frame.groupby("event_timestamp", sort=False)]
        return pd.concat([frame, pd.concat(pieces).reindex(frame.index)], axis=1)

    for name in ("train", "valid", "test"):
        parts[name] = with_outputs(parts[name].drop(columns=STACK_COLUMNS, errors="ignore"))
    model = fit_lightgbm(lgbm.spec, parts["train"], parts["valid"], [*features, *STACK_COLUMNS])
    reads = list(dict.fromkeys([*features, *HISTORY_FEATURES]))  # the features it reads: BG/NBD's too
    return StackModel(lgbm.spec, reads, model.categories, model.estimator, model.calibrator, model.classes,
                      kind="stack", btyd=bgnbd_on_test.estimator, learner_features=list(features))


def passes_calibration(model: TrainedModel, frame: pd.DataFrame, bound: Callable[[np.ndarray], float]) -> bool:
    """Whether a binary model, recalibrated on frame (as it ships, and as the gate judges
    it), has an ECE there within bound(its predictions); other tasks: True."""
    if model.spec.task != BINARY:
        return True
    p = calibrated(model, frame).predict(frame)
    return ev.expected_calibration_error(frame[model.spec.label].to_numpy(), p) <= bound(p)


def choose(candidates: dict[str, TrainedModel], latest: pd.DataFrame,
           ece_bound: Callable[[np.ndarray], float] | None = None, seed: int = 0) -> str:
    """The kind that ships (see the module's docstring): among the candidates with a finite
    figure on the latest window `latest` (and, binary models, an ECE there within
    ece_bound(predictions), when any has), the first in PREFERENCE order that the best
    does not beat in SIGNIFICANT of BOOTSTRAP_DRAWS paired resamples of the window."""
    first = next(iter(candidates.values()))
    task, label = first.spec.task, first.spec.label
    _, direction = GATE_METRIC[task]
    y = latest[label].to_numpy()
    predictions = {kind: model.predict(latest) for kind, model in candidates.items()}

    def figure(kind: str, rows: np.ndarray | slice = slice(None)) -> float:
        return direction * ev.gate_figure(task, y[rows], predictions[kind][rows], candidates[kind].classes)

    usable = [k for k in candidates if np.isfinite(predictions[k]).all() and np.isfinite(figure(k))]
    if ece_bound is not None:
        usable = [k for k in usable if passes_calibration(candidates[k], latest, ece_bound)] or usable
    if not usable:
        return next(iter(candidates))
    best = max(usable, key=figure)
    draws = np.random.default_rng(seed).integers(0, len(y), size=(BOOTSTRAP_DRAWS, len(y)))
    best_on_draws: np.ndarray | None = None  # computed once, when a preferred candidate needs it
    for kind in sorted(usable, key=lambda k: PREFERENCE.index(k) if k in PREFERENCE else len(PREFERENCE)):
        if kind == best:
            return kind
        if best_on_draws is None:
            best_on_draws = np.array([figure(best, rows) for rows in draws])
        gaps = best_on_draws - np.array([figure(kind, rows) for rows in draws])
        gaps = gaps[np.isfinite(gaps)]
        if not len(gaps) or np.mean(gaps > 0) < SIGNIFICANT:
            return kind
    return best


def shipped(model: TrainedModel, parts: dict[str, pd.DataFrame], at_as_of: dict[str, BtydEstimator]) -> TrainedModel:
    """A candidate brought up to date (see the module's docstring). parts: the train, valid
    and test rows it was fitted, calibrated and judged on."""
    if isinstance(model, BtydModel):
        return replace(calibrated(model, parts["test"]), estimator=at_as_of[model.kind])
    if isinstance(model, BlendModel):
        return fit_blend({k: shipped(part, parts, at_as_of) for k, part in model.parts.items()}, parts["test"])
    if model.kind == "baseline":
        again = fit_baseline(model.spec, pd.concat([parts["train"], parts["valid"]], ignore_index=True), model.features)
    else:
        again = refit_lightgbm(model, [parts["train"], parts["valid"]])
    ready = calibrated(again, parts["test"])
    if isinstance(ready, StackModel):
        return replace(ready, btyd=at_as_of["bgnbd"])
    return ready
