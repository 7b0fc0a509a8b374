"""`clm backtest`: figures by hand, and the whole base at a date against what happened."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clm.domain import Table
from clm.errors import ClmError
from pipelines.backtest import BacktestConfig, backtest, binary_report
from tests.handmade import t

pytestmark = pytest.mark.filterwarnings("ignore")


def test_binary_figures_by_hand():
    # Ranked: 0.9 (churned), 0.8 (stayed), 0.7 (churned), 0.2 (stayed), 0.1 (stayed).
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    r = binary_report(y, p)
    assert r["roc_auc"] == pytest.approx(5 / 6)  # of 6 (churner, stayer) pairs, only (0.7, 0.8) is misordered
    assert r["pr_auc"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # precision at each churner's rank
    # Five predictions, ten equal-count bins: one prediction per bin, ECE = mean |y - p|.
    assert r["ece"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.8 + 0.1) / 5)
    # Top decile of 5 = the top 1 customer: churned; base rate 0.4 -> lift 2.5, capture 1 of 2.
    assert r["lift_top_decile"] == pytest.approx(2.5) and r["capture_top_decile"] == pytest.approx(0.5)
    assert r["customers"] == 5
    assert [row["observed_rate"] for row in r["reliability"]] == [0, 0, 1, 0, 1]


def test_scores_tied_at_the_top_decile_share_its_places_whatever_the_rows_order():
    # 20 customers, top decile = 2 places: one at 0.9 (churned), then three tied at 0.5 (one
    # churned) for the one place left: each counts for a third -> 1 + 1/3 churners of 2 places.
    y = np.array([1, 1, 0, 0] + [0] * 16)
    p = np.array([0.9, 0.5, 0.5, 0.5] + [0.1] * 16)
    base = 2 / 20
    for order in (np.arange(20), np.arange(20)[::-1], np.random.default_rng(0).permutation(20)):
        r = binary_report(y[order], p[order])
        assert r["lift_top_decile"] == pytest.approx((4 / 3) / 2 / base)
        assert r["capture_top_decile"] == pytest.approx((4 / 3) / 2)


@pytest.mark.slow
def test_backtest_on_a_transactions_only_export(shop_and_sim, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    shop, _ = shop_and_sim
    out = tmp_path / "backtest.json"
    result = CliRunner().invoke(app, ["backtest", "--as-of", "2025-06-01", "--horizon-days", "90",
                                      "--json", str(out), "-w", str(shop.root)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # Worked out from the raw purchases, independently of the pipeline: who had bought
    # before D, and which of them bought nothing in [D, D + 90 days).
    paid = shop.read_table(Table.TRANSACTIONS)
    d = t("2025-06-01")
    before = set(paid[paid.event_time < d].customer_id)
    inside = set(paid[(paid.event_time >= d) & (paid.event_time < d + pd.Timedelta(days=90))].customer_id)
    churned = len(before - inside) / len(before)
    churn = report["targets"]["churn"]["models"]
    # clm is the candidate `clm train` would ship; every candidate is reported beside it.
    assert set(churn) == {"clm", "lightgbm", "baseline", "bgnbd", "pareto_nbd", "stack", "blend"}
    shipped = report["targets"]["churn"]["shipped"]
    assert churn["clm"] == churn[shipped]
    for figures in churn.values():
        assert figures["customers"] == len(before)
        assert figures["positive_rate"] == pytest.approx(churned)
        assert {"roc_auc", "pr_auc", "ece", "lift_top_decile", "capture_top_decile", "reliability"} <= set(figures)
        assert 0.8 < figures["roc_auc"] <= 1  # quiet customers are easy; everyone ranks far above chance
    # 19 months before D allow a 90-day CLV window without overlap, and D + 90 days is inside the data.
    clv = report["targets"]["clv"]
    assert clv["window_days"] >= 90 and {"clm", "baseline", "bgnbd_gg"} <= set(clv["models"])
    assert "upsell: no plans in a transactions-only workspace" in report["notes"]
    assert "pareto_nbd" in result.output and "Traceback" not in result.output

    import mlflow

    from training import registry

    registry.connect(shop)
    runs = mlflow.search_runs(experiment_names=["clm-backtest"])
    assert runs.iloc[0]["metrics.churn_pareto_nbd_roc_auc"] == pytest.approx(churn["pareto_nbd"]["roc_auc"])
    # Nothing was registered: a backtest moves no champion.
    assert not mlflow.MlflowClient().search_registered_models()


@pytest.mark.slow
def test_backtest_on_simulated_data_reports_the_oracle(shop_and_sim):
    _, sim = shop_and_sim
    report = backtest(sim, BacktestConfig(t("2025-07-01"), 90, ("churn",)))
    models = report.targets["churn"]["models"]
    assert set(models) == {"clm", "lightgbm", "baseline", "oracle"}
    oracle = models["oracle"]
    # The oracle scores the customers whose truth describes what happened: no fewer than
    # half of the live base here (the rest were contacted again inside the window).
    assert report.customers_scored / 2 < oracle["customers"] <= report.customers_scored
    assert oracle["roc_auc"] > 0.55 and 0.5 < oracle["clm_roc_auc_same_customers"] <= 1


def test_backtest_refuses_a_date_whose_outcomes_are_not_all_known(shop_and_sim):
    shop, _ = shop_and_sim
    end = shop.read_manifest().end
    late = (end - pd.Timedelta(days=30)).normalize()
    with pytest.raises(ClmError, match="runs past the data's end"):
        backtest(shop, BacktestConfig(late, 90, ("churn",)))
