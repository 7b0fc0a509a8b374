"""Buy-till-you-die baselines for non-contractual workspaces (lifetimes).

Fitted on every paid purchase before the cutoff, scored on the same rows as our models:
churn by each model's probability of no purchase within the horizon (exactly the
non-contractual churn label; BG/NBD's 'probability alive' alone is 1 for every one-time
buyer and ranks badly: ../shared/STACK-NOTES.md), CLV by BG/NBD expected purchases over
the CLV window times Gamma-Gamma's expected spend per purchase.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError, summary_data_from_transaction_data

from training import evaluate as ev

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
    where the fit does not converge (few customers, e.g. early in a history)."""
    for penalizer in PENALIZERS:
        try:
            with quietly():
                return fitter_class(penalizer_coef=penalizer).fit(summary["frequency"], summary["recency"],
                                                                  summary["T"])
        except ConvergenceError:
            continue
    raise ConvergenceError(f"{fitter_class.__name__} did not converge with penalizers {PENALIZERS}")


def rfm_summary(transactions: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """frequency, recency, T (days) and mean repeat spend per customer, from purchases before cutoff."""
    paid = transactions[(transactions.status == "paid") & (transactions.event_time < cutoff)]
    frame = pd.DataFrame({
        "customer_id": paid.customer_id.to_numpy(),
        "date": paid.event_time.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(),
        "amount": paid.amount.to_numpy(),
    })
    # Day periods: the cutoff's own day closes the observation, so that a customer first
    # seen the day before still has T = 1 (T = 0 has no defined expectation).
    end = cutoff.tz_convert("UTC").tz_localize(None)
    return summary_data_from_transaction_data(
        frame, "customer_id", "date", monetary_value_col="amount", observation_period_end=end, freq="D"
    )


def expected_purchases(fitter: BetaGeoFitter | ParetoNBDFitter, summary: pd.DataFrame, days: int) -> pd.Series:
    values = fitter.conditional_expected_number_of_purchases_up_to_time(
        days, summary["frequency"], summary["recency"], summary["T"]
    )
    return pd.Series(np.asarray(values, dtype=float), index=summary.index)


def bgnbd_probability_no_purchase(fitter: BetaGeoFitter, summary: pd.DataFrame, days: int) -> np.ndarray:
    """BG/NBD: P(no purchase in the next `days` | history). A customer can only drop out
    right after a purchase, so no purchase happens if they are gone, or if they are alive
    and their Poisson rate (posterior Gamma(r + x, alpha + T)) gives none:
    1 - P(alive) (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))."""
    r, alpha = fitter.params_["r"], fitter.params_["alpha"]
    x, T = summary["frequency"].to_numpy(float), summary["T"].to_numpy(float)
    alive = np.asarray(fitter.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"]), float)
    none_if_alive = ((alpha + T) / (alpha + T + days)) ** (r + x)
    return 1.0 - alive * (1.0 - none_if_alive)


def churn_probabilities(transactions: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> dict[str, pd.Series]:
    """Each BTYD model's P(no paid purchase in [cutoff, cutoff + horizon)), fitted on the
    purchases before cutoff, per customer_id: the non-contractual churn label's probability."""
    summary = rfm_summary(transactions, cutoff)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["bgnbd"] = bgnbd_probability_no_purchase(fit_btyd(BetaGeoFitter, summary), summary, horizon)
        pnbd = fit_btyd(ParetoNBDFitter, summary)
        out["pareto_nbd"] = np.asarray(pnbd.conditional_probability_of_n_purchases_up_to_time(
            0, horizon, summary["frequency"].to_numpy(float), summary["recency"].to_numpy(float),
            summary["T"].to_numpy(float)), float)
    return {name: pd.Series(np.clip(p, 0.0, 1.0), index=summary.index) for name, p in out.items()}


def churn_comparison(
    transactions: pd.DataFrame, test: pd.DataFrame, cutoff: pd.Timestamp, horizon: int,
) -> tuple[dict[str, float], str]:
    """ROC AUC of BG/NBD and Pareto/NBD on the test rows (their P(no purchase in the horizon)),
    and a note naming any that could not be fitted or gave no usable probabilities (small
    or odd bases): a peer that fails is left out and said so, never a crash."""
    try:
        probabilities = churn_probabilities(transactions, cutoff, horizon)
    except (ConvergenceError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as err:
        return {}, f"buy-till-you-die peers not fitted ({type(err).__name__})"
    y, figures, unusable = test["churn"].to_numpy(), {}, []
    for name, p in probabilities.items():
        values = p.reindex(test["customer_id"]).to_numpy()
        if np.isfinite(values).all():
            figures[f"{name}_roc_auc"] = ev.binary_metrics(y, values)["roc_auc"]
        else:
            unusable.append(name)
    return figures, (f"{', '.join(unusable)} gave no finite probabilities: left out" if unusable else "")


def clv_values(transactions: pd.DataFrame, cutoff: pd.Timestamp, days: int) -> pd.Series:
    """BG/NBD expected purchases over `days` times Gamma-Gamma's expected spend, per customer_id."""
    summary = rfm_summary(transactions, cutoff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = fit_btyd(BetaGeoFitter, summary)
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        with quietly():
            ggf = GammaGammaFitter(penalizer_coef=PENALIZERS[0]).fit(repeat["frequency"], repeat["monetary_value"])
        spend = ggf.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"])
    return expected_purchases(bgf, summary, days) * pd.Series(np.asarray(spend, dtype=float), index=summary.index)


def clv_comparison(
    transactions: pd.DataFrame, test: pd.DataFrame, cutoff: pd.Timestamp, days: int,
) -> tuple[dict[str, float], str]:
    """Spearman and MAE of BG/NBD + Gamma-Gamma expected revenue over `days`, and a note if
    it could not be fitted or gave no finite values (left out, never a crash)."""
    try:
        predicted = clv_values(transactions, cutoff, days).reindex(test["customer_id"]).fillna(0.0).to_numpy()
    except (ConvergenceError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as err:
        return {}, f"BG/NBD + Gamma-Gamma not fitted ({type(err).__name__})"
    if not np.isfinite(predicted).all():
        return {}, "BG/NBD + Gamma-Gamma gave no finite values: left out"
    metrics = ev.regression_metrics(test["clv"].to_numpy(), predicted)
    return {"bgnbd_gg_spearman": metrics["spearman"], "bgnbd_gg_mae": metrics["mae"]}, ""
