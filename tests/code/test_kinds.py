"""The lost-cause mechanism's exact survival factor, and the four kinds by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.kinds import customer_kinds
from simulator.truth import exit_log_survival


def test_exit_survival_by_hand():
    # q = 0.1 a day, hazard 0.5 once decided, three days ahead.
    out = exit_log_survival(np.array([False, True]), np.array([0.1, 0.1]), 0.5, 3)
    e = np.exp(-0.5)
    undecided = [1.0, 0.9 + 0.1 * e, 0.81 + 0.1 * (e**2 + 0.9 * e)]  # decide end of day 1 or 2
    assert np.exp(out[0]) == pytest.approx(undecided, rel=1e-12)
    assert out[1] == pytest.approx([-0.5, -1.0, -1.5])


def test_kinds_by_hand():
    truth = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d", "gone"],
        "snapshot_date": ["2025-01-31"] * 5,
        "p_churn_90d": [0.5, 0.2, 0.9, 0.02, np.nan],  # 'gone' has churned: no row
    })
    effects = pd.DataFrame([
        (c, "2025-01-31", a, e)
        for c, row in {
            "a": {"retention_offer": -0.10, "success_call": -0.01},   # persuadable
            "b": {"retention_offer": +0.05, "success_call": -0.005},  # sleeping dog
            "c": {"retention_offer": -0.01, "success_call": -0.015},  # lost cause: at risk, nothing helps
            "d": {"retention_offer": 0.0, "success_call": -0.001},    # sure thing
        }.items() for a, e in row.items()
    ], columns=["customer_id", "snapshot_date", "action", "effect_churn_90d"])
    kinds = customer_kinds(truth, effects).set_index("customer_id")
    assert kinds.kind.to_dict() == {"a": "persuadable", "b": "sleeping_dog", "c": "lost_cause", "d": "sure_thing"}
    assert kinds.best_cut.to_dict() == pytest.approx({"a": 0.10, "b": 0.005, "c": 0.015, "d": 0.001})
