"""Labels by hand, the time split, the promotion gate, rollback, and time travel."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.domain import Table
from clm.workspace import Workspace
from tests.handmade import t, write_hand_made
from training import evaluate as ev
from training import registry
from training.labels import (
    LabelConfig,
    NotEnoughHistory,
    candidate_cutoffs,
    outcome_labels,
    split_with_longest_window,
    time_split,
)
from training.models import SPECS, PlattCalibrator, fit_lightgbm

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def hand_made(tmp_path: Path) -> Workspace:
    return write_hand_made(tmp_path / "ws")


def labels_at(ws: Workspace, cutoff: str, horizon: int, clv_days: int, contractual: bool = True) -> dict:
    frame = outcome_labels(ws, [t(cutoff)], LabelConfig(horizon, clv_days), contractual)
    return {r.customer_id: (r.churn, r.upsell, r.clv) for r in frame.itertuples()}


def test_contractual_labels_by_hand(hand_made):
    # At 02-01 only A is live. Window [02-01, 03-02): A cancels at 03-02 00:00, just
    # outside; upgrades on 02-20; pays 29 on 02-04 and 29 on 03-01 (02-01 failed).
    assert labels_at(hand_made, "2024-02-01", 30, 30) == {"A": (0, 1, 58.0)}
    # One more day and the cancellation is inside the window.
    assert labels_at(hand_made, "2024-02-01", 31, 30)["A"][0] == 1
    # At 03-01 A and B are live; A cancels on 03-02; 03-01's bill is at the cutoff, so in
    # the window; B pays nothing after 02-15.
    assert labels_at(hand_made, "2024-03-01", 30, 30) == {"A": (1, 0, 29.0), "B": (0, 0, 0.0)}


def test_non_contractual_labels_by_hand(hand_made):
    # Population: anyone with a paid purchase before the cutoff. Churn: no paid purchase
    # in the window; no plans, so no upsell label.
    got = labels_at(hand_made, "2024-03-01", 30, 30, contractual=False)
    assert {k: v[0] for k, v in got.items()} == {"A": 0, "B": 1}
    assert all(pd.isna(v[1]) for v in got.values())


def test_time_split_leaves_no_overlap():
    cutoffs = list(pd.date_range("2024-02-01", "2025-10-01", freq="MS", tz="UTC"))
    split = time_split(cutoffs, 90)
    assert split.test == t("2025-10-01")
    assert split.valid == t("2025-07-01")  # Jul 1 + 90 days = Sep 29; Aug 1 + 90 = Oct 30
    assert split.train[-1] == t("2025-04-01") and split.train[0] == t("2024-02-01")
    window = pd.Timedelta(days=90)
    assert max(split.train) + window <= split.valid and split.valid + window <= split.test


def test_cutoffs_never_need_data_after_as_of(small_workspace):
    manifest = small_workspace.read_manifest()  # 2024-01-01 .. 2024-05-01
    assert candidate_cutoffs(manifest, t("2024-05-01"), 30) == [t("2024-02-01"), t("2024-03-01"), t("2024-04-01")]
    assert candidate_cutoffs(manifest, t("2024-04-15"), 30) == [t("2024-02-01"), t("2024-03-01")]


# ------------------------------------------------------------------ gate and registry
def synthetic(n: int, seed: int) -> pd.DataFrame:
    """A known signal: churn depends on x only."""
    rng = np.random.default_rng(seed)
    x, noise = rng.normal(size=n), rng.normal(size=n)
    churn = (rng.random(n) < 1 / (1 + np.exp(-(2.5 * x - 1.5)))).astype(int)
    return pd.DataFrame({"x": x, "noise": noise, "churn": churn})


@pytest.fixture(scope="module")
def good_and_bad():
    spec = SPECS["churn"]
    train, valid = synthetic(4000, 1), synthetic(2000, 2)
    good = fit_lightgbm(spec, train, valid, ["x", "noise"])
    bad = fit_lightgbm(spec, train, valid, ["noise"])
    return good, bad, synthetic(3000, 3)


def test_platt_calibration_recovers_a_known_miscalibration_and_keeps_the_ranking():
    # Scores whose true probability is sigmoid(2 logit(s) - 1): the fit must find slope 2,
    # intercept -1 (standard errors at this size are about 0.01), and never reorder scores.
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.02, 0.98, 200_000)
    logit = np.log(scores / (1 - scores))
    y = rng.random(scores.size) < 1 / (1 + np.exp(-(2 * logit - 1)))
    calibrator = PlattCalibrator().fit(scores, y)
    assert abs(calibrator.slope - 2.0) < 0.05 and abs(calibrator.intercept + 1.0) < 0.05
    out = calibrator.predict(np.sort(scores))
    assert np.all(np.diff(out) >= 0) and len(np.unique(out)) == len(np.unique(scores))
    assert abs(calibrator.predict(np.array([0.5]))[0] - 1 / (1 + np.exp(1.0))) < 0.02
    # A window with one outcome only (a tiny base) leaves the scores as they are.
    identity = PlattCalibrator().fit(scores[:100], np.zeros(100))
    assert np.allclose(identity.predict(np.array([0.1, 0.7])), [0.1, 0.7])


def test_gate_promotes_a_better_model_and_refuses_a_worse(good_and_bad):
    good, bad, test = good_and_bad
    assert registry.decide_promotion(good, bad, test).promote
    refused = registry.decide_promotion(bad, good, test)
    assert not refused.promote and "not better" in refused.reason
    assert registry.decide_promotion(bad, None, test).promote  # the first version
    # ...unless it is no better than its baseline (here the good model plays the baseline).
    behind = registry.decide_promotion(bad, None, test, baseline=good)
    assert not behind.promote and "no better than its scikit-learn baseline" in behind.reason
    assert registry.decide_promotion(good, None, test, baseline=bad).promote


def test_gate_refuses_nan_predictions(good_and_bad):
    good, _, test = good_and_bad
    broken = test.assign(x=np.nan)  # all-missing inputs still predict; poison the calibrator instead
    poisoned = type(good)(**{**vars(good)})
    poisoned.calibrator = None
    poisoned.estimator = type("NaNModel", (), {"predict_proba": lambda self, x: np.full((len(x), 2), np.nan)})()
    decision = registry.decide_promotion(poisoned, good, broken)
    assert not decision.promote and "NaN" in decision.reason


def test_gate_refuses_a_model_that_predicts_one_value_for_everyone(good_and_bad):
    good, _, test = good_and_bad
    constant = type(good)(**{**vars(good)})
    constant.calibrator = None
    constant.estimator = type("Constant", (), {"predict_proba": lambda self, x: np.tile([0.7, 0.3], (len(x), 1))})()
    decision = registry.decide_promotion(constant, None, test)  # even as the first version
    assert not decision.promote and "same value for every customer" in decision.reason


def test_spearman_of_a_constant_prediction_is_undefined_not_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = ev.regression_metrics(np.array([1.0, 5.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    assert np.isnan(figures["spearman"]) and figures["mae"] == pytest.approx(5 / 3)


def test_registry_aliases_promotion_and_rollback(good_and_bad, tmp_path):
    import mlflow

    good, bad, test = good_and_bad
    ws = Workspace(tmp_path / "ws")
    client = registry.connect(ws, create=True)  # as training does
    mlflow.set_experiment(experiment_id=registry.experiment(client, ws, "churn"))
    versions = []
    for model in (bad, good, bad):
        with mlflow.start_run():
            version = registry.log_model(model, test[model.features].head(3), "churn")
        client.set_registered_model_alias(registry.registered_name("churn"), registry.CHALLENGER, version)
        if registry.decide_promotion(model, registry.load_champion(client, "churn"), test).promote:
            registry.set_champion(client, "churn", version)
        versions.append(version)
    assert versions == ["1", "2", "3"]
    # v1 was first, v2 beat it, v3 (worse) stays challenger.
    assert registry.alias_version(client, "churn", registry.CHAMPION) == "2"
    assert registry.alias_version(client, "churn", registry.CHALLENGER) == "3"
    # The champion loaded back from the registry predicts as the model we logged.
    loaded = registry.load_champion(client, "churn")
    assert np.allclose(loaded.predict(test), good.predict(test))
    registry.set_champion(client, "churn", "3")  # by hand
    # Promoting the champion again changes nothing, so rollback still goes to the one before.
    assert registry.set_champion(client, "churn", "3") is False
    assert registry.rollback(client, "churn") == "2"
    assert registry.rollback(client, "churn") == "1"
    with pytest.raises(Exception, match="no previous champion"):
        registry.rollback(client, "churn")


# ------------------------------------------------------------------ time travel
@pytest.mark.slow
def test_train_as_of_ignores_data_after_it(tmp_path):
    """Appending data after D changes nothing that `train --as-of D` produces."""
    from tests.conftest import simulate
    from training.config import TrainConfig
    from training.train import train

    ws = simulate(tmp_path / "a", 1500, 3, "2024-01-01", "2025-06-30")
    later = Workspace(tmp_path / "b")
    shutil.copytree(ws.root, later.root)
    as_of = t("2025-03-01")
    # The second workspace gets extra, different data after D: more usage, failed bills.
    for table in (Table.USAGE, Table.TRANSACTIONS):
        frame = later.read_table(table)
        extra = frame[frame.event_time < as_of].tail(500).copy()
        extra["event_time"] = extra["event_time"] + pd.Timedelta(days=200)
        extra = extra[extra.event_time < later.read_manifest().end]
        if table is Table.TRANSACTIONS:
            extra["transaction_id"] = frame.transaction_id.max() + 1 + np.arange(len(extra))
            extra["status"] = "failed"
        pd.concat([frame, extra], ignore_index=True).drop_duplicates(
            ["customer_id", "event_time"] if table is Table.USAGE else ["transaction_id"]
        ).to_parquet(later.table_path(table), index=False)

    config = TrainConfig(models=("churn",), labels=LabelConfig(horizon_days=30), as_of=as_of)
    first, second = train(ws, config)[0], train(later, config)[0]
    assert first.split == second.split
    # Equal up to floating-point noise (a fit's reductions may add up in another order on a
    # loaded machine: seen at 1e-13); anything the later data changed would show far above.
    assert first.metrics == pytest.approx(second.metrics, rel=1e-9, abs=1e-12)
    assert first.baseline == pytest.approx(second.baseline, rel=1e-9, abs=1e-12)
    # The registered versions (champion or not: the gate's verdict is beside the point here).
    a = registry.load_version(registry.connect(ws), "churn", first.version)
    b = registry.load_version(registry.connect(later), "churn", second.version)
    probe = pd.DataFrame({f: np.linspace(0, 50, 20) for f in a.features if f not in a.categories})
    assert np.allclose(a.predict(probe), b.predict(probe), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_transactions_only_workspace_is_compared_with_buy_till_you_die(tmp_path):
    """A simulated base exported as transactions only: churn (no purchase within H) and
    CLV train, and BG/NBD, Pareto/NBD and Gamma-Gamma are scored on the same test rows."""
    import mlflow

    from pipelines.ingest import ingest_exported_transactions
    from tests.conftest import simulate
    from training.config import TrainConfig
    from training.train import train

    sim = simulate(tmp_path / "sim", 1500, 4, "2024-01-01", "2025-12-31")
    ws = Workspace(tmp_path / "shop")
    ingest_exported_transactions(sim, tmp_path / "export.csv", ws)

    reports = {r.model: r for r in train(ws, TrainConfig(models=("churn", "upsell", "clv")))}
    assert not reports["upsell"].trained and "no plans" in reports["upsell"].note
    churn, clv = reports["churn"], reports["clv"]
    # Recency says a lot about 'no purchase in 90 days': every ranking is far from random.
    assert churn.btyd["bgnbd_roc_auc"] > 0.8 and churn.btyd["pareto_nbd_roc_auc"] > 0.8
    assert churn.metrics["roc_auc"] > 0.8
    assert clv.btyd["bgnbd_gg_spearman"] > 0.3 and clv.btyd["bgnbd_gg_mae"] > 0
    registry.connect(ws)
    run = mlflow.search_runs(experiment_names=["clm-churn"]).iloc[0]
    assert run["metrics.btyd_pareto_nbd_roc_auc"] == pytest.approx(churn.btyd["pareto_nbd_roc_auc"])


# ------------------------------------------------------------------ honest splits
def test_time_split_refuses_an_overlap_and_says_what_history_it_needs():
    # 365-day windows over two years of cutoffs: a validation window ending by the test
    # cutoff leaves no training cutoff whose window ends by the validation cutoff.
    cutoffs = list(pd.date_range("2024-02-01", "2025-01-01", freq="MS", tz="UTC"))
    with pytest.raises(NotEnoughHistory, match="365-day label window.*found 12 usable cutoff"):
        time_split(cutoffs, 365)


def test_clv_window_is_shortened_to_the_longest_that_fits_without_overlap():
    from clm.workspace import RawManifest

    manifest = RawManifest("hand-made", "contractual", t("2024-01-01").isoformat(), t("2026-01-01").isoformat(), [])
    split, days = split_with_longest_window(manifest, t("2026-01-01"), 365, 90)
    # By hand, cutoffs are month starts from 2024-02-01. 240 days: test <= 2026-01-01 - 240 d
    # = 2025-05-06 -> 05-01; valid <= 2024-09-03 -> 09-01; train <= 2024-01-05: none. 210 days:
    # test <= 2025-06-05 -> 06-01; valid <= 2024-11-03 -> 11-01; train <= 2024-04-05: 3 cutoffs.
    assert days == 210
    assert split.test == t("2025-06-01") and split.valid == t("2024-11-01")
    assert split.train == [t("2024-02-01"), t("2024-03-01"), t("2024-04-01")]
    window = pd.Timedelta(days=days)
    assert max(split.train) + window <= split.valid and split.valid + window <= split.test
    with pytest.raises(NotEnoughHistory, match="90-day label window.*shortened from 365 to 90 days.*longer period"):
        split_with_longest_window(manifest, t("2024-09-01"), 365, 90)


# ------------------------------------------------------------------ the oracle
def test_oracle_is_the_probability_of_what_happened(tmp_path):
    """At the cutoff 2024-03-01 (snapshot 2024-02-29), by hand:
    P no contact                            truth 0.10
    Q retention offer at the cutoff         truth 0.30 + its effect -0.12 = 0.18
    R success call 20 days into the window  left out: no truth describes that
    S randomised control ('none')           truth 0.05
    U contacted before the cutoff           truth 0.20 (priced in the snapshot's state)"""
    import datetime

    from training.oracle import oracle_probabilities

    ws = Workspace(tmp_path / "ws")
    ws.raw_dir.mkdir(parents=True)
    ids = ["P", "Q", "R", "S", "U"]
    snapshot = datetime.date(2024, 2, 29)
    pd.DataFrame({
        "customer_id": ids, "snapshot_date": [snapshot] * 5, "p_churn_30d": [0.01] * 5,
        "p_churn_90d": [0.10, 0.30, 0.40, 0.05, 0.20], "p_upgrade_30d": [0.0] * 5, "p_upgrade_90d": [0.0] * 5,
        "stage": ["engaged"] * 5,
    }).to_parquet(ws.table_path(Table.GROUND_TRUTH))
    pd.DataFrame({
        "customer_id": ["Q", "Q", "R"], "snapshot_date": [snapshot] * 3,
        "action": ["retention_offer", "success_call", "success_call"],
        "effect_churn_90d": [-0.12, -0.03, -0.2], "effect_upgrade_90d": [0.0, 0.0, 0.0],
    }).to_parquet(ws.table_path(Table.GROUND_TRUTH_EFFECTS))
    cutoff = t("2024-03-01")
    pd.DataFrame({
        "decision_id": [1, 2, 3, 4], "customer_id": ["Q", "R", "S", "U"],
        "event_time": [cutoff, cutoff + pd.Timedelta(days=20), cutoff, cutoff - pd.Timedelta(days=10)],
        "action": ["retention_offer", "success_call", "none", "win_back"],
        "channel": ["email", "phone", None, "email"], "propensity": [0.2] * 4, "is_control": [False, False, True, False],
    }).to_parquet(ws.table_path(Table.ACTIONS))
    rows = pd.DataFrame({"customer_id": ids, "event_timestamp": [cutoff] * 5})

    got = oracle_probabilities(ws, "churn", 90, rows).set_index("customer_id")["truth"].sort_index()
    assert got.to_dict() == pytest.approx({"P": 0.10, "Q": 0.18, "S": 0.05, "U": 0.20})
    # Outcomes P 1, Q 0, S 0, U 1: pairs (P,Q) wrong, (P,S) (U,Q) (U,S) right: AUC 3/4.
    # The no-action truth alone (Q 0.30) would get (U,Q) wrong too: 2/4.
    y = pd.Series({"P": 1, "Q": 0, "S": 0, "U": 1}).sort_index()
    assert ev.binary_metrics(y.to_numpy(), got.to_numpy())["roc_auc"] == pytest.approx(0.75)
    # Effects are priced for 90 days only: at 30 days a contact at the cutoff is left out.
    assert set(oracle_probabilities(ws, "churn", 30, rows).customer_id) == {"P", "S", "U"}


# ------------------------------------------------------------------ the gate's sanity
def test_gate_refuses_a_negative_calibration_slope(good_and_bad):
    good, _, test = good_and_bad
    inverted = type(good)(**{**vars(good)})
    inverted.calibrator = PlattCalibrator(slope=-1.0, intercept=0.0)
    for champion in (None, good):  # the first version is checked too
        decision = registry.decide_promotion(inverted, champion, test)
        assert not decision.promote and "slope" in decision.reason


def test_gate_checks_the_first_versions_calibration(good_and_bad):
    good, _, test = good_and_bad
    assert registry.decide_promotion(good, None, test).promote
    # A calibration off by a shift (a base that drifted since the validation window) is
    # what recalibration on the latest window mends: what ships is recalibrated, and passes.
    shifted = type(good)(**{**vars(good)})
    shifted.calibrator = PlattCalibrator(slope=good.calibrator.slope, intercept=good.calibrator.intercept + 3.0)
    assert registry.decide_promotion(shifted, None, test).promote
    # Scores no sigmoid of their log-odds can calibrate are refused: they spread over
    # (0.02, 0.98), but the outcome is 30% likely below their 90th percentile and 95% above.
    rng = np.random.default_rng(4)
    s = 1 / (1 + np.exp(-rng.uniform(-4, 4, 4000)))
    step = (rng.random(s.size) < np.where(s < np.quantile(s, 0.9), 0.3, 0.95)).astype(int)
    column = type("ColumnModel", (type(good),), {"raw_scores": lambda self, frame: frame["s"].to_numpy()})
    stepped = column(good.spec, ["s"], {}, None, PlattCalibrator())
    decision = registry.decide_promotion(stepped, None, pd.DataFrame({"s": s, "churn": step}))
    assert not decision.promote and "badly calibrated even recalibrated" in decision.reason, decision.reason


def test_stage_metrics_count_a_stage_the_model_never_saw():
    """A small base may have no 'advocate' in training but one in the test window."""
    from training.evaluate import multiclass_metrics

    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])  # predicts a, b, a
    got = multiclass_metrics(np.array(["a", "b", "c"]), proba, ["a", "b"])
    # F1: a 2/3 (one right, one c taken for a), b 1, c 0 -> macro 5/9; accuracy 2/3.
    assert got["macro_f1"] == pytest.approx(5 / 9) and got["accuracy"] == pytest.approx(2 / 3)
    assert np.isfinite(got["log_loss"]) and got["log_loss"] > -np.log(0.9)


