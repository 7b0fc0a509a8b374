"""The real-time API's numpy path (`training.models.Columns`) gives what the batch's pandas
path gives, value for value: the models' matrices, the stage rules, the scores and effects,
the funnel, the reasons and whole answers, with missing values, unseen categories, text
among numbers, repeated customers and contact histories. Values, never timings."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clm.domain import Stage
from clm.stages import current_stage, stage_ids
from decisions.catalogue import load_catalogue
from decisions.catalogue import Context
from serving.decide import decide
from serving.eligibility import Contacts, allowed_actions
from serving.scoring import (
    CONSENT_COLUMNS,
    Champions,
    ContactHistory,
    DecisionData,
    score_and_decide,
    score_rows,
)
from training.models import SPECS, Columns, category_codes, column, fit_lightgbm, prepare_matrix
from training.uplift import fit_dr_learner, fit_t_learner

pytestmark = pytest.mark.filterwarnings("ignore")

NOW = pd.Timestamp("2025-06-01", tz="UTC")
PLANS = np.array([29.0, 79.0, 199.0])
FEATURES = ["x1", "x2", "segment", "plan", "tenure_days", "is_subscribed", "days_since_last_activity",
            "active_days_90d", "last_nps", "nps_trend", "recent_past_ratio", "price", "monetary_365d"]
SEGMENTS = ["smb", "mid_market", "enterprise"]


def base(n: int, seed: int, messy: bool = False) -> pd.DataFrame:
    """Customers' features as the online store gives them (numbers as floats, text as
    objects); messy: missing values everywhere, and categories the models never saw."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"c{seed}-{i}" for i in range(n)],
        "x1": rng.random(n), "x2": rng.random(n),
        "segment": rng.choice(SEGMENTS, n).astype(object),
        "plan": rng.choice(["basic", "pro", "business"], n).astype(object),
        "tenure_days": rng.integers(0, 900, n).astype(float),
        "is_subscribed": (rng.random(n) < 0.8).astype(float),
        "days_since_last_activity": rng.integers(0, 60, n).astype(float),
        "active_days_90d": rng.integers(0, 90, n).astype(float),
        "last_nps": rng.integers(0, 11, n).astype(float),
        "nps_trend": rng.integers(-3, 4, n).astype(float),
        "recent_past_ratio": rng.random(n) * 1.5,
        "price": rng.choice(PLANS, n),
        "monetary_365d": rng.random(n) * 2000,
    })
    if messy:
        for name in FEATURES:
            gaps = rng.random(n) < 0.15
            frame.loc[gaps, name] = None if frame[name].dtype == object else np.nan
        frame.loc[rng.random(n) < 0.1, "segment"] = "never_seen"
        frame.loc[rng.random(n) < 0.1, "plan"] = "legacy"
    return frame


def labelled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(frame)
    return frame.assign(
        churn=(rng.random(n) < 0.1 + 0.5 * frame.x2).astype(int),
        upsell=(rng.random(n) < 0.05 + 0.3 * frame.x1).astype(int),
        stage=current_stage(frame, True).to_numpy(),
        clv=frame.price * (1 + 10 * frame.x1) + rng.normal(0, 5, n),
    )


def decision_log(n: int, seed: int) -> pd.DataFrame:
    """Logged decisions: the retention offer cuts churn where x1 > 0.5, the upgrade offer
    raises upgrades with x1, the success call does little."""
    rng = np.random.default_rng(seed)
    frame = base(n, seed)
    u = rng.random(n)
    action = np.select([u < 0.25, u < 0.5, u < 0.7], ["retention_offer", "upgrade_offer", "success_call"], "none")
    churn = 0.2 + 0.3 * frame.x2 - np.where((action == "retention_offer") & (frame.x1 > 0.5), 0.2, 0.0)
    upgrade = 0.05 + np.where(action == "upgrade_offer", 0.2 * frame.x1, 0.0)
    return frame.assign(action=action, propensity=np.select([u < 0.25, u < 0.5, u < 0.7], [0.25, 0.25, 0.2], 0.3),
                        churn=(rng.random(n) < churn).astype(int), upsell=(rng.random(n) < upgrade).astype(int))


@pytest.fixture(scope="module")
def champions() -> dict[str, Champions]:
    train, valid = labelled(base(1500, 1), 1), labelled(base(500, 2), 2)
    models = {name: fit_lightgbm(SPECS[name], train, valid, FEATURES) for name in ("churn", "upsell", "stage", "clv")}
    log_train, log_valid = decision_log(4000, 3), decision_log(1500, 4)
    t = fit_t_learner(log_train, log_valid, FEATURES, ["churn", "upgrade"], 90)
    dr = fit_dr_learner(log_train, log_valid, FEATURES, ["churn", "upgrade"], 90, t)
    versions: dict[str, str | None] = {"churn": "1", "upsell": "1", "stage": "1", "clv": "1", "uplift": "1"}
    return {"t_learner": Champions(models, t, versions), "dr_learner": Champions(models, dr, versions),
            "no_uplift": Champions(models, None, {**versions, "uplift": None})}


