"""A blend of candidates: logistic regression on their predicted log-odds.

Each candidate sees the customer differently (LightGBM the features, BG/NBD and Pareto/NBD
the purchase rhythm, the baseline a linear view); their errors differ, and a weighted sum
of their log-odds ranks better than any one on real logs (figures in the README). The
weights are fitted on a window later than every part's training rows, so a part that
overfits its training windows earns no weight it has not shown on new customers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from training.models import TrainedModel


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


@dataclass
class BlendModel(TrainedModel):
    """P(label) = logistic(w . log-odds of each part + b). `parts`: the blended candidates by
    kind; `estimator`: the fitted LogisticRegression. Its features: every part's."""

    parts: dict[str, TrainedModel] = field(default_factory=dict)

    def part_log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        return np.column_stack([log_odds(part.predict(frame)) for part in self.parts.values()])

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        assert isinstance(self.estimator, LogisticRegression)
        return np.asarray(self.estimator.predict_proba(self.part_log_odds(frame))[:, 1], dtype=float)

    def weights(self) -> dict[str, float]:
        assert isinstance(self.estimator, LogisticRegression)
        return dict(zip(self.parts, (float(w) for w in self.estimator.coef_[0])))


def fit_blend(parts: dict[str, TrainedModel], frame: pd.DataFrame) -> BlendModel:
    """The blend of `parts` with weights fitted on frame (a window later than their training rows)."""
    first = next(iter(parts.values()))
    features = list(dict.fromkeys(f for part in parts.values() for f in part.features))
    shell = BlendModel(first.spec, features, {}, None, kind="blend", parts=dict(parts))
    head = LogisticRegression(C=1.0, max_iter=1000).fit(shell.part_log_odds(frame), frame[first.spec.label].to_numpy())
    shell.estimator = head
    return shell
