"""The first three steps of the decision funnel: who may get which action, now.

1. eligibility: the catalogue's rules about the customer (consent for the action's
   channel, stage, segment, tenure);
2. applicability: the contact history (the action's cooldown, and the contact policy's
   limit of contacts within a window, across actions);
3. suitability: the models' scores within the action's thresholds (churn and upsell
   probability ranges).

One vectorised implementation over a frame of customers: the nightly batch passes the
whole base, the real-time API a frame of one row, so both give the same answer. `none`
(do nothing) is always allowed. Each step counts what it dropped, per action.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm.domain import CHANNEL_CONSENT_COLUMN, NO_ACTION
from clm.errors import ClmError
from decisions.catalogue import ActionEntry, Catalogue, Range

# What the funnel reads about each customer (one row per customer).
CUSTOMER_COLUMNS = ("customer_id", "stage", "segment", "tenure_days", "consent_email", "consent_phone",
                    "churn_probability", "upsell_probability")
# Past contacts: one row per contact (any action but none), with its time.
HISTORY_COLUMNS = ("customer_id", "action", "event_time")
STEPS = ("eligibility", "applicability", "suitability")


@dataclass
class Allowed:
    """allowed: bool frame (customers x action ids, `none` included); dropped[step][action]:
    how many customers that step removed for that action (of those still in); survivors[step]:
    bool frame (customers x contact action ids) of the pairs still in after that step."""

    allowed: pd.DataFrame
    dropped: dict[str, dict[str, int]]
    survivors: dict[str, pd.DataFrame]


def _in_range(values: pd.Series, bounds: Range | None) -> np.ndarray:
    """Bounds hold; a missing value fails any bound (unknown is not within a range)."""
    if bounds is None:
        return np.ones(len(values), dtype=bool)
    v = values.to_numpy(dtype=float)
    ok = ~np.isnan(v)
    if bounds.min is not None:
        ok &= v >= bounds.min
    if bounds.max is not None:
        ok &= v <= bounds.max
    return ok


def eligible(entry: ActionEntry, customers: pd.DataFrame) -> np.ndarray:
    """The catalogue's rules about who the customer is, for one action."""
    consent = CHANNEL_CONSENT_COLUMN.get(entry.channel)
    ok = customers[consent].fillna(False).to_numpy(dtype=bool) if consent else np.ones(len(customers), dtype=bool)
    rules = entry.eligibility
    if rules.stages is not None:
        ok &= customers["stage"].isin([s.value for s in rules.stages]).to_numpy()
    if rules.segments is not None:
        ok &= customers["segment"].isin(rules.segments).to_numpy()
    ok &= _in_range(customers["tenure_days"], rules.tenure_days)
    return ok


def suitable(entry: ActionEntry, customers: pd.DataFrame) -> np.ndarray:
    """The action's score thresholds hold for the customer."""
    rules = entry.eligibility
    return (_in_range(customers["churn_probability"], rules.churn_probability)
            & _in_range(customers["upsell_probability"], rules.upsell_probability))


def contact_counts(history: pd.DataFrame, customers: pd.Series, now: pd.Timestamp, days: int) -> np.ndarray:
    """Contacts (any action but none) of each customer in the `days` days before now."""
    if history.empty:
        return np.zeros(len(customers), dtype=int)
    recent = history[(history.event_time > now - pd.Timedelta(days=days)) & (history.event_time <= now)
                     & (history.action != NO_ACTION)]
    return recent.groupby("customer_id").size().reindex(customers, fill_value=0).to_numpy()


def days_since(history: pd.DataFrame, customers: pd.Series, action: str, now: pd.Timestamp) -> np.ndarray:
    """Days since each customer last got `action` before now (inf if never)."""
    if history.empty:
        return np.full(len(customers), np.inf)
    past = history[(history.action == action) & (history.event_time <= now)]
    last = past.groupby("customer_id").event_time.max().reindex(customers)
    return ((now - last).dt.total_seconds() / 86_400).fillna(np.inf).to_numpy()


def allowed_actions(catalogue: Catalogue, customers: pd.DataFrame, history: pd.DataFrame,
                    now: pd.Timestamp) -> Allowed:
    """Which actions each customer may get at `now`, and what each step dropped."""
    for name, frame, needed in (("customers", customers, CUSTOMER_COLUMNS), ("history", history, HISTORY_COLUMNS)):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ClmError(f"The {name} given to the decision funnel lack column(s) {', '.join(missing)} "
                           f"(needed: {', '.join(needed)}).")
    ids = customers["customer_id"]
    policy = catalogue.contact_policy
    under_limit = contact_counts(history, ids, now, policy.window_days) < policy.max_contacts
    allowed: dict[str, np.ndarray] = {}
    dropped: dict[str, dict[str, int]] = {step: {} for step in STEPS}
    survivors: dict[str, dict[str, np.ndarray]] = {step: {} for step in STEPS}
    for entry in catalogue.actions:
        name = entry.id
        if name == NO_ACTION:
            allowed[name] = np.ones(len(customers), dtype=bool)
            continue
        ok = eligible(entry, customers)
        dropped["eligibility"][name] = int((~ok).sum())
        survivors["eligibility"][name] = ok.copy()
        applicable = under_limit & (days_since(history, ids, name, now) >= entry.cooldown_days)
        dropped["applicability"][name] = int((ok & ~applicable).sum())
        ok &= applicable
        survivors["applicability"][name] = ok.copy()
        fits = suitable(entry, customers)
        dropped["suitability"][name] = int((ok & ~fits).sum())
        allowed[name] = ok & fits
        survivors["suitability"][name] = allowed[name]
    frames = {step: pd.DataFrame(masks, index=customers.index, dtype=bool) for step, masks in survivors.items()}
    return Allowed(pd.DataFrame(allowed, index=customers.index), dropped, frames)
