"""`clm retrain`: killed midway it changes no champion; run again it finishes the work;
run a third time it trains, promotes and rescores nothing. And the audit trail."""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from clm.workspace import Workspace
from tests.clirun import invoke, tree_digest
from tests.retraining import MODELS, RETRAIN_AS_OF
from training import audit, registry


@pytest.mark.slow
def test_a_retrain_killed_midway_leaves_the_previous_champions_serving(retrained):
    before = retrained["before"]
    assert retrained["after_kill"] == before
    assert not retrained["scores_after_kill"]
    served = retrained["served_after_kill"]
    assert served and all(served[m] == before[m] for m in served)


@pytest.mark.slow
def test_the_next_retrain_finishes_and_the_one_after_changes_nothing(retrained):
    ws = retrained["ws"]
    second, third = retrained["second"], retrained["third"]
    assert second.exit_code == 0, second.output
    # churn was trained before the kill on the same inputs: kept, not trained again
    assert "up to date: version" in second.output
    assert (ws.root / "scores" / f"{RETRAIN_AS_OF}.parquet" / "_manifest.json").exists()
    client = registry.connect(ws)
    for model, before in retrained["before"].items():
        now = retrained["after_second"][model]
        if now != before:  # a promotion: by the gate, in the audit trail, by clm retrain
            event = audit.history(client, registry.registered_name(model))[-1]
            assert (event.event, event.version, event.previous, event.how, event.command) == (
                audit.PROMOTE, now, before, audit.BY_GATE, "clm retrain")
    assert third.exit_code == 0, third.output
    assert third.output.count("up to date: version") == 5  # nothing trained
    assert retrained["after_third"] == retrained["after_second"]  # nothing promoted
    assert "left as it is" in third.output
    assert tree_digest(ws.root / "scores") == retrained["scores_digest"]  # no score changed
    latest = {m: registry.latest_version(client, m).version for m in MODELS}
    assert all(int(v) == 2 for v in latest.values()), latest  # one new version each, the killed run's churn kept


@pytest.mark.slow
def test_the_audit_trail_shows_a_promote_and_a_rollback_by_hand(retrained):
    ws = retrained["ws"]
    env = {"CLM_ACTOR": "ops:alice"}
    current = retrained["after_third"]["stage"]
    other = "1" if current == "2" else "2"
    promoted = invoke("models", "promote", "stage", other, "--reason", "judged better on the Q3 backtest",
                      "-w", str(ws.root), env=env)
    assert promoted.exit_code == 0, promoted.output
    rolled = invoke("models", "rollback", "stage", "-w", str(ws.root), env=env)
    assert rolled.exit_code == 0, rolled.output
    events = audit.history(registry.connect(ws), registry.registered_name("stage"))
    promote, rollback = events[-2], events[-1]
    assert (promote.event, promote.version, promote.previous, promote.how, promote.by, promote.reason) == (
        "promote", other, current, "by hand", "ops:alice", "judged better on the Q3 backtest")
    assert "test_macro_f1" in promote.figures
    assert (rollback.event, rollback.version, rollback.previous, rollback.how, rollback.by) == (
        "rollback", current, other, "by hand", "ops:alice")
    assert pd.Timestamp(promote.at) <= pd.Timestamp(rollback.at)
    shown = invoke("models", "history", "stage", "-w", str(ws.root))
    assert shown.exit_code == 0
    assert all(word in shown.output for word in ("ops:alice", "rollback", "by hand", "gate", "first version"))


def test_a_second_retrain_at_the_same_time_is_refused(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with ws.exclusive("clm retrain"):
        outcome = invoke("retrain", "-w", str(ws.root))
    assert outcome.exit_code != 0 and "is busy: `clm retrain`" in outcome.output


def test_the_schedules_in_the_repository_call_real_commands():
    """The Airflow DAG's bash commands are clm commands that exist (their --help works)."""
    dag = Path(__file__).parents[2] / "pipelines" / "schedules" / "clm_nightly.py"
    commands = [node.value for node in ast.walk(ast.parse(dag.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("clm ")]
    assert {c.split()[1] for c in commands} >= {"retrain", "monitor"}
    for command in commands:
        name = command.split()[1]
        assert invoke(name, "--help").exit_code == 0, command
