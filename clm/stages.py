"""The product's lifecycle-stage rules, from observable features only. Written once.

Used to label the current stage at any as-of date (scoring) and the stage at cutoff + H
(training labels). Rules in precedence order, first that holds wins:

  churned     contractual: no live subscription; non-contractual: no purchase for
              CHURN_QUIET_DAYS days (after a first one)
  new         tenure under 14 days
  onboarding  tenure under 90 days and fewer than 30 active days in the last 90; or,
              non-contractual, no purchase yet (a registered customer the first purchase
              has still to activate: not churned, whatever their tenure)
  dormant     no product use for 30+ days (contractual), or no purchase for 60+ days
              (non-contractual)
  at_risk     a warning sign: a failed payment in the last 30 days, an open high-severity
              ticket, a last NPS of 0-6 with a falling trend, or use down to under half of
              its earlier level
  advocate    tenure 180+ days and a promoter NPS (9-10) or a referral in the last year
  engaged     everything else

Input: a frame with the feature columns named below (from `features`); a column that a
workspace does not have (e.g. usage in a transactions-only workspace) is treated as
missing, and rules that need it do not fire.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clm.domain import Stage

NEW_DAYS = 14
ONBOARDING_DAYS = 90
ACTIVATION_ACTIVE_DAYS_90D = 30
DORMANT_DAYS_CONTRACTUAL = 30
DORMANT_DAYS_NON_CONTRACTUAL = 60
CHURN_QUIET_DAYS = 90  # non-contractual: no purchase this long means churned
ADVOCATE_MIN_TENURE = 180


# Every feature the stage rules read (a reader may load only these: `_col` refuses others).
STAGE_FEATURES = ("tenure_days", "is_subscribed", "days_since_last_activity", "recency_days", "active_days_90d",
                  "failed_payments_30d", "open_high_severity", "last_nps", "nps_trend", "recent_past_ratio",
                  "days_since_last_nps", "referrals_365d")


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in STAGE_FEATURES:
        raise KeyError(f"{name} is read by the stage rules but not listed in STAGE_FEATURES")
    if name not in frame:
        return np.full(len(frame), np.nan)
    values = pd.to_numeric(frame[name], errors="coerce")
    return values.to_numpy(dtype=float, na_value=np.nan) if isinstance(values, pd.Series) else np.asarray(
        values, dtype=float)


def _filled(values: np.ndarray, missing: float) -> np.ndarray:
    return np.where(np.isnan(values), missing, values)


def current_stage(features: pd.DataFrame, contractual: bool) -> pd.Series:
    """Stage id per row of `features` (one customer at one as-of date)."""
    return pd.Series(stage_ids(features, contractual), index=features.index, name="stage")


def stage_ids(features: pd.DataFrame, contractual: bool) -> np.ndarray:
    """`current_stage` as a numpy array, for a DataFrame or anything read as one (`name in
    features`, `features[name]` a Series or an array, `len(features)` its rows): the
    real-time API's numpy columns of a request's few rows, where pandas' cost per operation
    would be most of the time."""
    tenure = _col(features, "tenure_days")
    if contractual:
        churned = _filled(_col(features, "is_subscribed"), 0.0) < 1
        dormant = _filled(_col(features, "days_since_last_activity"), np.inf) >= DORMANT_DAYS_CONTRACTUAL
    else:
        recency = _col(features, "recency_days")
        never_bought = np.isnan(recency)
        quiet = _filled(recency, np.inf)
        churned = (quiet >= CHURN_QUIET_DAYS) & ~never_bought
        dormant = (quiet >= DORMANT_DAYS_NON_CONTRACTUAL) & ~never_bought
    onboarding = (tenure < ONBOARDING_DAYS) & (
        _filled(_col(features, "active_days_90d"), 0.0) < ACTIVATION_ACTIVE_DAYS_90D
        if "active_days_90d" in features
        else False
    )
    if not contractual:
        onboarding = onboarding | never_bought
    last_nps = _col(features, "last_nps")
    at_risk = (
        (_col(features, "failed_payments_30d") > 0)
        | (_col(features, "open_high_severity") > 0)
        | ((last_nps <= 6) & (_col(features, "nps_trend") < 0))
        | (_col(features, "recent_past_ratio") < 0.5)
    )
    advocate = (tenure >= ADVOCATE_MIN_TENURE) & (
        ((last_nps >= 9) & (_col(features, "days_since_last_nps") <= 365))
        | (_col(features, "referrals_365d") > 0)
    )
    conditions = [churned, tenure < NEW_DAYS, onboarding, dormant, at_risk, advocate]
    choices = [Stage.CHURNED, Stage.NEW, Stage.ONBOARDING, Stage.DORMANT, Stage.AT_RISK, Stage.ADVOCATE]
    return np.select(
        [np.asarray(c, dtype=bool) for c in conditions], [c.value for c in choices], default=Stage.ENGAGED.value
    )