def test_stage_log_loss_reads_each_class_from_its_own_column():
    """By hand: the true class's probability is 0.8 for every row -> log loss -ln 0.8,
    whatever the order of the model's classes and a stage it never saw ('a' here)."""
    from training.evaluate import multiclass_metrics

    proba = np.array([[0.8, 0.2], [0.2, 0.8]])
    got = multiclass_metrics(np.array(["c", "b"]), proba, ["c", "b"])  # classes not in sorted order
    assert got["log_loss"] == pytest.approx(-np.log(0.8))
    unseen = multiclass_metrics(np.array(["c", "b", "a"]), np.vstack([proba, [0.5, 0.5]]), ["c", "b"])
    assert unseen["log_loss"] == pytest.approx((-2 * np.log(0.8) - np.log(1e-9 / (1 + 1e-9))) / 3, rel=1e-6)


def test_labels_join_features_row_for_row_and_refuse_other_rows():
    """Training frames take their labels without a merge's copy: the same rows in the same
    order, the labels' types kept (upsell is a nullable integer); other rows are refused."""
    from training.frames import with_labels

    when = pd.Timestamp("2025-03-01", tz="UTC")
    features = pd.DataFrame({"customer_id": ["a", "a", "b"], "event_timestamp": [when, when + pd.Timedelta(days=31), when],
                             "sessions_30d": [1.0, 2.0, 3.0]})
    labels = pd.DataFrame({"customer_id": ["b", "a", "a"], "event_timestamp": [when, when + pd.Timedelta(days=31), when],
                           "upsell": pd.array([1, None, 0], dtype="Int64")})
    frame = with_labels(features.copy(), labels)
    assert frame.upsell.dtype == "Int64"
    assert frame.upsell.tolist()[0] == 0 and frame.upsell.isna().tolist() == [False, True, False]
    assert frame.upsell.tolist()[2] == 1
    with pytest.raises(ValueError, match="not the same"):
        with_labels(features.copy(), labels.assign(customer_id=["c", "a", "a"]))
    with pytest.raises(ValueError, match="not the same"):
        with_labels(features.copy(), labels.iloc[:2])


