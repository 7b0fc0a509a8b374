"""The decision funnel (serving/decide.py) and the value rule (decisions/value.py): values
worked out by hand, never a negative-value action, batch equals one at a time, context
weights, budgets and the reasons for doing nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decisions.catalogue import ValueSettings, load_catalogue
from decisions.value import customer_values, next_plan_price
from decisions.catalogue import Context
from serving.decide import decide, value_finder

NOW = pd.Timestamp("2025-06-01", tz="UTC")
PLANS = np.array([29.0, 79.0, 199.0])
NO_HISTORY = pd.DataFrame({"customer_id": pd.Series(dtype=str), "action": pd.Series(dtype=str),
                           "event_time": pd.Series(dtype="datetime64[ns, UTC]")})
COL = {a: j for j, a in enumerate(load_catalogue().contact_ids)}  # the funnel's column order


def customers(n: int, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)], "stage": "engaged", "segment": "smb", "tenure_days": 400.0,
        "consent_email": True, "consent_phone": True, "churn_probability": 0.2, "upsell_probability": 0.1,
        "price": 79.0, "monetary_365d": 948.0,
    }, index=range(n))
    for name, values in columns.items():
        frame[name] = values
    return frame


def effects(n: int, **by_action) -> tuple[np.ndarray, np.ndarray]:
    """(churn change, upgrade change): zero but for by_action = {action: (churn, upgrade)}."""
    churn, upgrade = np.zeros((n, len(COL))), np.zeros((n, len(COL)))
    for action, (c, u) in by_action.items():
        churn[:, COL[action]], upgrade[:, COL[action]] = c, u
    return churn, upgrade


def test_next_plan_price_steps_up_the_ladder():
    got = next_plan_price(np.array([29.0, 79.0, 199.0, np.nan, 50.0]), PLANS)
    np.testing.assert_array_equal(got[[0, 1, 2, 4]], [79.0, 199.0, 199.0, 79.0])
    assert np.isnan(got[3])


def test_expected_value_worked_out_by_hand():
    catalogue = load_catalogue()
    # Price 79: keeping the customer is worth 12 x 79 = 948; an upgrade 12 x (199 - 79) = 1440.
    # retention_offer: churn -0.10 -> 94.8, cost 2 + 0.2 x 3 x 79 = 49.4 -> 45.4.
    # upgrade_offer: upgrade +0.02 -> 28.8, cost 1 -> 27.8.
    churn, upgrade = effects(1, retention_offer=(-0.10, 0.0), upgrade_offer=(0.0, 0.02))
    d = decide(catalogue, customers(1), churn, upgrade, NO_HISTORY, NOW, PLANS)
    assert d.action[0] == "retention_offer"
    assert d.value[0] == pytest.approx(45.4)
    assert (d.retention[0], d.upgrade[0], d.cost[0]) == pytest.approx((94.8, 0.0, 49.4))
    assert [a for a, _ in d.ranked(0, 3)] == ["retention_offer", "upgrade_offer"]
    assert d.ranked(0, 3)[1][1] == pytest.approx(27.8)


def test_values_of_plans_spend_and_a_first_purchase_times_the_margin_by_hand():
    settings = ValueSettings(keep_months=12, upgrade_months=12, purchase_value=25.0, margin=0.4)
    frame = pd.DataFrame({"price": [30.0, np.nan, np.nan, 0.0], "monetary_365d": [0.0, 120.0, 0.0, 0.0]})
    values = customer_values(frame, np.array([0.0, 30.0, 50.0]), settings)
    # plan 30: 0.4 x 12 x 30 = 144, upgrade 0.4 x 12 x (50 - 30) = 96; a shop's buyer with 120 a year:
    # 0.4 x 12 x 10 = 48; never bought: 0.4 x 25 = 10; a free plan keeps its 0 (upgrade 0.4 x 12 x 30).
    np.testing.assert_allclose(values.keep_value, [144.0, 48.0, 10.0, 0.0])
    np.testing.assert_allclose(values.upgrade_margin, [96.0, 0.0, 0.0, 144.0])
    # The catalogue's defaults price a purchase from someone who never bought at nothing, as before.
    assert customer_values(frame, np.array([0.0, 30.0, 50.0]), ValueSettings()).keep_value[2] == 0.0


def test_a_caller_on_the_phone_about_cancelling_weighs_retention_more():
    catalogue = load_catalogue()
    # Worth 27.8 (upgrade) vs 20.0 (retention: churn -0.0739 x 948 = 70.06 - 49.4 = ~20.7).
    churn, upgrade = effects(1, retention_offer=(-0.0739, 0.0), upgrade_offer=(0.0, 0.02))
    plain = decide(catalogue, customers(1), churn, upgrade, NO_HISTORY, NOW, PLANS)
    assert plain.action[0] == "upgrade_offer"
    # cancelling: retain x3, upgrade x0.3 (catalogue.yaml); the value itself is unchanged.
    cancelling = decide(catalogue, customers(1), churn, upgrade, NO_HISTORY, NOW, PLANS,
                        context=Context(intent="cancelling"))
    assert cancelling.action[0] == "retention_offer"
    assert cancelling.value[0] == pytest.approx(-0.0739 * -948 - 49.4)


def test_nothing_pays_so_nothing_is_done_and_the_reason_is_given():
    catalogue = load_catalogue()
    # 9.48 of value for a 40.0 call; every other action changes nothing and costs its price.
    churn, upgrade = effects(2, success_call=(-0.01, 0.0))
    d = decide(catalogue, customers(2, consent_email=[True, False], consent_phone=[True, False],
                                    stage=["engaged", "churned"]), churn, upgrade, NO_HISTORY, NOW, PLANS)
    assert list(d.action) == ["none", "none"]
    # The least bad of those eligible (engaged, tenure 400: no nudge, no win-back): an
    # upgrade offer or referral invite at -1.00; the call at 9.48 - 40 = -30.52.
    assert d.why[0] == "no action pays: the best, upgrade_offer, is worth -1.00 after costs"
    assert d.parts.total[0, COL["success_call"]] == pytest.approx(-30.52)
    assert d.why[1] == "eligible for no action (consent, stage, segment or tenure)"
    assert d.dropped["value"]["success_call"] == 1


def test_contacted_recently_is_the_reason():
    catalogue = load_catalogue()
    history = pd.DataFrame({"customer_id": ["c0", "c0"], "action": ["win_back", "upgrade_offer"],
                            "event_time": [NOW - pd.Timedelta(days=3), NOW - pd.Timedelta(days=10)]})
    churn, upgrade = effects(1, retention_offer=(-0.5, 0.0))
    d = decide(catalogue, customers(1), churn, upgrade, history, NOW, PLANS)  # 2 contacts in 30 days: the limit
    assert d.action[0] == "none" and d.why[0] == "contacted recently: cooldowns or the contact limit"


@st.composite
def random_bases(draw):
    n = draw(st.integers(1, 12))
    change = st.floats(-0.3, 0.3, allow_nan=False)
    churn = np.array(draw(st.lists(st.lists(change, min_size=6, max_size=6), min_size=n, max_size=n)))
    upgrade = np.array(draw(st.lists(st.lists(change, min_size=6, max_size=6), min_size=n, max_size=n)))
    frame = customers(n, price=draw(st.lists(st.sampled_from([29.0, 79.0, 199.0, np.nan]), min_size=n, max_size=n)),
                      stage=draw(st.lists(st.sampled_from(["new", "onboarding", "engaged", "at_risk", "dormant"]),
                                          min_size=n, max_size=n)),
                      tenure_days=draw(st.lists(st.floats(0, 800), min_size=n, max_size=n)),
                      consent_phone=draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    budget = draw(st.one_of(st.none(), st.floats(0, 400)))
    return frame, churn, upgrade, budget


@settings(max_examples=40, deadline=None, derandomize=True)
@given(random_bases())
def test_never_a_negative_value_action_and_one_at_a_time_equals_the_batch(base):
    frame, churn, upgrade, budget = base
    catalogue = load_catalogue()
    d = decide(catalogue, frame, churn, upgrade, NO_HISTORY, NOW, PLANS, budget=budget)
    treated = d.action != "none"
    assert np.all(d.value[treated] > 0)
    assert np.all(d.why[treated] == "") and np.all(d.why[~treated] != "")
    if budget is not None:
        assert d.cost.sum() <= budget + 1e-9
        assert (d.action == "success_call").sum() <= 50  # its daily capacity
    else:  # no budget: each customer's best, whatever the others get
        for i in range(len(frame)):
            alone = decide(catalogue, frame.iloc[[i]], churn[[i]], upgrade[[i]], NO_HISTORY, NOW, PLANS)
            assert alone.action[0] == d.action[i]
            assert alone.value[0] == pytest.approx(d.value[i])


def test_the_api_decides_each_customer_on_their_own_without_a_solver(monkeypatch):
    """Sixty customers whose best action is the success call (a daily capacity of 50, the
    batch's to share out): decided one at a time, as the API does, each gets it, and the
    solver never runs (it cost ~3 ms a request and its result was not used)."""
    import serving.decide

    def no_solver(*args, **kwargs):
        raise AssertionError("the allocation solver ran")

    monkeypatch.setattr(serving.decide, "allocate", no_solver)
    churn, upgrade = effects(60, success_call=(-0.2, 0.0))
    d = decide(load_catalogue(), customers(60), churn, upgrade, NO_HISTORY, NOW, PLANS, per_customer=True)
    assert (d.action == "success_call").all() and load_catalogue().capacities[COL["success_call"]] == 50
    with pytest.raises(ValueError, match="per_customer"):
        decide(load_catalogue(), customers(1), churn[:1], upgrade[:1], NO_HISTORY, NOW, PLANS, budget=10.0,
               per_customer=True)


def test_the_value_finder_counts_who_fell_where_and_what_it_cost():
    catalogue = load_catalogue()
    # c0: no consent at all and churned: eligible for nothing, though the win-back would pay
    #     (churn -0.1 x 948 - 3 = 91.8); c1 and c2: the retention offer pays 45.4 each, but a
    #     budget of 50 buys one (49.4 each): c1 gets it (ties go to the first), c2 falls at
    #     selection; c3: nothing pays.
    frame = customers(4, consent_email=[False, True, True, True], consent_phone=[False, True, True, True],
                      stage=["churned", "engaged", "engaged", "engaged"])
    churn, upgrade = effects(4, retention_offer=(-0.10, 0.0))
    churn[0, COL["win_back"]] = -0.10
    churn[3, COL["retention_offer"]] = 0.0
    d = decide(catalogue, frame, churn, upgrade, NO_HISTORY, NOW, PLANS, budget=50.0)
    assert list(d.action) == ["none", "retention_offer", "none", "none"]
    finder = {row["step"]: row for row in value_finder(d)}
    assert finder["eligibility"]["customers"] == 1
    assert finder["eligibility"]["value_left"] == pytest.approx(0.10 * 948 - 3.0)
    assert finder["selection"]["customers"] == 1 and finder["selection"]["value_left"] == pytest.approx(45.4)
    assert finder["value"]["customers"] == 1 and finder["value"]["value_left"] == 0
    assert d.why[2] == "the budget or a capacity went to customers where actions are worth more"
