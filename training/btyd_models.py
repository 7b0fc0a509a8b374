"""Buy-till-you-die models as candidates: BG/NBD, Pareto/NBD and a stack on their outputs.

A purchase history is summarised as lifetimes does it in day periods: x, the days with a
purchase after the first one; t_x, the days from the first purchase's day to the last's;
T, the days from the first purchase's day to the cutoff. The features hold exactly that
(`history_summary`: purchase_days_total, recency_days, first_purchase_days), so a model
fitted on the raw purchases scores any customer from their features, in the batch and in
the API alike.

- `BtydEstimator`: a fitted BG/NBD or Pareto/NBD (its parameters only) and its
  probability of no purchase within the horizon: exactly the non-contractual churn label.
- `BtydModel`: a `TrainedModel` whose raw score is that probability (calibrated by Platt
  like the others), registered and served like any other; its reasons are in words
  (`serving.reasons`).
- `StackModel`: LightGBM on the features and BG/NBD's outputs at each cutoff (each fitted on
  the purchases before that cutoff only).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError

from training.frames import row_hashes
from training.models import TrainedModel

FIT_ERRORS = (ConvergenceError, ValueError, ZeroDivisionError, np.linalg.LinAlgError)  # a fit that fails
PENALIZERS = (0.001, 0.01, 0.1)  # tried in turn: small bases may not converge with the first


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """lifetimes prints scipy's whole OptimizeResult when a fit does not converge (then
    raises, which the callers handle), and its likelihoods warn on the way: neither is
    for the user's screen."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def fit_btyd(fitter_class: type[BetaGeoFitter] | type[ParetoNBDFitter],
             summary: pd.DataFrame) -> BetaGeoFitter | ParetoNBDFitter:
    """Fit BG/NBD or Pareto/NBD on (frequency, recency, T), with a stronger penalizer
    where the fit does not converge (few customers, e.g. early in a history). The rows are
    fitted `in_hash_order` and Pareto/NBD starts from ones (lifetimes draws its start from
    numpy's global generator: another fit each run)."""
    summary = in_hash_order(summary, ["frequency", "recency", "T"])
    start = {"initial_params": np.ones(4)} if fitter_class is ParetoNBDFitter else {}
    for penalizer in PENALIZERS:
        try:
            with quietly():
                return fitter_class(penalizer_coef=penalizer).fit(summary["frequency"], summary["recency"],
                                                                  summary["T"], **start)
        except ConvergenceError:
            continue
    raise ConvergenceError(f"{fitter_class.__name__} did not converge with penalizers {PENALIZERS}")


def in_hash_order(summary: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows by a hash of their values in `columns` (what the fit sees): the same order
    whatever the customer ids, so the same fit (a likelihood is a sum, and a floating-point
    sum depends on its order). Not sorted by value: summed in that order, Gamma-Gamma's fit
    fails to converge on some bases where an unordered one converges."""
    return summary.iloc[np.argsort(row_hashes(summary[columns]), kind="stable")]


BTYD_KINDS = ("bgnbd", "pareto_nbd")
HISTORY_FEATURES = ["purchase_days_total", "recency_days", "first_purchase_days"]
# BG/NBD's outputs the stack learns from, fitted at each row's cutoff.
STACK_COLUMNS = ["bgnbd_p_no_purchase", "bgnbd_p_alive", "bgnbd_expected_purchases"]
FITTERS: dict[str, type[BetaGeoFitter] | type[ParetoNBDFitter]] = {"bgnbd": BetaGeoFitter, "pareto_nbd": ParetoNBDFitter}


@dataclass(frozen=True)
class History:
    """Per customer: x (repeat purchase days), t_x (first to last purchase day), T (first
    purchase day to the cutoff), in days; NaN where there is no purchase."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray


def history_summary(frame: pd.DataFrame) -> History:
    """The BTYD summary of each row's history from its features (see the module's docstring).
    A cutoff is a day's start, so rounding the fractional days up gives whole days back to
    the purchase's day, as lifetimes' day periods count them."""
    def column(name: str) -> np.ndarray:
        return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float) if name in frame \
            else np.full(len(frame), np.nan)

    T = np.maximum(np.ceil(column("first_purchase_days")), 1.0)
    t_x = np.clip(T - np.ceil(column("recency_days")), 0.0, None)
    x = np.maximum(column("purchase_days_total") - 1.0, 0.0)
    return History(x, np.minimum(t_x, T), T)


