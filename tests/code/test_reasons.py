"""Reasons in words (serving/reasons.py): one phrase per feature, the top drivers from
LightGBM's contributions, the value sentence."""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from serving.reasons import phrase, top_drivers, value_sentence
from training.models import BINARY, ModelSpec, fit_baseline, fit_lightgbm


def test_phrases_read_as_words():
    assert phrase("days_since_last_activity", 21.0) == "no sessions in 21 days"
    assert phrase("open_tickets", 2.0) == "2 open support tickets"
    assert phrase("open_tickets", 1.0) == "1 open support ticket"
    assert phrase("sessions_trend_12w", -0.5) == "weekly sessions falling (-0.50 a week)"
    assert phrase("minutes_30d", 12.4) == "12 minutes of use in 30 days"
    assert phrase("minutes_per_session_90d", 19.88) == "20 minutes a session"
    assert phrase("monetary_90d", 58.0) == "paid 58.00 in the last 90 days"
    assert phrase("segment", "smb") == "smb segment"
    assert phrase("region", "emea") == "in region emea"
    assert phrase("gap_std_days", 12.4) == "purchases irregular by 12 days"
    assert phrase("mean_gap_days", 12.4) == "usually buys every 12 days"
    assert phrase("bgnbd_p_alive", 0.25) == "25% likely to still be buying, by their buying rhythm"
    # A missing value says what its absence means.
    assert phrase("last_nps", float("nan")) == "never answered the NPS survey"
    assert phrase("days_since_last_ticket", None) == "never a support ticket"
    assert phrase("max_gap_180d", None) == "no repeat purchase in the last 6 months"  # a lapsed customer, not a regular
    # A business's own attribute (no phrase can be written for it beforehand): named with its value.
    assert phrase("loyalty_tier", "gold") == "loyalty tier gold"
    assert phrase("loyalty_tier", None) == "loyalty tier not known"


def test_every_feature_has_words_and_so_has_its_absence():
    """No driver line is data-dictionary text (16% of them were): every feature clm builds
    has a phrase, and one whose description says it can be null says what null means."""
    from features.groups import FLOAT, GROUPS
    from serving.reasons import MISSING, PHRASES

    features = [f for g in GROUPS for f in g.features]
    assert [f.name for f in features if f.name not in PHRASES] == []
    assert [f.name for f in features if "null" in f.description and f.name not in MISSING] == []
    for f in features:  # each reads a value of its kind without failing, and never as the description
        said = phrase(f.name, 3.0 if f.kind == FLOAT else "basic")
        assert said and f.description.rstrip(".") not in said


