"""The jobs are plain functions: a notebook or a scheduler calls them without the CLI, with
typed settings, and gets a result dataclass (and the same output the command writes)."""
from __future__ import annotations

import logging

import pandas as pd
import pytest

from decisions.catalogue import load_catalogue
from pipelines.jobs.evaluate_policy import (
    PolicyEvaluation,
    PolicySettings,
    evaluate_policy,
)
from pipelines.jobs.score import ScoreSettings, score_base
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
def test_the_policy_judged_as_a_function_returns_its_figures(trained_copy):
    end = trained_copy.read_manifest().end
    evaluation = evaluate_policy(trained_copy, PolicySettings(end, load_catalogue(None), budget=300.0))
    assert isinstance(evaluation, PolicyEvaluation) and evaluation.results is not None
    # The oracle decides on the true effects with the same optimiser: no policy beats it,
    # and doing nothing is worth nothing, by construction of the value rule.
    oracle = evaluation.results["oracle"].value
    assert all(r.value <= oracle + 1e-9 for r in evaluation.results.values())
    assert evaluation.results["nothing"].value == 0 and evaluation.results["nothing"].treated == 0
    assert all(r.cost <= 300.0 + 1e-9 for r in evaluation.results.values())
    assert evaluation.report["run"]["budget"] == 300.0  # what --json writes
