"""Who gets scores: one population rule for training labels and for scoring.

Non-contractual: every customer with a purchase before the date, however long ago (a
lapsed customer is a win-back target, not a fact of churn). Contractual: a cancelled
customer's scores are null.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.workspace import Workspace
from decisions.population import in_population, population
from features.snapshots import snapshot_chunks
from pipelines.ingest import TransactionsSource, ingest_transactions
from pipelines.score import features_at
from serving.scoring import score_frame
from tests.handmade import t, write_hand_made
from training.labels import LabelConfig, outcome_labels
from training.models import SPECS, fit_baseline, fit_lightgbm

pytestmark = pytest.mark.filterwarnings("ignore")


def shop(root: Path) -> Workspace:
    """X bought once on 2024-01-02; Y on the 5th of every month, January to June."""
    rows = [("X", "2024-01-02", 40.0)] + [("Y", f"2024-0{m}-05", 10.0) for m in range(1, 7)]
    export = root / "orders.csv"
    pd.DataFrame(rows, columns=["customer", "date", "total"]).to_csv(export, index=False)
    ws = Workspace(root / "shop")
    ingest_transactions(TransactionsSource(export, "customer", "date", "total"), ws)
    return ws


def models(features: list[str]) -> dict:
    """Real fitted models (LightGBM churn, ridge CLV, multinomial stage) on a known signal."""
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({f: rng.uniform(0, 200, n) for f in features})
    frame["churn"] = (rng.random(n) < frame[features[0]] / 200).astype(int)
    frame["clv"] = np.maximum(0, 300 - frame[features[0]]) + rng.normal(0, 5, n)
    frame["stage"] = np.where(frame[features[0]] > 100, "dormant", "engaged")
    half = n // 2
    return {
        "churn": fit_lightgbm(SPECS["churn"], frame[:half], frame[half:], features),
        "clv": fit_baseline(SPECS["clv"], frame, features),
        "stage": fit_baseline(SPECS["stage"], frame, features),
    }


def test_a_lapsed_non_contractual_customer_still_gets_finite_scores(tmp_path):
    ws = shop(tmp_path)
    as_of = t("2024-06-01")  # X has been quiet 151 days: the stage rules say churned
    frame, in_population = features_at(ws, as_of, contractual=False)
    scores = score_frame(models(["recency_days", "frequency_total"]), frame, in_population, contractual=False)
    x = scores.set_index("customer_id").loc["X"]
    assert x["stage"] == "churned"
    assert np.isfinite(x["churn_probability"]) and np.isfinite(x["clv"]) and x["predicted_stage"] in ("dormant", "engaged")
    assert scores.churn_probability.notna().all() and scores.upsell_probability.isna().all()  # no upsell model
    # The quieter customer is the likelier to churn (the models learned: churn rises with recency).
    y = scores.set_index("customer_id").loc["Y"]
    assert x["churn_probability"] > y["churn_probability"]


def test_a_cancelled_contractual_customer_gets_null_scores(tmp_path):
    ws = write_hand_made(tmp_path / "ws")
    as_of = t("2024-03-15")  # A cancelled on 03-02; B is live; C signed up on 03-05
    frame, in_population = features_at(ws, as_of, contractual=True)
    scores = score_frame(models(["tenure_days", "price"]), frame, in_population, contractual=True).set_index("customer_id")
    assert scores.loc["A", "stage"] == "churned" and scores.loc["A", "predicted_stage"] == "churned"
    assert scores.loc["A", ["churn_probability", "clv"]].isna().all() and scores.loc["A", "stage_probabilities"] is None
    for live in ("B", "C"):
        assert np.isfinite(scores.loc[live, "churn_probability"]) and scores.loc[live, "stage_probabilities"]


@pytest.mark.parametrize("contractual", [True, False])
def test_labels_exist_for_exactly_the_population_that_is_scored(tmp_path, contractual):
    ws = write_hand_made(tmp_path / "ws")
    cutoffs = [t("2024-02-01"), t("2024-03-01"), t("2024-03-15")]
    labels = outcome_labels(ws, cutoffs, LabelConfig(30, 30), contractual)
    scored = population(ws, cutoffs, contractual)
    pairs = lambda f: sorted(zip(f.customer_id, f.event_timestamp))  # noqa: E731
    assert pairs(labels) == pairs(scored)
    # By hand: contractual, live contracts (A cancels 03-02; C starts 03-05); otherwise
    # anyone with a paid purchase before the cutoff (A from 01-01, B from 02-15, C 03-05).
    expected = {
        True: [("A", "2024-02-01"), ("A", "2024-03-01"), ("B", "2024-03-01"), ("B", "2024-03-15"), ("C", "2024-03-15")],
        False: [("A", "2024-02-01"), ("A", "2024-03-01"), ("B", "2024-03-01"), ("A", "2024-03-15"), ("B", "2024-03-15"),
                ("C", "2024-03-15")],
    }[contractual]
    assert pairs(scored) == sorted((c, t(d)) for c, d in expected)


@pytest.mark.parametrize("contractual", [True, False])
def test_the_population_read_off_the_features_is_the_population(tmp_path, contractual):
    """Scoring decides who is in the population from the features it has in hand (the
    batch's chunks, the API's one row); that rule must pick exactly the SQL population."""
    ws = write_hand_made(tmp_path / "ws")
    for as_of in (t("2024-02-01"), t("2024-03-01"), t("2024-03-15")):
        frame, in_sql = features_at(ws, as_of, contractual)
        assert in_population(frame, contractual).tolist() == in_sql.tolist(), as_of


def test_the_batch_reads_the_same_features_as_feasts_point_in_time_retrieval(tmp_path):
    """The batch reads the snapshot files at the date in chunks (two customers at a time
    here, so chunks end mid-file); every value equals Feast's point-in-time join."""
    ws = write_hand_made(tmp_path / "ws")
    as_of = t("2024-03-15")
    feast, _ = features_at(ws, as_of, contractual=True)
    chunks = list(snapshot_chunks(ws, as_of, rows=2))
    assert [len(c) for c in chunks] == [2, 1]
    batch = pd.concat(chunks, ignore_index=True)
    columns = [c for c in feast.columns if c != "event_timestamp"]
    assert sorted(batch.columns) == sorted(feast.columns)
    pd.testing.assert_frame_equal(batch[columns], feast[columns], check_dtype=False)