def columns_of(frame: pd.DataFrame) -> Columns:
    """What the API holds: numpy columns (numbers as floats, text as objects)."""
    return Columns({c: frame[c].to_numpy(dtype=float if frame[c].dtype.kind == "f" else object) for c in frame},
                   len(frame))


def same(a: object, b: object) -> bool:
    """Equal values, NaN equal to NaN, None to None; numbers to 1e-12."""
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-12 * max(1.0, abs(a))
    return bool(a == b) if not (a is None or b is None) else a is b


def assert_same_columns(a: object, b: object, names: list[str]) -> None:
    for name in names:
        left, right = column(a, name), column(b, name)
        assert len(left) == len(right), name
        for x, y in zip(left, right):
            assert same(x, y), (name, x, y)


@pytest.mark.parametrize("rows", [1, 7, 64, 65, 300])
def test_the_models_matrix_is_the_same_from_columns_and_from_a_frame(rows):
    frame = base(rows, 10, messy=True)
    frame["x2"] = frame["x2"].astype(object)
    frame.loc[frame.index[::5], "x2"] = "not a number"  # text among numbers: NaN either way
    frame.loc[frame.index[::7], "x2"] = "0.25"  # a number written as text: read as one either way
    frame["tenure_days"] = frame["tenure_days"].fillna(0).astype(int)  # integers
    categories = {"segment": SEGMENTS, "plan": ["basic", "business", "pro"]}
    features = [*FEATURES, "not_in_the_frame"]
    from_frame = prepare_matrix(frame, features, categories)
    from_columns = prepare_matrix(columns_of(frame), features, categories)
    np.testing.assert_array_equal(from_frame, from_columns)
    # Categories coded as pandas codes them for LightGBM, by dictionary or not.
    values = frame["segment"].to_numpy(dtype=object)
    expected = pd.Categorical(values, categories=SEGMENTS).codes
    np.testing.assert_array_equal(category_codes(values, {c: k for k, c in enumerate(SEGMENTS)}, tuple(SEGMENTS)),
                                  np.where(expected >= 0, expected, np.nan))


def test_the_stage_rules_read_columns_as_they_read_a_frame():
    frame = base(400, 11, messy=True)
    for contractual in (True, False):
        rules = current_stage(frame, contractual)
        assert list(stage_ids(columns_of(frame), contractual)) == rules.tolist()
        assert set(rules) <= {s.value for s in Stage}


