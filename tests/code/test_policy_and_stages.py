"""The logged policy's probabilities and the true stage rules, on hand-made inputs."""
from __future__ import annotations

import numpy as np

from clm.domain import ALL_ACTIONS, Action
from simulator.params import SimulationParams
from simulator.policy import BusinessPolicyInputs, action_probabilities, draw_actions
from simulator.stages import true_stage

P = SimulationParams()


def _inputs(n: int, **overrides) -> BusinessPolicyInputs:
    base = dict(
        open_tickets=np.zeros(n), sessions_ewm=np.ones(n), days_inactive=np.zeros(n), tenure_days=np.full(n, 200),
        last_nps=np.full(n, -1), recent_failed_payment=np.zeros(n), enterprise_or_mid=np.zeros(n),
        top_tier=np.zeros(n, dtype=bool),
        consent={"email": np.ones(n, dtype=bool), "phone": np.ones(n, dtype=bool), "in_app": np.ones(n, dtype=bool)},
    )
    base.update(overrides)
    return BusinessPolicyInputs(**base)


def col(action: Action) -> int:
    return ALL_ACTIONS.index(action.value)


def test_probabilities_sum_to_one_with_floors():
    probs = action_probabilities(_inputs(3), P)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs[:, col(Action.NONE)] >= P.policy_min_none).all()
    assert (probs >= P.policy_min_action - 1e-12).all()


def test_ineligible_actions_get_zero():
    consent = {"email": np.array([False]), "phone": np.array([False]), "in_app": np.array([True])}
    probs = action_probabilities(_inputs(1, consent=consent, top_tier=np.array([True])), P)[0]
    for action in (Action.RETENTION_OFFER, Action.SUCCESS_CALL, Action.UPGRADE_OFFER, Action.WIN_BACK):
        assert probs[col(action)] == 0.0
    assert probs[col(Action.ONBOARDING_NUDGE)] > 0


def test_lapsed_customers_get_win_back_more_often():
    probs = action_probabilities(_inputs(2, days_inactive=np.array([0, 30])), P)
    assert probs[1, col(Action.WIN_BACK)] > 3 * probs[0, col(Action.WIN_BACK)]


def test_drawn_actions_follow_the_probabilities():
    probs = np.tile([[0.5, 0.3, 0.2, 0, 0, 0, 0]], (60_000, 1))
    chosen, propensity = draw_actions(np.random.default_rng(0), probs)
    freq = np.bincount(chosen, minlength=7) / chosen.size
    assert np.allclose(freq[:3], [0.5, 0.3, 0.2], atol=0.01) and freq[3:].sum() == 0
    assert np.allclose(propensity, probs[np.arange(chosen.size), chosen])


def test_true_stage_rules_in_precedence_order():
    # One customer per rule; each also satisfies the rules after it where possible, so
    # the precedence order is what decides.
    churned = np.array([True, False, False, False, False, False, False])
    tenure = np.array([400, 5, 60, 400, 400, 400, 400])
    active_days = np.array([0, 2, 10, 300, 300, 300, 300])
    inactive = np.array([60, 0, 0, 45, 0, 0, 0])
    p90 = np.array([np.nan, 0.5, 0.5, 0.5, 0.3, 0.02, 0.1])
    promoter = np.array([1, 1, 1, 1, 1, 10, 10])
    referral = np.full(7, 10**6)
    got = true_stage(churned, tenure, active_days, inactive, p90, promoter, referral)
    assert got.tolist() == ["churned", "new", "onboarding", "dormant", "at_risk", "advocate", "engaged"]


def test_advocate_needs_recent_promotion():
    got = true_stage(
        np.array([False, False]), np.array([400, 400]), np.array([300, 300]), np.array([0, 0]),
        np.array([0.02, 0.02]), np.array([400, 400]), np.array([10**6, 30]),
    )
    assert got.tolist() == ["engaged", "advocate"]


def test_the_churn_risk_baseline_gives_the_best_average_retention_action_where_it_pays():
    """By hand. Columns: retention offer ($2), success call ($5, room for 1), upgrade offer
    (not a retention action: no average value). Risk order: c0, c2, c1, c3. c0's best is the
    call (25 > 10); c2's the offer (8 > 3); c1's averages do not pay (-5, -1): none; c3 would
    take the call (40), but c0 had it. Budget 7 = 5 + 2."""
    from pipelines.policy import churn_risk_choice

    risk = np.array([0.9, 0.5, 0.7, 0.2])
    average_value = np.array([[10.0, 25.0, np.nan], [-5.0, -1.0, np.nan], [8.0, 3.0, np.nan], [30.0, 40.0, np.nan]])
    allowed = np.ones((4, 3), dtype=bool)
    cost = np.tile([2.0, 5.0, 1.0], (4, 1))
    choice = churn_risk_choice(risk, average_value, allowed, cost, 7.0, np.array([np.inf, 1.0, np.inf]))
    assert choice.tolist() == [1, -1, 0, -1]
    # Not allowed (a rule, a consent): not given, even where it would pay most; with $9, c0 and c2 take the
    # offer ($2 each) and the call is left for c3 ($5).
    allowed[0, 1] = False
    assert churn_risk_choice(risk, average_value, allowed, cost, 9.0, np.array([np.inf, 1.0, np.inf])).tolist() == \
        [0, -1, 0, 1]


def test_a_shop_customer_who_never_bought_is_onboarding_not_churned():
    """Non-contractual: no purchase yet (recency unknown) is a customer still to activate,
    new in their first 14 days; after a first purchase, 100 quiet days is churned, 70 dormant."""
    import pandas as pd

    from clm.stages import current_stage

    features = pd.DataFrame({"tenure_days": [10.0, 400.0, 400.0, 400.0, 400.0],
                             "recency_days": [np.nan, np.nan, 100.0, 70.0, 5.0]})
    assert current_stage(features, contractual=False).tolist() == ["new", "onboarding", "churned", "dormant",
                                                                   "engaged"]
