"""Funnel steps 1-2 (eligibility, applicability): property-based, against a plain
per-customer reading of the rules, for random customers, catalogues and histories."""
from __future__ import annotations

import math

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from clm.domain import CONTACT_ACTIONS, STAGES, Action
from decisions.catalogue import Catalogue, load_catalogue
from serving.eligibility import allowed_actions

NOW = pd.Timestamp("2025-06-01", tz="UTC")
SEGMENTS = ("smb", "mid_market", "enterprise")
CHANNEL = {"retention_offer": "email", "success_call": "phone", "onboarding_nudge": "in_app",
           "upgrade_offer": "email", "referral_invite": "email", "win_back": "email"}


def ranges(low: float, high: float):
    bound = st.one_of(st.none(), st.floats(low, high))
    return st.one_of(st.none(), st.tuples(bound, bound).map(
        lambda b: None if None not in b and b[0] > b[1] else {"min": b[0], "max": b[1]}))


@st.composite
def catalogues(draw) -> Catalogue:
    actions = [{"id": "none", "description": "nothing", "channel": "none", "unit_cost": 0, "target": "none",
                "cooldown_days": 0}]
    for name in draw(st.lists(st.sampled_from(CONTACT_ACTIONS), unique=True)):
        rules = {}
        if draw(st.booleans()):
            rules["stages"] = draw(st.lists(st.sampled_from(STAGES), unique=True))
        if draw(st.booleans()):
            rules["segments"] = draw(st.lists(st.sampled_from(SEGMENTS), unique=True))
        for field, (low, high) in {"tenure_days": (0, 400), "churn_probability": (0, 1),
                                   "upsell_probability": (0, 1)}.items():
            bounds = draw(ranges(low, high))
            if bounds is not None:
                rules[field] = bounds
        actions.append({"id": name, "description": name, "channel": CHANNEL[name], "unit_cost": 1.0,
                        "target": "retain", "eligibility": rules, "cooldown_days": draw(st.integers(0, 90))})
    policy = {"max_contacts": draw(st.integers(0, 3)), "window_days": draw(st.integers(1, 60))}
    return Catalogue.model_validate({"contact_policy": policy, "actions": actions})


@st.composite
def bases(draw) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = draw(st.integers(1, 12))
    prob = st.one_of(st.just(float("nan")), st.floats(0, 1))
    customers = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "stage": draw(st.lists(st.sampled_from(STAGES), min_size=n, max_size=n)),
        "segment": draw(st.lists(st.sampled_from(SEGMENTS), min_size=n, max_size=n)),
        "tenure_days": draw(st.lists(st.integers(0, 500), min_size=n, max_size=n)),
        "consent_email": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        "consent_phone": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        "churn_probability": draw(st.lists(prob, min_size=n, max_size=n)),
        "upsell_probability": draw(st.lists(prob, min_size=n, max_size=n)),
    })
    contacts = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(("none", *CONTACT_ACTIONS)),
                                       st.integers(-5, 120)), max_size=25))
    history = pd.DataFrame({
        "customer_id": [f"c{c}" for c, _, _ in contacts],
        "action": [a for _, a, _ in contacts],
        "event_time": pd.to_datetime([NOW - pd.Timedelta(days=d) for _, _, d in contacts], utc=True),
    })  # days < 0: a contact logged after `now`, which must not count
    return customers, history


def within(value: float, bounds) -> bool:
    if bounds is None:
        return True
    if math.isnan(value):
        return False
    return (bounds.min is None or value >= bounds.min) and (bounds.max is None or value <= bounds.max)


def by_hand(catalogue: Catalogue, c: dict, history: pd.DataFrame, action: str) -> bool:
    """The rules as a person would check them for one customer and one action."""
    if action == Action.NONE.value:
        return True
    entry = catalogue.entry(action)
    mine = history[(history.customer_id == c["customer_id"]) & (history.event_time <= NOW)]
    consent = {"email": c["consent_email"], "phone": c["consent_phone"], "in_app": True}[entry.channel]
    rules = entry.eligibility
    window = mine[(mine.event_time > NOW - pd.Timedelta(days=catalogue.contact_policy.window_days))
                  & (mine.action != "none")]
    same = mine[mine.action == action]
    return bool(
        consent
        and (rules.stages is None or c["stage"] in [s.value for s in rules.stages])
        and (rules.segments is None or c["segment"] in rules.segments)
        and within(c["tenure_days"], rules.tenure_days)
        and within(c["churn_probability"], rules.churn_probability)
        and within(c["upsell_probability"], rules.upsell_probability)
        and len(window) < catalogue.contact_policy.max_contacts
        and (same.empty or (NOW - same.event_time.max()).total_seconds() / 86_400 >= entry.cooldown_days)
    )


