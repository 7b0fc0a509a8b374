"""The jobs are plain functions: a notebook or a scheduler calls them without the CLI, with
typed settings, and gets a result dataclass (and the same output the command writes)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from decisions.catalogue import load_catalogue
from pipelines.jobs.evaluate_policy import (
    PolicyEvaluation,
    PolicySettings,
    evaluate_policy,
)
from pipelines.jobs.score import ScoreSettings, score_base
from pipelines.policy import evaluate
from pipelines.score import ScoreResult
from tests.clirun import invoke


@pytest.mark.slow
def test_the_batch_called_as_a_function_writes_what_clm_score_writes(trained_copy, tmp_path, caplog):
    end = trained_copy.read_manifest().end
    with caplog.at_level(logging.INFO, logger="clm"):
        result = score_base(trained_copy, ScoreSettings(end, tmp_path / "direct.parquet", budget=500.0))
    assert isinstance(result, ScoreResult) and result.as_of == end and result.customers == 2000
    assert result.decisions is not None and result.decisions["spent"] <= 500.0
    assert "Scoring customers as of" in caplog.text  # the default reporter logs, draws nothing

    by_cli = invoke("score", "--out", str(tmp_path / "cli.parquet"), "--budget", "500", "-w", str(trained_copy.root))
    assert by_cli.exit_code == 0, by_cli.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "direct.parquet"), pd.read_parquet(tmp_path / "cli.parquet"))


@pytest.mark.slow
def test_the_policy_judged_is_the_batchs_own_under_one_budget_rule(trained_copy, tmp_path):
    end = trained_copy.read_manifest().end
    catalogue = load_catalogue(None)
    evaluation = evaluate_policy(trained_copy, PolicySettings(end, catalogue))
    assert isinstance(evaluation, PolicyEvaluation) and evaluation.results is not None
    assert evaluation.inputs is not None
    base = evaluation.inputs.base.customers
    budget = evaluation.report["run"]["budget"]  # what --json writes
    assert budget == pytest.approx(0.15 * len(base)) and len(base) < 2000  # per customer decided for (live)
    # The oracle decides on the true effects with the same optimiser: no policy beats it,
    # and doing nothing is worth nothing, by construction of the value rule.
    oracle = evaluation.results["oracle"].value
    assert all(r.value <= oracle + 1e-9 for r in evaluation.results.values())
    assert evaluation.results["nothing"].value == 0 and evaluation.results["nothing"].treated == 0
    assert all(r.cost <= budget + 1e-9 for r in evaluation.results.values())
    # clm's policy is worth more, by the truth, than contacting at random or contacting nobody, at a
    # quarter of the budget, at it, and at four times it.
    for factor in (0.25, 1.0, 4.0):
        at = evaluate(catalogue, evaluation.inputs, budget * factor)
        assert at["clm"].value > max(at["random"].value, at["nothing"].value, 0.0), factor

    # The nightly batch at the same date, with its default budget and no exploration, decides exactly
    # what was judged as clm's policy, customer by customer.
    batch = score_base(trained_copy, ScoreSettings(end, tmp_path / "batch.parquet", catalogue, exploration=0.0))
    assert batch.decisions is not None and batch.decisions["budget"] == pytest.approx(budget)
    decided = pd.read_parquet(tmp_path / "batch.parquet").set_index("customer_id")
    choice = evaluation.results["clm"].choice
    assert choice is not None
    judged = np.where(choice >= 0, np.asarray(catalogue.contact_ids, dtype=object)[np.maximum(choice, 0)], "none")
    assert (decided.loc[base.customer_id, "action"].to_numpy() == judged).all()
    assert decided.action.notna().sum() == len(base) and (judged != "none").sum() > 20

    # Judged on the window the gate promoted the uplift model on, the figures flatter it: said, never silently.
    assert evaluation.in_sample == "" and evaluation.report["run"]["in_sample"] is None
    judged_on = evaluation.inputs.base.uplift.judged_through
    assert judged_on is not None and judged_on < end
    again = evaluate_policy(trained_copy, PolicySettings(judged_on, catalogue))
    assert "was chosen and promoted on the decisions of" in again.in_sample
    assert again.report["run"]["in_sample"] == again.in_sample
    # Off-policy, the latest matured window is that one: estimated, and marked so.
    assert again.off_policy is not None and "chosen and promoted" in again.off_policy.in_sample
    assert again.report["off_policy"]["in_sample"] == again.off_policy.in_sample
