"""On a transactions-only workspace: `clm backtest` measures what `clm train` ships, and a
buy-till-you-die champion goes through MLflow into the batch and the API like any model."""
from __future__ import annotations

import json
import shutil

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from lifetimes import ParetoNBDFitter

from clm.domain import Table
from clm.workspace import Workspace
from pipelines.backtest import BacktestConfig, backtest, binary_report
from serving.reasons import top_drivers
from tests.apiserver import running_api
from tests.clirun import invoke
from tests.handmade import t
from training import btyd, registry
from training.btyd_models import BtydModel, fit_btyd
from training.config import TrainConfig
from training.labels import LabelConfig
from training.train import fit_model

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def copy_of(ws: Workspace, dst) -> Workspace:  # type: ignore[no-untyped-def]
    shutil.copytree(ws.root, dst)
    return Workspace(dst)


def outcomes_by_hand(shop: Workspace, d: pd.Timestamp, days: int) -> pd.Series:
    """1 for each customer with a paid purchase before d and none in [d, d + days): from the raw purchases."""
    paid = shop.read_table(Table.TRANSACTIONS)
    paid = paid[paid.status == "paid"]
    before = set(paid[paid.event_time < d].customer_id)
    inside = set(paid[(paid.event_time >= d) & (paid.event_time < d + pd.Timedelta(days=days))].customer_id)
    return pd.Series({c: float(c not in inside) for c in sorted(before)})


def test_the_backtest_reports_what_train_and_score_ship(shop_and_sim, tmp_path):
    shop, _ = shop_and_sim
    d = t("2025-06-01")
    report = backtest(copy_of(shop, tmp_path / "backtested"), BacktestConfig(d, 90, ("churn",)))
    churn = report.targets["churn"]
    assert churn["models"]["clm"] == churn["models"][churn["shipped"]]

    ws = copy_of(shop, tmp_path / "trained")
    trained = invoke("train", "--models", "churn", "--horizon-days", "90", "--as-of", "2025-06-01", "-w", str(ws.root))
    assert trained.exit_code == 0, trained.output
    client = registry.connect(ws)
    version = registry.alias_version(client, "churn", registry.CHAMPION)
    assert version == "1", trained.output  # the first version is promoted
    assert registry.load_version(client, "churn", version).kind == churn["shipped"]
    out = tmp_path / "scores-2025-06-01.parquet"
    scored = invoke("score", "--as-of", "2025-06-01", "--out", str(out), "-w", str(ws.root))
    assert scored.exit_code == 0, scored.output

    scores = pd.read_parquet(out).set_index("customer_id")
    y = outcomes_by_hand(ws, d, 90)
    p = scores.loc[y.index, "churn_probability"].to_numpy()
    assert np.isfinite(p).all()
    mine = binary_report(y.to_numpy(), p)
    backtested = churn["models"]["clm"]
    for figure in ("roc_auc", "pr_auc", "lift_top_decile", "customers", "positive_rate"):
        assert mine[figure] == pytest.approx(backtested[figure], rel=1e-9, abs=1e-12), figure
    # The same probabilities but for their last digits (two runs of the BTYD and blend fits
    # differ by about 1e-7: the optimisers' sums run on several threads).
    for figure in ("ece", "brier", "log_loss"):
        assert mine[figure] == pytest.approx(backtested[figure], rel=1e-5), figure


def test_a_btyd_champion_scores_in_the_batch_and_the_api(retrained_shop, tmp_path):
    trained, _ = retrained_shop
    ws = copy_of(trained, tmp_path / "shop")
    end = ws.read_manifest().end  # where `clm score` scores, and the online store was loaded
    # Pareto/NBD as `clm train` fits and brings it up to date, registered and made champion.
    fitted = fit_model(ws, "churn", TrainConfig(labels=LabelConfig(90), as_of=end), False, end)
    model = fitted.shipped("pareto_nbd")
    assert isinstance(model, BtydModel)
    client = registry.connect(ws)
    mlflow.set_experiment(experiment_id=registry.experiment(client, ws, "churn"))
    with mlflow.start_run(run_name="pareto_nbd by hand"):
        mlflow.log_params({"horizon_days": 90})
        version = registry.log_model(model, fitted.parts["test"][fitted.features].head(5), "churn")
    registry.set_champion(client, "churn", version, reason="a BTYD champion, by hand")
    loaded = registry.load_version(client, "churn", version)
    assert isinstance(loaded, BtydModel) and loaded.kind == "pareto_nbd"

    # The registered model is lifetimes' Pareto/NBD fitted on every purchase before `end`
    # (a fit here finds its parameters, to the optimiser's tolerance) ...
    transactions = ws.read_table(Table.TRANSACTIONS, columns=["customer_id", "event_time", "amount", "status"])
    summary = btyd.rfm_summary(transactions, end)
    refitted = fit_btyd(ParetoNBDFitter, summary)
    for name, value in loaded.estimator.params.items():
        assert refitted.params_[name] == pytest.approx(value, rel=1e-3), name
    # ... and what lifetimes says of every customer at `end` with those parameters, from the
    # raw purchases, then calibrated as shipped, is what the batch must say.
    fitter = ParetoNBDFitter()
    fitter.params_ = pd.Series(loaded.estimator.params)
    raw = pd.Series(np.asarray(fitter.conditional_probability_of_n_purchases_up_to_time(
        0, 90, summary["frequency"], summary["recency"], summary["T"]), float), index=summary.index)
    expected = pd.Series(model.calibrator.predict(raw.to_numpy()), index=raw.index)
    out = tmp_path / "scores.parquet"
    scored = invoke("score", "--out", str(out), "-w", str(ws.root))
    assert scored.exit_code == 0, scored.output
    scores = pd.read_parquet(out).set_index("customer_id")
    batch = scores["churn_probability"].dropna()
    assert set(batch.index) == set(expected.index)
    assert np.allclose(batch.sort_index(), expected.sort_index(), rtol=1e-6, atol=1e-9)
    assert json.loads(scores["model_versions"].iloc[0])["churn"] == version

    # The API answers the same for a customer, and the model's reasons are the rhythm in words.
    regular = summary[summary["frequency"] >= 2].index[0]
    with running_api(ws.root) as url:
        answer = httpx.post(f"{url}/score", json={"customer_id": regular}, timeout=30).json()
    assert answer["model_versions"]["churn"] == version
    assert answer["churn_probability"] == pytest.approx(expected[regular], rel=1e-6)
    row = summary.loc[regular]
    features = pd.DataFrame({"purchase_days_total": [row["frequency"] + 1], "recency_days": [row["T"] - row["recency"]],
                             "first_purchase_days": [row["T"]]})
    (reasons,) = top_drivers(loaded, features)
    usual = row["recency"] / row["frequency"]
    assert reasons[0] == (f"no purchase for {row['T'] - row['recency']:.0f} days where this customer usually buys "
                          f"every {usual:.0f}")