def test_the_baselines_median_imputer_fills_as_scikit_learns_does():
    """MedianImputer is SimpleImputer(strategy="median", keep_empty_features=True), faster:
    the same medians, 0 for a column with no value, the caller's array left as it was."""
    from sklearn.impute import SimpleImputer

    from training.models import MedianImputer

    x = np.array([[1.0, np.nan, np.nan], [3.0, 5.0, np.nan], [np.nan, 7.0, np.nan], [10.0, 9.0, np.nan]])
    original = x.copy()
    ours = MedianImputer().fit(x)
    theirs = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
    np.testing.assert_array_equal(ours.statistics_, [3.0, 7.0, 0.0])  # by hand: median(1, 3, 10), median(5, 7, 9)
    np.testing.assert_array_equal(ours.transform(x), theirs.transform(x))
    np.testing.assert_array_equal(x, original)


def test_lightgbm_from_a_matrix_grows_the_trees_it_grows_from_a_frame():
    """fit_lightgbm gives LightGBM `prepare_matrix`'s numbers (categories as codes, named as
    such), not the frame: the same trees as from the frame of `prepare_features`; a refit's
    matrix made window by window is the refit of the windows put together."""
    import lightgbm as lgb

    from training.candidates import shipped
    from training.models import categories_of, prepare_features

    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame({"x": rng.normal(size=n), "plan": rng.choice(["basic", "pro", None], n),
                          "noise": rng.random(n)})
    frame.loc[rng.random(n) < 0.1, "x"] = np.nan
    frame["churn"] = (rng.random(n) < 1 / (1 + np.exp(-(frame.x.fillna(0) + (frame.plan == "pro"))))).astype(int)
    train, valid, test = frame.iloc[:2000], frame.iloc[2000:2500], frame.iloc[2500:]
    features = ["x", "plan", "noise"]
    ours = fit_lightgbm(SPECS["churn"], train, valid, features)
    categories = categories_of(train, features)
    theirs = lgb.LGBMClassifier(**ours.estimator.get_params())
    theirs.fit(prepare_features(train, features, categories), train.churn,
               eval_X=(prepare_features(valid, features, categories),), eval_y=(valid.churn,),
               callbacks=[lgb.early_stopping(50, verbose=False)])
    assert ours.estimator.best_iteration_ == theirs.best_iteration_
    np.testing.assert_array_equal(ours.raw_scores(test),
                                  theirs.booster_.predict(prepare_features(test, features, categories)))
    refit = shipped(ours, {"train": train, "valid": valid, "test": test}, {})
    again = lgb.LGBMClassifier(**{**ours.estimator.get_params(), "n_estimators": ours.estimator.best_iteration_})
    both = pd.concat([train, valid], ignore_index=True)
    again.fit(prepare_features(both, features, categories), both.churn)
    np.testing.assert_array_equal(refit.raw_scores(test), again.booster_.predict(prepare_features(test, features, categories)))