@dataclass
class BtydEstimator:
    """A fitted BG/NBD or Pareto/NBD, kept as its parameters (a fitter is rebuilt to score)."""

    kind: str
    params: dict[str, float]
    horizon_days: int

    def _fitter(self) -> BetaGeoFitter | ParetoNBDFitter:
        fitter = FITTERS[self.kind]()
        fitter.params_ = pd.Series(self.params)
        return fitter

    def p_alive(self, h: History) -> np.ndarray:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return np.asarray(self._fitter().conditional_probability_alive(h.x, h.t_x, h.T), dtype=float)

    def expected_purchases(self, h: History) -> np.ndarray:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return np.asarray(self._fitter().conditional_expected_number_of_purchases_up_to_time(
                self.horizon_days, h.x, h.t_x, h.T), dtype=float)

    def p_no_purchase(self, h: History) -> np.ndarray:
        """P(no purchase within the horizon | history).

        BG/NBD: a customer drops out only right after a purchase, so none happens if they are
        gone, or if they are alive and their Poisson rate (posterior Gamma(r + x, alpha + T))
        gives none: 1 - P(alive) (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)).
        Pareto/NBD: lifetimes' P(0 purchases in (T, T + t])."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if self.kind == "bgnbd":
                r, alpha = self.params["r"], self.params["alpha"]
                none_if_alive = ((alpha + h.T) / (alpha + h.T + self.horizon_days)) ** (r + h.x)
                p = 1.0 - self.p_alive(h) * (1.0 - none_if_alive)
            else:
                p = np.asarray(self._fitter().conditional_probability_of_n_purchases_up_to_time(
                    0, self.horizon_days, h.x, h.t_x, h.T), dtype=float)
        return np.clip(p, 0.0, 1.0)


def fit_estimator(kind: str, summary: pd.DataFrame, horizon_days: int) -> BtydEstimator:
    """Fit on lifetimes' summary (frequency, recency, T), see `fit_btyd`."""
    fitter = fit_btyd(FITTERS[kind], summary)
    return BtydEstimator(kind, {k: float(v) for k, v in fitter.params_.items()}, horizon_days)


def summary_history(summary: pd.DataFrame) -> History:
    """A lifetimes summary as a History."""
    return History(summary["frequency"].to_numpy(float), summary["recency"].to_numpy(float),
                   summary["T"].to_numpy(float))


def stack_columns(estimator: BtydEstimator, frame: pd.DataFrame) -> pd.DataFrame:
    """BG/NBD's outputs for each row of frame (see STACK_COLUMNS)."""
    h = history_summary(frame)
    return pd.DataFrame({
        "bgnbd_p_no_purchase": estimator.p_no_purchase(h),
        "bgnbd_p_alive": estimator.p_alive(h),
        "bgnbd_expected_purchases": estimator.expected_purchases(h),
    }, index=frame.index)


class BtydModel(TrainedModel):
    """A churn model whose raw score is a BTYD model's P(no purchase within the horizon);
    `estimator` is a BtydEstimator. Its features are the history's summary."""

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        assert isinstance(self.estimator, BtydEstimator)
        return self.estimator.p_no_purchase(history_summary(frame))


@dataclass
class StackModel(TrainedModel):
    """LightGBM on the features and BG/NBD's outputs. `btyd`: BG/NBD fitted as of the
    model's date, for rows that do not carry the outputs already (training rows carry
    those of the BG/NBD fitted at their own cutoff)."""

    btyd: BtydEstimator | None = None
    learner_features: list[str] = field(default_factory=list)  # LightGBM's, before STACK_COLUMNS

    @property
    def input_names(self) -> list[str]:
        return [*self.learner_features, *STACK_COLUMNS]

    def inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        if all(c in frame for c in STACK_COLUMNS):
            return frame
        assert self.btyd is not None
        return pd.concat([frame, stack_columns(self.btyd, frame)], axis=1)
