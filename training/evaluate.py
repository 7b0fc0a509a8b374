"""Evaluation: the figures each model is judged by, and the oracle's on the same rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
)

ECE_BINS = 10


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Equal-count bins of the predictions, lowest first: customers, mean prediction and
    observed rate per bin."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    rows = [(c.size, float(p[c].mean()), float(y[c].mean())) for c in np.array_split(order, bins) if c.size]
    return pd.DataFrame(rows, columns=["customers", "mean_predicted", "observed_rate"])


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |observed rate - mean prediction| over equal-count bins, weighted by size."""
    table = reliability_table(y, p, bins)
    gaps = (table.observed_rate - table.mean_predicted).abs()
    return float((table.customers * gaps).sum() / table.customers.sum())


def chance_ece(p: np.ndarray, bins: int = ECE_BINS) -> float:
    """The ECE a perfectly calibrated model with these predictions shows by chance alone, in
    expectation: in each of the equal-count bins `expected_calibration_error` uses, the
    observed rate is a mean of Bernoulli(p) outcomes, which misses the bin's mean
    prediction by sqrt(2 / pi) standard deviations on average (normal approximation)."""
    p = np.sort(np.asarray(p, dtype=float))
    if not len(p):
        return 0.0
    parts = [b for b in np.array_split(p, min(bins, len(p))) if len(b)]
    return float(sum(len(b) / len(p) * np.sqrt(2 / np.pi) * np.sqrt(np.sum(b * (1 - b))) / len(b) for b in parts))


def top_decile(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(lift, capture) of the 10% with the highest scores. Scores tied at the 10% boundary
    share its places (each counts for the share of them that fits): the figure does not
    depend on the rows' order."""
    k = max(1, int(round(0.1 * len(p))))
    boundary = np.sort(p)[len(p) - k]
    above, tied = p > boundary, p == boundary
    positives = y[above].sum() + (k - above.sum()) * y[tied].mean()  # tied holds the boundary: never empty
    base = y.mean()
    lift = float(positives / k / base) if base > 0 else float("nan")
    capture = float(positives / y.sum()) if y.sum() > 0 else float("nan")
    return lift, capture


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    lift, capture = top_decile(y, p)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": lift,
        "capture_top_decile": capture,
        "positive_rate": float(y.mean()),
    }


def multiclass_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Macro-F1, log loss and accuracy. A class in y that the model never saw in training
    (a rare stage in a small base) counts: it gets probability 0 (clipped), and its F1 is 0."""
    predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    labels = sorted(set(classes) | set(np.asarray(y, dtype=str)))  # log_loss reads columns in sorted order
    full = np.zeros((len(proba), len(labels)))
    full[:, [labels.index(c) for c in classes]] = proba
    clipped = np.clip(full, 1e-9, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return {
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=labels, zero_division=0.0)),
        "log_loss": float(log_loss(y, clipped, labels=labels)),
        "accuracy": float((predicted == y).mean()),
    }


# Which figure chooses a candidate and gates a version, and which way is better, per task.
# CLV by its ranking (Spearman): its error in money (MAE) rewards predicting nothing for a
# base where most customers spend nothing in the window (on CDNOW a ridge regression that
# ranked no one, Spearman 0.02, had the better MAE on the latest window).
GATE_METRIC = {"binary": ("roc_auc", +1), "multiclass": ("macro_f1", +1), "regression": ("spearman", +1)}


def gate_figure(task: str, y: np.ndarray, p: np.ndarray, classes: list[str]) -> float:
    """The one figure a task's candidates are chosen and gated by, alone (fast, for resampling):
    ROC AUC (binary), macro-F1 (multiclass, as `multiclass_metrics`), Spearman (regression, as
    `regression_metrics`); NaN where it is undefined (one outcome only, a constant prediction)."""
    if task == "binary":
        return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    if task == "multiclass":
        y = np.asarray(y, dtype=str)
        labels = sorted(set(classes) | set(y))
        return float(f1_score(y, np.asarray(classes)[np.argmax(p, axis=1)], average="macro", labels=labels,
                              zero_division=0.0))
    return regression_metrics(y, p)["spearman"]


def stays_the_same_f1(y: np.ndarray, current: np.ndarray, classes: list[str]) -> float:
    """Macro-F1 of the baseline 'the stage stays what it is now'."""
    return float(f1_score(y, current, average="macro", labels=classes, zero_division=0.0))


def stage_confusion(y: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(confusion_matrix(y, predicted, labels=classes), index=classes, columns=classes)


def gini(y: np.ndarray, v: np.ndarray) -> float:
    """Normalised Gini of a value ranking: 1 = perfect, 0 = random."""
    def raw(order_by: np.ndarray) -> float:
        order = np.argsort(-order_by, kind="stable")
        cum = np.cumsum(y[order]) / max(y.sum(), 1e-12)
        return float(cum.mean() - (len(y) + 1) / (2 * len(y)))

    best = raw(y)
    return raw(v) / best if best else float("nan")


def regression_metrics(y: np.ndarray, v: np.ndarray) -> dict[str, float]:
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    return {
        "mae": float(mean_absolute_error(y, v)),
        # Undefined (NaN) when either side is constant, e.g. a model that predicts one value.
        "spearman": float(spearmanr(y, v).statistic) if np.ptp(y) > 0 and np.ptp(v) > 0 else float("nan"),
        "gini": gini(y, v),
        "mean_actual": float(y.mean()),
        "mean_predicted": float(v.mean()),
    }


def decile_table(y: np.ndarray, v: np.ndarray) -> pd.DataFrame:
    deciles = pd.qcut(pd.Series(v).rank(method="first"), 10, labels=range(10, 0, -1))
    frame = pd.DataFrame({"decile": deciles, "actual": y, "predicted": v})
    return frame.groupby("decile", observed=True).agg(customers=("actual", "size"), actual=("actual", "mean"),
                                                      predicted=("predicted", "mean")).sort_index(ascending=False)
