"""Plots logged with each model as MLflow artifacts (PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from clm.domain import NO_ACTION  # noqa: E402
from decisions.value import CustomerValues  # noqa: E402
from training import evaluate as ev  # noqa: E402
from training.models import BINARY, MULTICLASS, TrainedModel, feature_importance  # noqa: E402
from training.uplift import (  # noqa: E402
    UpliftModel,
    predicted_gross_value,
    qini_curve,
    realised_value,
)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def importance(model: TrainedModel, folder: Path) -> Path:
    top = list((feature_importance(model) or {}).items())[:20][::-1]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh([name for name, _ in top], [share for _, share in top])
    ax.set_title(f"{model.spec.name}: feature importance (share of gain, top 20)")
    return _save(fig, folder / "importance.png")


def model_plots(model: TrainedModel, test: pd.DataFrame, folder: Path) -> list[Path]:
    y = test[model.spec.label].to_numpy()
    scores = model.predict(test)
    # Gain importance is LightGBM's; a registered scikit-learn baseline has none.
    paths = [importance(model, folder)] if feature_importance(model) is not None else []
    if model.spec.task == BINARY:
        fpr, tpr, _ = roc_curve(y, scores)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        paths.append(_save(fig, folder / "roc.png"))
        precision, recall, _ = precision_recall_curve(y, scores)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(recall, precision)
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
        paths.append(_save(fig, folder / "pr.png"))
        order = np.argsort(scores)
        bins = np.array_split(order, 10)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([scores[b].mean() for b in bins], [y[b].mean() for b in bins], "o-")
        top = max(scores.max(), y.mean()) * 1.05
        ax.plot([0, top], [0, top], "--", color="grey")
        ax.set(xlabel="predicted", ylabel="observed", title=f"Calibration (ECE {ev.expected_calibration_error(y, scores):.3f})")
        paths.append(_save(fig, folder / "calibration.png"))
        deciles = np.array_split(np.argsort(-scores), 10)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.bar(range(1, 11), [y[d].mean() / max(y.mean(), 1e-12) for d in deciles])
        ax.set(xlabel="score decile (1 = highest)", ylabel="lift", title="Lift by decile")
        paths.append(_save(fig, folder / "lift.png"))
    elif model.spec.task == MULTICLASS:
        predicted = np.asarray(model.classes)[np.argmax(scores, axis=1)]
        matrix = ev.stage_confusion(y.astype(str), predicted, model.classes)
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.imshow(matrix.to_numpy(), cmap="Blues")
        ax.set_xticks(range(len(model.classes)), model.classes, rotation=45, ha="right")
        ax.set_yticks(range(len(model.classes)), model.classes)
        for (i, j), v in np.ndenumerate(matrix.to_numpy()):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set(xlabel="predicted", ylabel="actual", title="Stage confusion matrix")
        paths.append(_save(fig, folder / "confusion_matrix.png"))
    else:
        table = ev.decile_table(y, scores)
        fig, ax = plt.subplots(figsize=(6, 4))
        x = np.arange(len(table))
        ax.bar(x - 0.2, table["actual"], 0.4, label="actual")
        ax.bar(x + 0.2, table["predicted"], 0.4, label="predicted")
        ax.set(xlabel="predicted-value decile (1 = highest)", ylabel="mean revenue", title="CLV by decile")
        ax.legend()
        paths.append(_save(fig, folder / "deciles.png"))
    return paths


def qini_plots(model: UpliftModel, rows: pd.DataFrame, values: CustomerValues, folder: Path) -> Path:
    """One Qini curve per modelled action on logged decision rows (treated vs control,
    inverse propensity weights): realised incremental value when targeting the top share
    by predicted value, beside random targeting."""
    predicted = predicted_gross_value(model.effects(rows), values)
    outcome = realised_value(rows, values)
    taken, propensity = rows["action"].to_numpy(), rows["propensity"].to_numpy()
    control = taken == NO_ACTION
    actions = model.actions
    fig, axes = plt.subplots(1, max(len(actions), 1), figsize=(3.2 * max(len(actions), 1), 3.2), squeeze=False)
    for j, (ax, action) in enumerate(zip(axes[0], actions)):
        fractions, gains = qini_curve(predicted[:, j], outcome, taken == action, control, propensity)
        ax.plot(np.r_[0, fractions], np.r_[0, gains], label="by predicted value")
        ax.plot([0, 1], [0, gains[-1]], "--", label="random")
        ax.set_title(action, fontsize=9)
        ax.set_xlabel("share targeted")
    axes[0][0].set_ylabel("incremental value (IPW)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"uplift ({model.learner}): Qini curves on the test window", fontsize=10)
    return _save(fig, folder / "qini.png")
