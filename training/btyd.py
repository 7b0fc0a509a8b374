"""Buy-till-you-die baselines for non-contractual workspaces (lifetimes).

Fitted on every paid purchase before the cutoff, scored on the same rows as our models:
churn by each model's probability of no purchase within the horizon (exactly the
non-contractual churn label; BG/NBD's 'probability alive' alone is 1 for every one-time
buyer and ranks badly: ../shared/STACK-NOTES.md), CLV by BG/NBD expected purchases over
the CLV window times Gamma-Gamma's expected spend per purchase.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from lifetimes import GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

from training import evaluate as ev
from training.btyd_models import (
    BTYD_KINDS,
    FIT_ERRORS,
    PENALIZERS,
    fit_estimator,
    in_hash_order,
    quietly,
    summary_history,
)


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


def churn_probabilities(transactions: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> dict[str, pd.Series]:
    """Each BTYD model's P(no paid purchase in [cutoff, cutoff + horizon)), fitted on the
    purchases before cutoff, per customer_id: the non-contractual churn label's probability."""
    summary = rfm_summary(transactions, cutoff)
    history = summary_history(summary)
    return {kind: pd.Series(fit_estimator(kind, summary, horizon).p_no_purchase(history), index=summary.index)
            for kind in BTYD_KINDS}


def clv_values(transactions: pd.DataFrame, cutoff: pd.Timestamp, days: int) -> pd.Series:
    """BG/NBD expected purchases over `days` times Gamma-Gamma's expected spend, per customer_id."""
    summary = rfm_summary(transactions, cutoff)
    purchases = fit_estimator("bgnbd", summary, days).expected_purchases(summary_history(summary))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repeat = in_hash_order(summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)],
                               ["frequency", "monetary_value"])
        with quietly():
            # A gradient tolerance of 1e-6, not lifetimes' 1e-7: at 1e-7 BFGS stops with "precision
            # loss" on some orders of the same rows (CDNOW at 1998-01-01), at the optimum to 5 digits.
            ggf = GammaGammaFitter(penalizer_coef=PENALIZERS[0]).fit(repeat["frequency"], repeat["monetary_value"],
                                                                     tol=1e-6)
        spend = ggf.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"])
    return pd.Series(purchases * np.asarray(spend, dtype=float), index=summary.index)


def clv_comparison(
    transactions: pd.DataFrame, test: pd.DataFrame, cutoff: pd.Timestamp, days: int,
) -> tuple[dict[str, float], str]:
    """Spearman and MAE of BG/NBD + Gamma-Gamma expected revenue over `days`, and a note if
    it could not be fitted or gave no finite values (left out, never a crash)."""
    try:
        predicted = clv_values(transactions, cutoff, days).reindex(test["customer_id"]).fillna(0.0).to_numpy()
    except FIT_ERRORS as err:
        return {}, f"BG/NBD + Gamma-Gamma not fitted ({type(err).__name__})"
    if not np.isfinite(predicted).all():
        return {}, "BG/NBD + Gamma-Gamma gave no finite values: left out"
    metrics = ev.regression_metrics(test["clv"].to_numpy(), predicted)
    return {"bgnbd_gg_spearman": metrics["spearman"], "bgnbd_gg_mae": metrics["mae"]}, ""
