"""Reasons in words: why a customer got the action they got.

A recommendation's reasons are its expected value and the value's parts, and the top
drivers of the score the action answers to (churn for retain / activate / win-back
actions, upsell for upgrade and referral), from the model's per-feature contributions along
the customer's decision paths (`serving.contributions`: a leaf lookup per tree, 9-26x
faster than TreeSHAP): the features that push this customer's score up the most.

PHRASES is the one mapping from a feature to words (MISSING: when its value is missing);
every feature of `features.groups` has one (a test holds it); a business's own attribute
(`clm ingest --attributes`) is named with its value ("loyalty tier gold").
A scikit-learn baseline registered in LightGBM's place has no contributions: its
recommendations carry the value parts only. A buy-till-you-die champion (BG/NBD,
Pareto/NBD) has no per-feature contributions either; its reasons are the customer's
rhythm in words (`btyd_reasons`): "no purchase for 120 days where this customer usually
buys every 30".
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from serving.contributions import top_contributions
from training.blend import BlendModel
from training.btyd_models import BtydEstimator, BtydModel, history_summary
from training.models import Columns, Rows, TrainedModel, column, prepare_matrix

TOP_DRIVERS = 3


def _count(noun: str, window: str = "") -> Callable[[Any], str]:
    def phrase(v: Any) -> str:
        n = int(round(float(v)))
        return f"{n} {noun}{'' if n == 1 else 's'}{window}"
    return phrase


def _ago(event: str) -> Callable[[Any], str]:
    return lambda v: f"{event} {float(v):.0f} days ago"


# Feature -> words for its value. Keep them short: a CRM shows them beside the action.
# A phrase gets a float for a number, else the frame's cell as it is (text): typed Any.
PHRASES: dict[str, Callable[[Any], str]] = {
    "days_since_last_activity": lambda v: f"no sessions in {v:.0f} days",
    "sessions_7d": _count("session", " in the last 7 days"),
    "sessions_30d": _count("session", " in the last 30 days"),
    "sessions_90d": _count("session", " in the last 90 days"),
    "active_days_30d": lambda v: f"active on {v:.0f} of the last 30 days",
    "active_days_90d": lambda v: f"active on {v:.0f} of the last 90 days",
    "sessions_decayed_30d": lambda v: f"recent use {v:.1f} (sessions, recent days weighted most)",
    "sessions_trend_12w": lambda v: f"weekly sessions {'falling' if v < 0 else 'rising'} ({v:+.2f} a week)",
    "recent_past_ratio": lambda v: f"using the product {v:.0%} as much as in the two months before",
    "feature_breadth_30d": _count("product feature", " used at most in a day"),
    "open_tickets": _count("open support ticket"),
    "open_high_severity": _count("open high-severity ticket"),
    "tickets_30d": _count("support ticket", " in 30 days"),
    "tickets_90d": _count("support ticket", " in 90 days"),
    "tickets_decayed_60d": lambda v: f"recent support load {v:.1f} (tickets, recent ones weighted most)",
    "last_csat": lambda v: f"last support rating {v:.0f}/5",
    "mean_resolution_days_90d": lambda v: f"tickets took {v:.1f} days to resolve",
    "failed_payments_30d": _count("failed payment", " in 30 days"),
    "failed_payments_90d": _count("failed payment", " in 90 days"),
    "days_since_failed_payment": _ago("a payment failed"),
    "failed_payment_share": lambda v: f"{v:.0%} of payments failed",
    "downgrades_365d": _count("downgrade", " this year"),
    "upgrades_365d": _count("upgrade", " this year"),
    "last_nps": lambda v: f"last NPS score {v:.0f}",
    "nps_trend": lambda v: f"NPS {v:+.0f} since the previous answer",
    "mean_nps": lambda v: f"mean NPS {v:.1f}",
    "tenure_days": lambda v: f"a customer for {v:.0f} days",
    "price": lambda v: f"paying {v:,.0f} a month",
    "contacts_30d": _count("contact", " from us in 30 days"),
    "days_since_last_contact": _ago("last contacted"),
    "recency_days": _ago("last purchase"),
    "recency_over_mean_gap": lambda v: f"buying {v:.1f}x later than usual",
    "frequency_90d": _count("purchase", " in 90 days"),
    "referrals_365d": _count("referral", " this year"),
    "monetary_365d": lambda v: f"spent {v:,.0f} in the last year",
    "avg_transaction_value": lambda v: f"pays {v:,.2f} a transaction on average",
    "last_amount_ratio": lambda v: f"last payment {v:.1f}x their usual",
    "days_since_plan_change": _ago("plan changed"),
    "recency_score": lambda v: f"last purchase more recent than {v:.0%} of customers",
    "frequency_score": lambda v: f"buys more often than {v:.0%} of customers",
    "monetary_score": lambda v: f"spends more than {v:.0%} of customers",
    "segment": lambda v: f"{v} segment",
    "plan": lambda v: f"on the {v} plan",
    "acquisition_channel": lambda v: f"acquired through {v}",
    "region": lambda v: f"in region {v}",
    "last_action": lambda v: f"last contacted with {str(v).replace('_', ' ')}",
    "purchase_days_total": _count("day", " with a purchase"),
    "mean_gap_days": lambda v: f"usually buys every {v:.0f} days",
    "bgnbd_p_no_purchase": lambda v: f"{v:.0%} chance of no purchase in the horizon, by their buying rhythm",
    "bgnbd_p_alive": lambda v: f"{v:.0%} likely to still be buying, by their buying rhythm",
    "bgnbd_expected_purchases": lambda v: f"{v:.1f} purchases expected in the horizon, by their buying rhythm",
    "is_subscribed": lambda v: "subscribed" if v >= 0.5 else "subscription cancelled",
    "frequency_365d": _count("purchase", " in the last year"),
    "monetary_90d": lambda v: f"paid {v:,.2f} in the last 90 days",
    "frequency_total": _count("purchase", " in all"),
    "first_purchase_days": _ago("first purchase"),
    "gap_std_days": lambda v: f"purchases irregular by {v:.0f} days",
    "last_gap_days": lambda v: f"{v:.0f} days between the last two purchases",
    "max_gap_180d": lambda v: f"longest gap between purchases in the last 6 months: {v:.0f} days",
    "active_days_7d": lambda v: f"active on {v:.0f} of the last 7 days",
    "minutes_30d": lambda v: f"{v:,.0f} minutes of use in 30 days",
    "features_per_active_day_30d": lambda v: f"{v:.1f} product features a day of use (30 days)",
    "features_per_active_day_90d": lambda v: f"{v:.1f} product features a day of use (90 days)",
    "minutes_per_session_90d": lambda v: f"{v:.0f} minutes a session",
    "high_severity_90d": _count("high-severity ticket", " in 90 days"),
    "days_since_last_ticket": _ago("last support ticket"),
    "tickets_per_year": lambda v: f"{v:.1f} support tickets a year",
    "mean_csat_365d": lambda v: f"mean support rating {v:.1f}/5 this year",
    "discount_90d": lambda v: f"discounts of {v:,.2f} on bills in 90 days",
    "nps_responses_365d": _count("NPS answer", " this year"),
    "days_since_last_nps": _ago("last NPS answer"),
    "contacts_90d": _count("contact", " from us in 90 days"),
    "offers_90d": _count("offer", " in 90 days"),
    "responses_90d": _count("contact", " in 90 days followed by product use within a week"),
    "converted_referrals_365d": _count("referral", " who joined this year"),
    "days_since_last_referral": _ago("last referral"),
}
# Feature -> words for a missing value (what its absence means, as the feature's description
# says: "null if never" etc.). A missing value can drive a score: "never answered a survey".
MISSING: dict[str, str] = {
    "segment": "segment not known", "acquisition_channel": "acquisition channel not known",
    "region": "region not known", "plan": "no subscription on record", "price": "no subscription on record",
    "is_subscribed": "no subscription on record", "recency_days": "no purchase yet",
    "avg_transaction_value": "no purchase yet", "first_purchase_days": "no purchase yet",
    "mean_gap_days": "fewer than two purchases", "gap_std_days": "fewer than three purchases",
    "last_gap_days": "fewer than two purchases", "max_gap_180d": "no repeat purchase in the last 6 months",
    "recency_over_mean_gap": "no buying rhythm yet", "last_amount_ratio": "no payment yet",
    "recent_past_ratio": "no use in the two months before the last one", "days_since_last_activity": "never used the product",
    "features_per_active_day_30d": "no use in 30 days", "features_per_active_day_90d": "no use in 90 days",
    "minutes_per_session_90d": "no session in 90 days", "mean_resolution_days_90d": "no ticket resolved in 90 days",
    "last_csat": "no support rating yet", "days_since_last_ticket": "never a support ticket",
    "mean_csat_365d": "no support rating this year", "days_since_failed_payment": "no failed payment ever",
    "days_since_plan_change": "never changed plan", "failed_payment_share": "no payment yet",
    "last_nps": "never answered the NPS survey", "nps_trend": "fewer than two NPS answers",
    "days_since_last_nps": "never answered the NPS survey", "mean_nps": "never answered the NPS survey",
    "days_since_last_contact": "never contacted by us", "last_action": "never contacted by us",
    "days_since_last_referral": "never referred anyone",
}


def phrase(feature: str, value: object) -> str:
    """Words for one feature's value: its phrase (MISSING for a missing value); a feature
    without one (a business's own attribute) is named with its value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING.get(feature, f"{feature.replace('_', ' ')} not known")
    if feature in PHRASES:
        return PHRASES[feature](float(value) if isinstance(value, int | float | np.number) else value)
    shown = f"{value:,.2f}" if isinstance(value, float | np.floating) else str(value)
    return f"{feature.replace('_', ' ')} {shown}"


def top_drivers(model: TrainedModel, frame: Rows, k: int = TOP_DRIVERS) -> list[list[str]]:
    """For each row, the k features that push the model's score up the most (positive
    path contributions, largest first), in words; [] for a model without them.
    frame: a DataFrame, or `Columns`."""
    if isinstance(frame, Columns) and not model.reads_columns and len(frame):
        frame = frame.to_frame()
    if isinstance(model, BtydModel) and len(frame):
        return btyd_reasons(model, frame)
    if isinstance(model, BlendModel) and len(frame):
        return blend_reasons(model, frame, k)
    booster = getattr(model.estimator, "booster_", None)
    if booster is None or len(frame) == 0:
        return [[] for _ in range(len(frame))]
    inputs, names = model.inputs(frame), model.input_names
    x = prepare_matrix(inputs, names, model.categories)
    order, positive = top_contributions(model.estimator, booster, x, k)
    values: dict[str, np.ndarray | None] = {}  # a driver's column, read once

    def value(name: str, i: int) -> object:
        if name not in values:
            values[name] = column(inputs, name) if name in inputs else None
        found = values[name]
        return None if found is None else found[i]

    return [[phrase(names[j], value(names[j], i)) for j, up in zip(row, ups) if up]
            for i, (row, ups) in enumerate(zip(order, positive))]


def blend_reasons(model: BlendModel, frame: pd.DataFrame, k: int = TOP_DRIVERS) -> list[list[str]]:
    """A blend's reasons: the customer's rhythm in words (its BTYD part), then the top
    drivers of its tree part with the largest weight."""
    weights = model.weights()
    rhythm_parts = [part for part in model.parts.values() if isinstance(part, BtydModel)]
    tree_parts = sorted((kind for kind, part in model.parts.items() if getattr(part.estimator, "booster_", None)),
                        key=lambda kind: -weights[kind])
    rhythm = btyd_reasons(rhythm_parts[0], frame) if rhythm_parts else [[] for _ in range(len(frame))]
    drivers = top_drivers(model.parts[tree_parts[0]], frame, k) if tree_parts else [[] for _ in range(len(frame))]
    return [(words[:1] + found)[:k] for words, found in zip(rhythm, drivers)]


def btyd_reasons(model: BtydModel, frame: pd.DataFrame) -> list[list[str]]:
    """A BTYD model's reasons for each row: the customer's rhythm against their silence,
    and how likely the model finds them still buying."""
    assert isinstance(model.estimator, BtydEstimator)
    h = history_summary(frame)
    alive = model.estimator.p_alive(h)
    silent = h.T - h.t_x  # whole days since the last purchase's day
    out: list[list[str]] = []
    for x, t_x, days, p in zip(h.x, h.t_x, silent, alive):
        if not np.isfinite(days):
            out.append([])
            continue
        if x >= 1:
            rhythm = f"no purchase for {days:.0f} days where this customer usually buys every {t_x / x:.0f}"
        else:
            rhythm = f"one purchase day only, {days:.0f} days ago"
        out.append([rhythm, f"{p:.0%} likely to still be buying, by their buying rhythm"])
    return out


# What the change in churn probability means, by the action's target: (gained, lost) words.
STAYING_WORDS = {"win_back": ("from winning them back", "lost as fewer come back"),
                 "activate": ("from more staying on", "lost to more leaving")}
STAYING_DEFAULT = ("from fewer leaving", "lost to more leaving")


def value_sentence(action: str, target: str, value: float, retention: float, upgrade: float, cost: float) -> str:
    """The expected value and its parts, in words, the action's own outcome first (an
    upgrade offer's upgrades before its effect on leaving; a win-back's customers won back;
    the others' fewer leaving, then upgrades)."""
    gained, lost = STAYING_WORDS.get(target, STAYING_DEFAULT)
    staying = (f"{retention:,.2f} {gained}" if retention > 0 else f"{-retention:,.2f} {lost}") if retention else ""
    upgrades = (f"{upgrade:,.2f} from upgrades" if upgrade > 0 else f"{-upgrade:,.2f} lost to fewer upgrades") if upgrade else ""
    own_first = (upgrades, staying) if target == "upgrade" else (staying, upgrades)
    parts = [p for p in own_first if p] + [f"minus {cost:,.2f} cost"]
    return f"{action}: expected value {value:,.2f} ({', '.join(parts)})"
