"""The true lifecycle stage of a simulated customer, from the simulator's full knowledge.

Rules in precedence order (first that holds wins):
  churned     cancelled on or before the snapshot day
  new         tenure under 14 days
  onboarding  tenure under 90 days and fewer than 30 active days so far (not activated)
  dormant     no product use for 30+ days while still subscribed
  at_risk     true probability of churning within 90 days >= 0.25
  advocate    true 90-day churn probability < 0.06, tenure >= 180 days, and an NPS of
              9-10 or a referral within the last 365 days
  engaged     everything else
The product's own stage rules (built on observable data only) live in `clm`; this one
may use the true risk, which no model can see.
"""
from __future__ import annotations

import numpy as np

from clm.domain import Stage

NEW_DAYS = 14
ONBOARDING_DAYS = 90
ACTIVATION_ACTIVE_DAYS = 30
DORMANT_INACTIVE_DAYS = 30
AT_RISK_P_CHURN_90D = 0.25
ADVOCATE_MAX_P_CHURN_90D = 0.06
ADVOCATE_MIN_TENURE_DAYS = 180
ADVOCACY_RECENCY_DAYS = 365


def true_stage(
    churned: np.ndarray,
    tenure_days: np.ndarray,
    active_days: np.ndarray,
    days_inactive: np.ndarray,
    p_churn_90d: np.ndarray,
    days_since_promoter_nps: np.ndarray,
    days_since_referral: np.ndarray,
) -> np.ndarray:
    """Stage id per customer (object array of strings); NaN p_churn only where churned."""
    advocacy = (days_since_promoter_nps <= ADVOCACY_RECENCY_DAYS) | (
        days_since_referral <= ADVOCACY_RECENCY_DAYS
    )
    p = np.nan_to_num(p_churn_90d, nan=1.0)
    conditions = [
        churned,
        tenure_days < NEW_DAYS,
        (tenure_days < ONBOARDING_DAYS) & (active_days < ACTIVATION_ACTIVE_DAYS),
        days_inactive >= DORMANT_INACTIVE_DAYS,
        p >= AT_RISK_P_CHURN_90D,
        (p < ADVOCATE_MAX_P_CHURN_90D) & (tenure_days >= ADVOCATE_MIN_TENURE_DAYS) & advocacy,
    ]
    choices = [Stage.CHURNED, Stage.NEW, Stage.ONBOARDING, Stage.DORMANT, Stage.AT_RISK, Stage.ADVOCATE]
    return np.select(conditions, [c.value for c in choices], default=Stage.ENGAGED.value).astype(object)