@settings(max_examples=150, deadline=None, derandomize=True)
@given(catalogue=catalogues(), base=bases())
def test_allowed_actions_follow_every_rule_and_nothing_else(catalogue, base):
    customers, history = base
    result = allowed_actions(catalogue, customers, history, NOW)
    assert list(result.allowed.columns) == [a.id for a in catalogue.actions]
    for i, c in customers.iterrows():
        for action in result.allowed.columns:
            assert bool(result.allowed.loc[i, action]) == by_hand(catalogue, c.to_dict(), history, action), (
                action, c.to_dict())
    # The steps' counts add up: every customer an action lost was lost at one step.
    for action in result.allowed.columns[1:]:
        lost = sum(result.dropped[step][action] for step in result.dropped)
        assert lost == len(customers) - int(result.allowed[action].sum())
    # One customer at a time (the API) gives what the whole base (the batch) gives.
    for i in customers.index:
        alone = allowed_actions(catalogue, customers.loc[[i]], history, NOW).allowed
        assert alone.loc[i].to_dict() == result.allowed.loc[i].to_dict()
    # The contacts the batch holds (those since the catalogue's lookback) decide the same.
    recent = history[history.event_time >= NOW - pd.Timedelta(days=catalogue.lookback_days)]
    assert allowed_actions(catalogue, customers, recent, NOW).allowed.equals(result.allowed)


def test_the_default_catalogue_by_hand():
    """Three customers, the shipped catalogue, worked out from catalogue.yaml."""
    customers = pd.DataFrame({
        "customer_id": ["new", "risky", "tired"],
        "stage": ["new", "at_risk", "engaged"],
        "segment": ["smb", "smb", "enterprise"],
        "tenure_days": [10, 400, 700],
        "consent_email": [True, True, True],
        "consent_phone": [False, True, True],
        "churn_probability": [0.1, 0.6, 0.2],
        "upsell_probability": [0.0, 0.01, 0.3],
    })
    history = pd.DataFrame({  # 'tired' got two emails in the last 30 days: the limit (2)
        "customer_id": ["risky", "tired", "tired"],
        "action": ["retention_offer", "upgrade_offer", "referral_invite"],
        "event_time": pd.to_datetime([NOW - pd.Timedelta(days=40), NOW - pd.Timedelta(days=3),
                                      NOW - pd.Timedelta(days=20)], utc=True),
    })
    allowed = allowed_actions(load_catalogue(), customers, history, NOW).allowed
    got = {c: sorted(a for a in allowed.columns if allowed.loc[i, a]) for i, c in enumerate(customers.customer_id)}
    assert got == {
        "new": ["none", "onboarding_nudge"],  # no phone consent; too new for the rest
        "risky": ["none", "success_call", "win_back"],  # retention offer 40 days ago: 90-day cooldown
        "tired": ["none"],  # two contacts in 30 days
    }
    # What the batch holds, the contacts since the catalogue's lookback (90 days), decides the same:
    # the retention offer 40 days ago, outside the 30-day window, still counts for its cooldown.
    recent = history[history.event_time >= NOW - pd.Timedelta(days=load_catalogue().lookback_days)]
    assert len(recent) == 3 and allowed_actions(load_catalogue(), customers, recent, NOW).allowed.equals(allowed)


def test_the_lookback_is_the_longest_rule():
    catalogue = load_catalogue()  # a 30-day contact window; cooldowns up to 90 days (catalogue.yaml)
    assert catalogue.lookback_days == 90
    longer = catalogue.model_copy(update={"contact_policy": catalogue.contact_policy.model_copy(
        update={"window_days": 120})})
    assert longer.lookback_days == 120


def test_missing_columns_are_named():
    import pytest

    from clm.errors import ClmError

    customers = pd.DataFrame({"customer_id": ["a"], "stage": ["engaged"]})
    history = pd.DataFrame({"customer_id": [], "action": [], "event_time": []})
    with pytest.raises(ClmError, match="customers given to the decision funnel lack column.s. segment, tenure_days"):
        allowed_actions(load_catalogue(), customers, history, NOW)
