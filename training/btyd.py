"""Buy-till-you-die baselines for non-contractual workspaces (lifetimes).

Fitted on every paid purchase before the test cutoff, scored on the same test rows as
our models: churn by expected purchases in the horizon (fewer = likelier to churn; BG/NBD's
'probability alive' is 1 for every one-time buyer, so it ranks badly:
../shared/STACK-NOTES.md), CLV by BG/NBD expected purchases over the CLV window times
Gamma-Gamma's expected spend per purchase.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import summary_data_from_transaction_data

from training import evaluate as ev

PENALIZER = 0.001


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


def expected_purchases(fitter: object, summary: pd.DataFrame, days: int) -> pd.Series:
    values = fitter.conditional_expected_number_of_purchases_up_to_time(
        days, summary["frequency"], summary["recency"], summary["T"]
    )
    return pd.Series(np.asarray(values, dtype=float), index=summary.index)


def churn_comparison(transactions: pd.DataFrame, test: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> dict[str, float]:
    """ROC AUC of BG/NBD and Pareto/NBD (score: minus expected purchases in the horizon)."""
    summary = rfm_summary(transactions, cutoff)
    y = test["churn"].to_numpy()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fitter in (("bgnbd", BetaGeoFitter(penalizer_coef=PENALIZER)),
                             ("pareto_nbd", ParetoNBDFitter(penalizer_coef=PENALIZER))):
            fitter.fit(summary["frequency"], summary["recency"], summary["T"])
            expected = expected_purchases(fitter, summary, horizon).reindex(test["customer_id"]).to_numpy()
            out[f"{name}_roc_auc"] = ev.binary_metrics(y, _rank_score(-expected))["roc_auc"]
    return out


def clv_comparison(transactions: pd.DataFrame, test: pd.DataFrame, cutoff: pd.Timestamp, days: int) -> dict[str, float]:
    """Spearman and MAE of BG/NBD + Gamma-Gamma expected revenue over `days`."""
    summary = rfm_summary(transactions, cutoff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = BetaGeoFitter(penalizer_coef=PENALIZER).fit(summary["frequency"], summary["recency"], summary["T"])
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        ggf = GammaGammaFitter(penalizer_coef=PENALIZER).fit(repeat["frequency"], repeat["monetary_value"])
        spend = ggf.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"])
    value = (expected_purchases(bgf, summary, days) * pd.Series(np.asarray(spend, dtype=float), index=summary.index))
    predicted = value.reindex(test["customer_id"]).fillna(0.0).to_numpy()
    metrics = ev.regression_metrics(test["clv"].to_numpy(), predicted)
    return {"bgnbd_gg_spearman": metrics["spearman"], "bgnbd_gg_mae": metrics["mae"]}


def _rank_score(values: np.ndarray) -> np.ndarray:
    """Map any score to (0, 1) by rank, so it can be scored like a probability (AUC only)."""
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return ranks / (len(ranks) + 1)