def history(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Contacts of some customers, before and after NOW (those after must not count), and
    of customers not in the frame."""
    rng = np.random.default_rng(seed)
    ids = [*frame.customer_id.sample(min(len(frame), 40), random_state=seed), "someone-else"]
    n = 120
    return pd.DataFrame({
        "customer_id": rng.choice(ids, n),
        "action": rng.choice(["retention_offer", "upgrade_offer", "success_call", "onboarding_nudge", "none"], n),
        "event_time": pd.to_datetime([NOW - pd.Timedelta(days=int(d), hours=int(h))
                                      for d, h in zip(rng.integers(-5, 120, n), rng.integers(0, 24, n))], utc=True),
    })


def funnel_customers(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = base(n, seed, messy=True)
    return frame.assign(
        customer_id=rng.choice(frame.customer_id, n),  # a customer may come twice
        stage=rng.choice([s.value for s in Stage], n), segment=rng.choice([*SEGMENTS, None], n),
        consent_email=rng.random(n) < 0.7, consent_phone=rng.random(n) < 0.5,
        churn_probability=np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
        upsell_probability=np.where(rng.random(n) < 0.1, np.nan, rng.random(n)))


@pytest.mark.parametrize("rows", [1, 12, 200])
def test_the_funnel_decides_the_same_from_columns_and_contacts(rows):
    catalogue = load_catalogue()
    customers = funnel_customers(rows, 12 + rows)
    contacts = history(customers, rows)
    rng = np.random.default_rng(rows)
    k = len(catalogue.contact_ids)
    churn, upgrade = -rng.random((rows, k)) * 0.2, rng.random((rows, k)) * 0.1 - 0.02
    allowed = allowed_actions(catalogue, customers, contacts, NOW)
    from_columns = allowed_actions(catalogue, columns_of(customers), Contacts.of(contacts), NOW)
    np.testing.assert_array_equal(allowed.matrix, from_columns.matrix)
    assert allowed.dropped == from_columns.dropped
    for context in (None, Context(intent="cancelling", channel="phone")):
        a = decide(catalogue, customers, churn, upgrade, contacts, NOW, PLANS, context=context, per_customer=True)
        b = decide(catalogue, columns_of(customers), churn, upgrade, Contacts.of(contacts), NOW, PLANS,
                   context=context, per_customer=True)
        for name in ("customer_id", "action", "choice", "allowed", "value", "retention", "upgrade", "cost", "score",
                     "why", "fell_at", "at_stake"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.dropped == b.dropped
        # One customer at a time (the API) as in the whole frame (the batch).
        for i in range(min(rows, 12)):
            alone = decide(catalogue, columns_of(customers.iloc[[i]]), churn[[i]], upgrade[[i]],
                           Contacts.of(contacts), NOW, PLANS, context=context, per_customer=True)
            assert alone.action[0] == a.action[i] and alone.why[0] == a.why[i]
            np.testing.assert_array_equal(alone.score[0], a.score[i])


def decision_data(frame: pd.DataFrame, seed: int) -> DecisionData:
    rng = np.random.default_rng(seed)
    known = frame.customer_id[rng.random(len(frame)) < 0.9].drop_duplicates()  # some have no consent on record
    consents = pd.DataFrame({c: rng.random(len(known)) < 0.6 for c in CONSENT_COLUMNS},
                            index=pd.Index(known.to_numpy(), name="customer_id"))
    return DecisionData(consents, ContactHistory.of(history(frame, seed)), PLANS)


@pytest.mark.parametrize("learner", ["t_learner", "dr_learner", "no_uplift"])
@pytest.mark.parametrize("contractual", [True, False])
def test_scores_and_effects_are_the_same_from_columns(champions, learner, contractual):
    rng = np.random.default_rng(20)
    frame = base(150, 20, messy=True).assign(  # a shop's: who bought, and when last
        frequency_total=rng.choice([0.0, 1.0, 4.0, np.nan], 150), recency_days=rng.choice([3.0, 70.0, 200.0, np.nan], 150))
    data = decision_data(frame, 20)
    ids = load_catalogue().contact_ids
    a = score_rows(champions[learner], frame, contractual, data.consents, ids)
    b = score_rows(champions[learner], columns_of(frame), contractual, data.consents, ids)
    np.testing.assert_array_equal(a.live, b.live)
    np.testing.assert_array_equal(a.decided, b.decided)
    assert_same_columns(a.scores, b.scores, list(a.scores.columns))
    assert_same_columns(a.funnel, b.funnel, list(a.funnel.columns))
    assert list(a.funnel.columns) == b.funnel.columns
    for ours, theirs in ((a.churn_change, b.churn_change), (a.upgrade_change, b.upgrade_change)):
        assert (ours is None) == (theirs is None) == (learner == "no_uplift")
        if ours is not None:
            np.testing.assert_array_equal(ours, theirs)
    assert a.live.any() and not a.live.all()
    assert a.decided.all() != contractual


@pytest.mark.parametrize("learner", ["t_learner", "dr_learner", "no_uplift"])
def test_whole_answers_are_the_same_from_columns_one_customer_at_a_time(champions, learner):
    """score_and_decide on a DataFrame of many customers (the pandas path) gives, customer
    for customer, what the API's columns of one customer give: scores, ranked actions,
    values and reasons."""
    catalogue = load_catalogue()
    frame = base(240, 30, messy=True)
    data = decision_data(frame, 30)
    for context in (None, Context(intent="cancelling")):
        together = score_and_decide(catalogue, champions[learner], frame, True, data, NOW, context, 3)
        acted = 0
        for i, expected in enumerate(together):
            (alone,) = score_and_decide(catalogue, champions[learner], columns_of(frame.iloc[[i]]), True, data, NOW,
                                        context, 3)
            assert alone.in_population == expected.in_population
            assert alone.scores.keys() == expected.scores.keys()
            for key, value in expected.scores.items():
                assert same(alone.scores[key], value), (key, alone.scores[key], value)
            assert type(alone.scores["churn_probability"]) is type(value := expected.scores["churn_probability"]), value
            if expected.scores["stage_probabilities"] is not None:
                assert json.loads(alone.scores["stage_probabilities"]) == json.loads(expected.scores["stage_probabilities"])
            assert [r.__dict__ for r in alone.recommendations] == [r.__dict__ for r in expected.recommendations]
            acted += expected.recommendations[0].action != "none"
        if learner != "no_uplift":
            assert acted >= 4  # actions, with reasons, were compared
