"""The action-effect truth prices exactly the state the engine acts on.

Ground-truth effects are computed at a month's last snapshot; the logged policy acts at
the next midnight. If the two saw different inputs (a day of tenure apart), a customer at
the onboarding boundary would get a different effect in truth than in the simulation.
"""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

import simulator.engine as engine_module
from clm.domain import Action
from simulator.effects import ONBOARDING_DAYS, LatentState
from simulator.engine import Simulation, SimulationConfig


@pytest.fixture(scope="module")
def recorded():
    """Every apply_action call of a small simulation: (caller, action, day, state); a
    snapshot's state also records `signup_day` of the customers it prices."""
    calls: list[tuple[str, str, int, dict[str, np.ndarray]]] = []
    real = engine_module.apply_action

    def spy(action, state: LatentState):  # type: ignore[no-untyped-def]
        frame = inspect.stack()[1].frame
        fields = {k: np.array(v, copy=True) for k, v in vars(state).items()}
        if frame.f_code.co_name == "_snapshot":
            fields["signup_day"] = frame.f_locals["self"].c["signup_day"][frame.f_locals["idx"]].copy()
        calls.append((frame.f_code.co_name, Action(action).value, frame.f_locals["day"], fields))
        return real(action, state)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_module, "apply_action", spy)
        config = SimulationConfig(3000, 5, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-08-31", tz="UTC"))
        Simulation(config).run()
    return calls


def test_priced_state_equals_the_state_acted_on(recorded):
    """Each customer the policy acted on, paired with the same customer in the snapshot of
    the night before (same action; latent risk identifies them, as only the daily step
    changes it): every input of the effect is the same."""
    snapshots = [c for c in recorded if c[0] == "_snapshot"]
    checked = 0
    for caller, action, day, acted in recorded:
        if caller != "_campaign":
            continue
        priced = next(s for s in snapshots if s[1] == action and s[2] == day - 1)[3]
        pos = {r: i for i, r in enumerate(priced["risk"])}
        rows = np.array([pos[r] for r in acted["risk"]])
        for field in ("tenure_days", "days_inactive", "segment", "disengage", "appetite"):
            assert np.array_equal(priced[field][rows], acted[field]), field
        checked += rows.size
    assert checked > 500


def test_onboarding_boundary_is_priced_on_the_decision_day(recorded):
    """The nudge re-engages (disengagement x 0.35) while tenure on the decision day, the
    midnight after the snapshot, is under 90 days, and barely (x 0.97) from day 90: a
    customer 89 days in at the snapshot is 90 on the decision day, so the truth must price
    the 0.97 for them, as the engine would apply it."""
    real = engine_module.apply_action
    seen = {ONBOARDING_DAYS - 1: 0, ONBOARDING_DAYS: 0}
    for caller, action, day, priced in recorded:
        if caller != "_snapshot" or action != Action.ONBOARDING_NUDGE.value:
            continue
        signup = priced.pop("signup_day")
        decision_tenure = (day + 1) - signup
        assert np.array_equal(priced["tenure_days"], decision_tenure)
        _, g_after, _ = real(Action.ONBOARDING_NUDGE, LatentState(**priced))
        positive = priced["disengage"] > 0
        factor = np.divide(g_after, priced["disengage"], out=np.full(g_after.size, np.nan), where=positive)
        for tenure, expected in ((ONBOARDING_DAYS - 1, 0.35), (ONBOARDING_DAYS, 0.97)):
            at = (decision_tenure == tenure) & positive
            assert np.allclose(factor[at], expected)
            seen[tenure] += int(at.sum())
    assert all(n > 0 for n in seen.values())
