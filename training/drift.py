"""Drift statistics: how far a distribution today is from the one a model was judged on.

A model's *reference* is recorded when it is trained (`reference_profile`): for each of its
features, for its score and (stage model) for the stage mix, the distribution on its test
window, the latest labelled rows it was judged on. Numbers are kept as decile bins (edges
from the reference's quantiles) with a bin for missing values; categories as their
shares. `clm monitor` counts today's rows into the same bins (`Profile.count`, chunk by
chunk, the counts summed) and compares:

- PSI, the population stability index, sum over bins of (q - p) ln(q / p), with p the
  reference's share and q today's, each floored at PSI_FLOOR so an empty bin stays finite.
  The usual reading: below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a real shift.
- For categorical features also a chi-square test of today's counts against the
  reference's shares (scipy), whose p-value says whether the shift could be chance.

Why not evidently: its PSI is this formula over the same bins, and it brings a large
dependency tree (and its own HTML) for a dozen lines of numpy; clm's report and monitor
pages are plain HTML already.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from training.models import TrainedModel, feature_importance

PSI_FLOOR = 1e-4
BINS = 10
MISSING = "(missing)"
OTHER = "(other)"
MIN_CATEGORY_ROWS = 10  # a category in the reference names at least this many rows
EDGE_DIGITS = 4  # significant digits of a numeric bin's edge


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of two distributions given as shares (or counts) over the same bins."""
    p = _shares(reference)
    q = _shares(current)
    return float(np.sum((q - p) * np.log(q / p)))


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    shares = counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))
    return np.maximum(shares, PSI_FLOOR)


def chi_square_p(reference_shares: np.ndarray, current_counts: np.ndarray) -> float:
    """p-value of today's counts under the reference's shares (goodness of fit)."""
    counts = np.asarray(current_counts, dtype=float)
    expected = _shares(reference_shares) * counts.sum()
    if counts.sum() == 0 or len(counts) < 2:
        return 1.0
    expected *= counts.sum() / expected.sum()
    return float(stats.chisquare(counts, expected).pvalue)


@dataclass
class Profile:
    """One variable's reference distribution. numeric: `edges` (inner bin edges; the outer
    bins are open) and a last bin for missing values; categorical: `categories`, then
    `(other)` for a value the reference never saw, then missing."""

    kind: str  # "numeric" or "categorical"
    shares: list[float]
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        if self.kind == "categorical":
            return [*self.categories, OTHER, MISSING]
        bounds = ["-inf", *(f"{e:.4g}" for e in self.edges), "inf"]
        return [*(f"({a}, {b}]" for a, b in zip(bounds[:-1], bounds[1:], strict=True)), MISSING]

    def count(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Counts of `values` in this profile's bins."""
        values = pd.Series(values)
        missing = values.isna().to_numpy()
        if self.kind == "categorical":
            index = {c: i for i, c in enumerate(self.categories)}
            at = np.array([index.get(str(v), len(self.categories)) for v in values[~missing]], dtype=int)
            counts = np.bincount(at, minlength=len(self.categories) + 1)
        else:
            numbers = pd.to_numeric(values[~missing], errors="coerce").to_numpy(dtype=float)
            # bins (-inf, e1], (e1, e2], ..., (ek, inf): right-closed, as the labels say
            at = np.searchsorted(np.asarray(self.edges, dtype=float), numbers, side="left")
            counts = np.bincount(at, minlength=len(self.edges) + 1)
        return np.append(counts, missing.sum()).astype(np.int64)

    def psi(self, counts: np.ndarray) -> float:
        return psi(np.asarray(self.shares), counts)

    def p_value(self, counts: np.ndarray) -> float | None:
        """Chi-square p-value for a categorical variable (None for a numeric one)."""
        return chi_square_p(np.asarray(self.shares), counts) if self.kind == "categorical" else None

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "shares": self.shares, "edges": self.edges, "categories": self.categories}


def profile_of(values: pd.Series | np.ndarray, categorical: bool, bins: int = BINS) -> Profile:
    """The reference profile of `values`: decile edges (distinct quantiles, rounded) for numbers,
    the categories seen for categories: those of at least MIN_CATEGORY_ROWS rows, rarer ones
    counted as (other), so that a value that names few customers is never kept."""
    values = pd.Series(values)
    present = values.dropna()
    if categorical:
        seen = present.astype(str).value_counts()
        categories = sorted(str(c) for c in seen.index[seen >= MIN_CATEGORY_ROWS])
        empty = Profile("categorical", [], categories=categories)
        counts = empty.count(values)
        return Profile("categorical", list(_plain_shares(counts)), categories=categories)
    numbers = pd.to_numeric(present, errors="coerce").dropna().to_numpy(dtype=float)
    if len(numbers):
        inner = np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1])
        # Rounded to 4 significant digits: an edge is a quantile, often one customer's own value.
        edges = sorted(set(float(f"{e:.{EDGE_DIGITS}g}") for e in inner))
    else:
        edges = []
    empty = Profile("numeric", [], edges=edges)
    return Profile("numeric", list(_plain_shares(empty.count(values))), edges=edges)


def _plain_shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def profile_from_dict(data: dict[str, Any]) -> Profile:
    """data: a `Profile.as_dict()`, as read back from JSON."""
    return Profile(str(data["kind"]), [float(s) for s in data["shares"]],
                   [float(e) for e in data.get("edges", [])],
                   [str(c) for c in data.get("categories", [])])


REFERENCE_ARTIFACT = "reference/profile.json"


def model_score(model: TrainedModel, rows: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """What a model's score drift is measured on: its probability or value, or for a
    multiclass model its predicted class (categorical)."""
    predictions = model.predict(rows)
    if predictions.ndim == 2:
        return np.asarray(model.classes, dtype=object)[predictions.argmax(axis=1)], True
    return predictions, False


def model_reference(model: TrainedModel, rows: pd.DataFrame) -> dict[str, object]:
    """A trained model's reference (logged beside it in MLflow): its features', its
    score's and, where the rows carry it, the stage mix's profile on `rows`; and the
    features' importance (share of gain, LightGBM only), which decides whose drift flags."""
    empty = pd.Series(np.nan, index=rows.index)
    features = {name: profile_of(rows[name] if name in rows else empty, name in model.categories).as_dict()
                for name in model.features}
    values, categorical = model_score(model, rows)
    reference: dict[str, object] = {"rows": len(rows), "features": features,
                                    "score": profile_of(values, categorical).as_dict(),
                                    "importance": feature_importance(model)}
    if "current_stage" in rows:
        reference["stage_mix"] = profile_of(rows["current_stage"], True).as_dict()
    return reference