def test_row_order_and_customer_folds_do_not_follow_the_ids():
    """The same rows under other ids and in another order: the same id-free order and the
    same fold for every row; a customer's rows share a fold; folds are balanced, and a
    fold drawn for another purpose is another draw."""
    from training.frames import customer_folds, in_id_free_order

    rng = np.random.default_rng(1)
    customers = 1000
    rows = pd.DataFrame({
        "customer_id": np.repeat([f"C{i:04d}" for i in range(customers)], 2),
        "event_timestamp": np.tile(pd.to_datetime(["2025-01-01", "2025-02-01"], utc=True), customers),
        "x": rng.normal(size=2 * customers).round(3), "churn": rng.integers(0, 2, 2 * customers)})
    renamed = rows.assign(customer_id="p-" + rows.customer_id.str[::-1])
    shuffled = renamed.iloc[rng.permutation(len(renamed))].reset_index(drop=True)

    ours, theirs = in_id_free_order(rows), in_id_free_order(shuffled)
    assert ours.drop(columns="customer_id").equals(theirs.drop(columns="customer_id"))
    assert (ours.event_timestamp.diff().dropna() >= pd.Timedelta(0)).all()  # by time first

    folds = customer_folds(rows, 5, "a")
    again = pd.Series(customer_folds(shuffled, 5, "a"), index=shuffled.customer_id.str[2:].str[::-1])
    by_customer = pd.Series(folds, index=rows.customer_id)
    assert by_customer.groupby(level=0).nunique().eq(1).all()  # all of a customer's rows in one fold
    assert by_customer.groupby(level=0).first().equals(again.groupby(level=0).first())
    counts = np.bincount(by_customer.groupby(level=0).first(), minlength=5)
    assert counts.min() > 150 and counts.max() < 250  # 200 expected in each
    assert not np.array_equal(folds, customer_folds(rows, 5, "b"))
