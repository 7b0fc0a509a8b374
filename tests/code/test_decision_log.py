"""Exploration and the decision log (decisions/log.py), and the uplift models
reading clm's own decisions back (training/uplift.py: decision_rows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm.workspace import Workspace
from decisions.log import (
    NotRecommended,
    UnknownDecision,
    batch_decision_id,
    explore,
    read_decisions,
    read_feedback,
    record_feedback,
    write_batch,
)
from training.uplift import decision_rows

DAY = pd.Timestamp("2025-06-01", tz="UTC")


def test_no_exploration_changes_nothing():
    choice = np.array([0, -1, 2])
    allowed = np.ones((3, 3), dtype=bool)
    final, propensity, explored = explore(choice, allowed, 0.0, np.random.default_rng(0))
    assert (final == choice).all() and (propensity == 1).all() and not explored.any()


def test_exploration_is_uniform_over_what_is_allowed_and_its_propensity_is_logged():
    n = 30_000
    rng = np.random.default_rng(1)
    allowed = np.zeros((n, 3), dtype=bool)
    allowed[:, [0, 2]] = True  # action 1 is never allowed
    choice = np.zeros(n, dtype=int)
    final, propensity, explored = explore(choice, allowed, 0.3, rng)
    assert explored.mean() == pytest.approx(0.3, abs=0.01)
    assert not (final == 1).any()
    picked = final[explored]
    for option in (-1, 0, 2):  # none and the two allowed, a third each
        assert (picked == option).mean() == pytest.approx(1 / 3, abs=0.02)
    # Kept (explored or not) with probability 0.7 + 0.3 / 3; changed: 0.3 / 3.
    assert np.allclose(propensity[final == choice], 0.8)
    assert np.allclose(propensity[final != choice], 0.1)


def test_exploration_keeps_capacity_and_budget():
    n = 200
    allowed = np.ones((n, 2), dtype=bool)
    cost = np.tile([10.0, 1.0], (n, 1))
    choice = np.full(n, -1)
    final, _, explored = explore(choice, allowed, 1.0, np.random.default_rng(2), spare=np.array([np.inf, 5.0]),
                                 cost=cost, budget_left=30.0)
    assert explored.all()
    assert (final == 1).sum() <= 5
    assert np.where(final >= 0, cost[np.arange(n), np.maximum(final, 0)], 0).sum() <= 30.0


def test_logged_propensities_are_the_realised_frequencies_when_budget_and_capacity_bind():
    """Eight customers, two actions allowed to all: the first two chose action 0 ($10), the
    rest nothing; action 1 ($1) has room for 1, the budget $2 beyond clm's choices. Half are
    explored, so budget and capacity run out within a batch, at a point that varies. Drawn
    8,000 times: for every customer and each action it could always get (none, its own
    choice), 1[taken] / logged propensity averages 1 (inverse propensity weighting is
    unbiased; the figures logged before erred by up to 0.3 here), and a customer reached
    once everything is spent logs none at 1."""
    n, runs = 8, 8000
    allowed = np.ones((n, 2), dtype=bool)
    cost = np.tile([10.0, 1.0], (n, 1))
    choice = np.where(np.arange(n) < 2, 0, -1)
    weighted = {"none": np.zeros(n), "own": np.zeros(n)}
    for seed in range(runs):
        final, propensity, _ = explore(choice, allowed, 0.5, np.random.default_rng(seed), spare=np.array([np.inf, 1.0]),
                                       cost=cost, budget_left=2.0)
        weighted["none"] += (final == -1) / propensity
        weighted["own"] += (final == choice) / propensity
    np.testing.assert_allclose(weighted["none"] / runs, 1.0, atol=0.08)
    np.testing.assert_allclose(weighted["own"][:2] / runs, 1.0, atol=0.08)

    # Everything spent early (the case: every customer explored, 2 actions, room for 5,
    # a budget of 30): the many customers after that could only get none, and log it at 1.
    many = 2000
    final, propensity, explored = explore(np.full(many, -1), np.ones((many, 2), dtype=bool), 1.0,
                                          np.random.default_rng(3), spare=np.array([np.inf, 5.0]),
                                          cost=np.tile([10.0, 1.0], (many, 1)), budget_left=30.0)
    assert explored.all() and (final[-1000:] == -1).all() and (propensity[-1000:] == 1.0).all()
    assert set(np.round(propensity[final >= 0], 6)) <= {round(1 / 3, 6), 0.5}


def test_a_date_rewritten_replaces_its_decisions_and_feedback_is_kept(tmp_path):
    ws = Workspace(tmp_path)
    batch = pd.DataFrame({"customer_id": ["a", "b"], "action": ["win_back", "none"], "propensity": [0.98, 0.99],
                          "explored": [False, False], "expected_value": [12.0, 0.0], "reasons": ["[]", "[]"]})
    write_batch(ws, DAY, batch)
    write_batch(ws, DAY, batch)
    record_feedback(ws, "20250601-a", "rejected", DAY + pd.Timedelta(hours=1))
    record_feedback(ws, "20250601-a", "accepted", DAY + pd.Timedelta(hours=2))
    log = read_decisions(ws)
    assert len(log) == 2
    assert log.set_index("customer_id").loc["a", "response"] == "accepted"  # the latest report
    assert pd.isna(log.set_index("customer_id").loc["b", "response"])
    with pytest.raises(ValueError, match="accepted, rejected"):
        record_feedback(ws, "20250601-a", "maybe")
    # Only decisions clm gave, and only the action the batch decided; appended to one journal, no file per call.
    for unknown in ("garbage", "20250601-nobody", "20250602-a", "20251301-a"):
        with pytest.raises(UnknownDecision, match="No decision"):
            record_feedback(ws, unknown, "accepted")
    with pytest.raises(NotRecommended, match="recommended win_back, not 'call'"):
        record_feedback(ws, "20250601-a", "accepted", action="call")
    record_feedback(ws, "20250601-b", "rejected", action="none")
    assert len(read_feedback(ws)) == 3 and not (ws.root / "decisions" / "feedback").exists()
    # The id's date is written in full: a decision in year 1 is 00010101-<customer>.
    assert batch_decision_id(pd.Timestamp("0001-01-01"), "c") == "00010101-c"


def test_the_uplift_models_learn_from_clms_own_decisions(tmp_path):
    """Decision rows at a cutoff come from the logged actions and from clm's decision log;
    where both hold a decision for a customer, the logged one."""
    ws = Workspace(tmp_path)
    (tmp_path / "raw").mkdir()
    pd.DataFrame({"customer_id": ["a"], "event_time": [DAY], "action": ["retention_offer"], "propensity": [0.2],
                  "decision_id": [1], "channel": ["email"], "is_control": [False]}
                 ).to_parquet(ws.table_path("actions"))
    write_batch(ws, DAY, pd.DataFrame({
        "customer_id": ["a", "b"], "action": ["win_back", "upgrade_offer"], "propensity": [0.98, 0.01],
        "explored": [False, True], "expected_value": [5.0, -1.0], "reasons": ["[]", "[]"]}))
    rows = decision_rows(ws, [DAY, DAY + pd.Timedelta(days=31)]).set_index("customer_id")
    assert rows.loc["a", "action"] == "retention_offer" and rows.loc["a", "propensity"] == 0.2
    assert rows.loc["b", "action"] == "upgrade_offer" and rows.loc["b", "propensity"] == 0.01
    assert len(rows) == 2 and (rows.event_timestamp == DAY).all()


def _write_decisions(folder: str, worker: int, start) -> None:
    from decisions.journal import ApiDecision, Journal, new_decision_id

    journal = Journal(Path(folder))
    now = pd.Timestamp("2026-01-01", tz="UTC")
    start.wait()
    for k in range(20):
        journal.add_decisions([ApiDecision(new_decision_id(), f"w{worker}-{k}", ["none"], 0.0, ["nothing pays"], now, now,
                                           {"uplift": "1"})])


def test_service_workers_starting_together_log_every_decision(tmp_path):
    """Six worker processes make their first writes to a journal that does not exist yet, at
    once (a deploy; five times over): the file is set up once, no write is lost to a lock."""
    import multiprocessing

    from decisions.journal import Journal

    context = multiprocessing.get_context("fork")  # as fast as the workers race
    for attempt in range(5):
        folder = tmp_path / str(attempt)
        start = context.Barrier(6)
        workers = [context.Process(target=_write_decisions, args=(str(folder), w, start)) for w in range(6)]
        for p in workers:
            p.start()
        for p in workers:
            p.join(60)
        assert [p.exitcode for p in workers] == [0] * 6
        logged = Journal(folder).read("api_decisions")
        assert len(logged) == 120 and logged.decision_id.is_unique
