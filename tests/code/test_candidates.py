"""The candidates and the rule that chooses among them (`training.candidates`), the gate on
a drifting base, the chance level of ECE, and the BTYD models' summary of a history."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clm.domain import Table
from clm.workspace import Workspace
from features.build import build_features
from features.snapshots import read_snapshot
from training import btyd, registry
from training import candidates as cand
from training.btyd_models import BtydEstimator, BtydModel, history_summary
from training.evaluate import binary_metrics, chance_ece, expected_calibration_error
from training.models import SPECS, PlattCalibrator, TrainedModel, calibrated

pytestmark = pytest.mark.filterwarnings("ignore")


class ColumnModel(TrainedModel):
    """A churn 'model' whose raw score is a column of the frame: every figure is set by hand."""

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.features[0]].to_numpy(dtype=float)


def column_model(column: str, kind: str, calibrator: PlattCalibrator | None = None) -> ColumnModel:
    return ColumnModel(SPECS["churn"], [column], {}, estimator=None, calibrator=calibrator, kind=kind)


def window(rng: np.random.Generator, n: int, informative: str, rate: float = 0.3) -> pd.DataFrame:
    """n customers with churn ~ Bernoulli(rate); the `informative` column ranks them (its
    scores follow the outcome), the other column is noise, both in (0, 1)."""
    churn = (rng.random(n) < rate).astype(int)
    signal = 1 / (1 + np.exp(-(2.0 * churn - 1.0 + rng.normal(0, 1, n))))
    noise = rng.random(n)
    other = "b" if informative == "a" else "a"
    return pd.DataFrame({"churn": churn, informative: signal, other: noise})


def test_the_latest_window_chooses_where_the_validation_window_misleads():
    # A ranked customers well in the validation window, then stopped (its signal was a
    # habit of the older cohort); B is the other way round, and the scoring date goes on
    # like the latest window. The validation window would pick A; the latest picks B.
    rng = np.random.default_rng(3)
    valid, latest, later = window(rng, 3000, "a"), window(rng, 3000, "b"), window(rng, 3000, "b")
    candidates = {"lightgbm": column_model("a", "lightgbm"), "pareto_nbd": column_model("b", "pareto_nbd")}
    on = {name: {k: binary_metrics(f.churn.to_numpy(), m.predict(f))["roc_auc"] for k, m in candidates.items()}
          for name, f in (("valid", valid), ("latest", latest), ("later", later))}
    assert on["valid"]["lightgbm"] > on["valid"]["pareto_nbd"] + 0.2  # the validation window says A
    assert on["later"]["pareto_nbd"] > on["later"]["lightgbm"] + 0.2  # B is what ranks at the scoring date
    assert cand.choose(candidates, latest) == "pareto_nbd"


def test_a_preferred_candidate_is_kept_when_the_best_leads_by_noise_only():
    # Both columns carry the same signal, B with a little extra noise: on one window B can
    # come out a hair ahead or behind; the rule keeps the preferred candidate (PREFERENCE:
    # BTYD models first) unless the other leads in 95% of paired resamples.
    rng = np.random.default_rng(5)
    latest = window(rng, 2000, "a")
    latest["b"] = np.clip(latest["a"] + rng.normal(0, 0.01, len(latest)), 0.001, 0.999)
    candidates = {"lightgbm": column_model("a", "lightgbm"), "pareto_nbd": column_model("b", "pareto_nbd")}
    assert cand.choose(candidates, latest) == "pareto_nbd"
    # ... and gives way to a candidate that is clearly better.
    latest["b"] = rng.random(len(latest))
    assert cand.choose(candidates, latest) == "lightgbm"


def test_chance_ece_by_hand_and_by_simulation():
    # p = 0.5 for 1,000 customers: ten bins of 100, each observed rate a Binomial(100, 0.5) / 100
    # with standard deviation 0.05; its mean absolute deviation is sqrt(2 / pi) * 0.05.
    p = np.full(1000, 0.5)
    assert chance_ece(p) == pytest.approx(np.sqrt(2 / np.pi) * 0.05)
    # A perfectly calibrated model's ECE over many draws averages the chance level.
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.6, 2000)
    draws = [expected_calibration_error((rng.random(len(p)) < p).astype(float), p) for _ in range(300)]
    assert np.mean(draws) == pytest.approx(chance_ece(p), rel=0.15)
    # The gate's bound grows on a small window, and is MAX_ECE plus twice chance.
    assert registry.ece_bound(p[:200]) > registry.ece_bound(p) > registry.MAX_ECE
    assert registry.ece_bound(p) == pytest.approx(registry.MAX_ECE + 2 * chance_ece(p))


def test_a_first_version_on_a_drifting_base_is_promoted_after_recalibration():
    # The model ranks well, but the base drifts: churn is 15% in the validation window,
    # 45% in the latest. Calibrated on the validation window its ECE on the latest is far
    # above the gate's bound, as on the real log of issue 24; recalibrated on the latest
    # window (what ships) it is within it, and the first version is promoted.
    rng = np.random.default_rng(11)
    valid, latest = window(rng, 4000, "a", rate=0.15), window(rng, 4000, "a", rate=0.45)
    model = column_model("a", "lightgbm")
    judged = calibrated(model, valid)
    y, p = latest.churn.to_numpy(), judged.predict(latest)
    assert expected_calibration_error(y, p) > registry.ece_bound(p) + 0.05
    decision = registry.decide_promotion(judged, None, latest)
    assert decision.promote and decision.reason == "first version"
    shipped = calibrated(judged, latest)
    assert expected_calibration_error(y, shipped.predict(latest)) < 0.02


def test_the_btyd_summary_from_features_is_lifetimes_summary(tmp_path):
    """Z buys twice on 01-01 (10:00 and 15:00), on 01-11 and at 23:30 on 03-01; Y once on
    03-31 at 23:59. As of 04-01 (2024, a leap year): Z has purchases on 3 days, x = 2 repeat
    days, t_x = 60 days from 01-01 to 03-01, T = 91 days from 01-01 to 04-01; Y x = 0,
    t_x = 0, T = 1. lifetimes, given the raw purchases, must say the same."""
    from pipelines.ingest import TransactionsSource, ingest_transactions

    export = tmp_path / "orders.csv"
    pd.DataFrame({
        "customer": ["Z", "Z", "Z", "Z", "Y", "W"],
        "date": ["2024-01-01 10:00", "2024-01-01 15:00", "2024-01-11 08:00", "2024-03-01 23:30",
                 "2024-03-31 23:59", "2024-04-10 12:00"],
        "total": [10.0, 5.0, 20.0, 60.0, 7.0, 5.0],
    }).to_csv(export, index=False)
    ws = Workspace(tmp_path / "shop")
    ingest_transactions(TransactionsSource(export, "customer", "date", "total"), ws)
    as_of = pd.Timestamp("2024-04-01", tz="UTC")
    build_features(ws, [as_of])
    frame = read_snapshot(ws, "rfm", as_of).set_index("customer_id").loc[["Z", "Y"]]
    assert frame.loc["Z", "purchase_days_total"] == 3.0 and frame.loc["Z", "frequency_total"] == 4.0
    h = history_summary(frame)
    assert list(h.x) == [2.0, 0.0] and list(h.t_x) == [60.0, 0.0] and list(h.T) == [91.0, 1.0]
    summary = btyd.rfm_summary(ws.read_table(Table.TRANSACTIONS), as_of).loc[["Z", "Y"]]
    assert list(summary["frequency"]) == list(h.x)
    assert list(summary["recency"]) == list(h.t_x) and list(summary["T"]) == list(h.T)


def test_a_btyd_candidate_scores_as_lifetimes_does():
    # BG/NBD's P(no purchase in t) = 1 - P(alive) (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)):
    # with x = 0 a customer is alive for sure (BG/NBD drops out only after a repeat), so it is
    # ((alpha + T) / (alpha + T + t)) ** r: here (10 / 40) ** 0.5 = 0.5.
    estimator = BtydEstimator("bgnbd", {"r": 0.5, "alpha": 5.0, "a": 1.0, "b": 2.0}, 30)
    model = BtydModel(SPECS["churn"], ["purchase_days_total", "recency_days", "first_purchase_days"], {}, estimator)
    one_timer = pd.DataFrame({"purchase_days_total": [1.0], "recency_days": [4.2], "first_purchase_days": [4.2]})
    assert model.raw_scores(one_timer)[0] == pytest.approx(0.5)