def test_the_top_drivers_are_what_pushes_this_customers_score_up():
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame({"days_since_last_activity": rng.integers(0, 60, n).astype(float),
                          "open_tickets": rng.integers(0, 4, n).astype(float), "noise": rng.random(n)})
    logit = -3 + 0.08 * frame.days_since_last_activity + 0.9 * frame.open_tickets
    frame["churn"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    spec = ModelSpec("churn", BINARY, "churn")
    model = fit_lightgbm(spec, frame.iloc[:3000], frame.iloc[3000:], ["days_since_last_activity", "open_tickets", "noise"])
    customers = pd.DataFrame({"days_since_last_activity": [55.0, 2.0, 1.0], "open_tickets": [0.0, 3.0, 0.0],
                              "noise": [0.5, 0.5, 0.5]})
    drivers = top_drivers(model, customers)
    assert drivers[0][0] == "no sessions in 55 days"
    assert drivers[1][0] == "3 open support tickets"
    # Active, no tickets: nothing pushes the churn score up, so no driver is named for it.
    assert not any("no sessions" in d or "ticket" in d for d in drivers[2])
    # A registered scikit-learn baseline has no contributions: no drivers, no error.
    baseline = fit_baseline(spec, frame.iloc[:3000], ["days_since_last_activity", "open_tickets", "noise"])
    assert top_drivers(baseline, customers) == [[], [], []]


def test_value_sentence_speaks_of_the_actions_own_outcome():
    assert value_sentence("retention_offer", "retain", 45.4, 94.8, 0.0, 49.4) == (
        "retention_offer: expected value 45.40 (94.80 from fewer leaving, minus 49.40 cost)")
    # A win-back's churn change is customers coming back; a loss is said as one, not "-10.21 from fewer leaving".
    assert value_sentence("win_back", "win_back", 5.0, 8.0, 0.0, 3.0) == (
        "win_back: expected value 5.00 (8.00 from winning them back, minus 3.00 cost)")
    assert value_sentence("win_back", "win_back", -13.21, -10.21, 0.0, 3.0) == (
        "win_back: expected value -13.21 (10.21 lost as fewer come back, minus 3.00 cost)")
    # An upgrade offer is justified by upgrades first; its effect on leaving comes after.
    assert value_sentence("upgrade_offer", "upgrade", 11.0, -2.0, 14.0, 1.0) == (
        "upgrade_offer: expected value 11.00 (14.00 from upgrades, 2.00 lost to more leaving, minus 1.00 cost)")


def test_path_contributions_credit_each_split_with_the_move_in_expected_output():
    """One tree on one feature, by hand: x < 0.5 -> leaf a, else leaf b. Its expectation is
    the count-weighted mean of the leaves; a customer in leaf a gets value(a) - expectation
    on x, none on the other feature; contributions + bias = the raw score (as TreeSHAP's)."""
    from serving.contributions import PathContributions

    rng = np.random.default_rng(1)
    x = np.column_stack([np.r_[np.zeros(300), np.ones(100)], rng.random(400)])
    y = x[:, 0] * 2.0  # 0 for 300 rows, 2 for 100
    booster = lgb.train({"objective": "regression", "num_leaves": 2, "learning_rate": 1.0, "min_data_in_leaf": 1,
                         "verbose": -1, "boost_from_average": False}, lgb.Dataset(x, y), num_boost_round=1)
    paths = PathContributions(booster)
    leaf_value = {int(leaf): float(value) for leaf, value in zip(booster.predict(x, pred_leaf=True).ravel(),
                                                                   booster.predict(x))}
    low, high = leaf_value[booster.predict(x[:1], pred_leaf=True).ravel()[0]], leaf_value[booster.predict(x[-1:], pred_leaf=True).ravel()[0]]
    expected = (300 * low + 100 * high) / 400
    assert paths.bias == pytest.approx(expected)
    found = paths.contributions(booster.predict(x[[0, -1]], pred_leaf=True))
    np.testing.assert_allclose(found, [[low - expected, 0.0], [high - expected, 0.0]])
    # Against LightGBM's TreeSHAP on a bigger model: the same bias, and each row's sum the raw score.
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "verbose": -1},
                        lgb.Dataset(rng.random((2000, 4)), (rng.random(2000) < 0.3).astype(int)), num_boost_round=40)
    rows = rng.random((50, 4))
    paths = PathContributions(booster)
    shap = booster.predict(rows, pred_contrib=True)
    assert paths.bias == pytest.approx(shap[0, -1])
    np.testing.assert_allclose(paths.contributions(booster.predict(rows, pred_leaf=True)).sum(axis=1) + paths.bias,
                               booster.predict(rows, raw_score=True), atol=1e-9)


def test_path_contributions_are_treeshap_where_every_tree_has_one_split():
    """With one split per tree, each tree's move is its one feature's, in any order the
    features are revealed: the path contributions are TreeSHAP's, feature by feature."""
    from serving.contributions import PathContributions

    rng = np.random.default_rng(2)
    x = rng.random((3000, 5))
    y = (rng.random(3000) < 1 / (1 + np.exp(-(3 * x[:, 0] - 2 * x[:, 3])))).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 2, "verbose": -1}, lgb.Dataset(x, y),
                        num_boost_round=60)
    rows = rng.random((200, 5))
    np.testing.assert_allclose(PathContributions(booster).contributions(booster.predict(rows, pred_leaf=True)),
                               booster.predict(rows, pred_contrib=True)[:, :-1], atol=1e-12)
