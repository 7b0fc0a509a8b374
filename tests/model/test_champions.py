"""Behavioural tests of the trained champions (Made With ML's kinds): directional (a change
with a known direction moves the prediction that way) and invariance (what must not matter
does not). Expected directions come from the business, and from the simulator's truth:
open tickets and silence raise its churn hazard, a higher plan pays more every month.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.model.conftest import Champions

pytestmark = pytest.mark.slow  # the session's trained workspaces


def predictions(model: object, frame: pd.DataFrame) -> np.ndarray:
    """A champion's output for each row: probabilities, class probabilities, values, or the
    uplift model's effects side by side."""
    effects = getattr(model, "effects", None)
    if effects is not None:
        out = effects(frame)
        return np.column_stack([np.asarray(out[k], dtype=float).reshape(len(frame), -1) for k in sorted(out)])
    return np.asarray(model.predict(frame), dtype=float)  # type: ignore[attr-defined]


def changed(base: pd.DataFrame, column: str, by: float) -> pd.DataFrame:
    out = base.copy()
    out[column] = out[column] + by  # a null (never happened) stays null
    return out


# ------------------------------------------------------------------- directional
@pytest.mark.parametrize("more", [1, 2])
def test_more_open_tickets_never_lower_churn_risk_on_average(contractual: Champions, more: int):
    churn, base = contractual.models["churn"], contractual.base
    before, after = predictions(churn, base), predictions(churn, changed(base, "open_tickets", more))
    assert after.mean() >= before.mean(), (before.mean(), after.mean())


@pytest.mark.parametrize("kind, silence", [("contractual", "days_since_last_activity"), ("shop", "recency_days")])
@pytest.mark.parametrize("days", [14, 60])
def test_a_longer_silence_never_lowers_churn_risk_on_average(kind: str, silence: str, days: int,
                                                             request: pytest.FixtureRequest):
    champions: Champions = request.getfixturevalue(kind)
    churn, base = champions.models["churn"], champions.base
    before, after = predictions(churn, base), predictions(churn, changed(base, silence, days))
    assert after.mean() >= before.mean(), (before.mean(), after.mean())


def test_a_higher_plan_never_lowers_clv(contractual: Champions):
    """Every customer on basic moved to pro, on pro to business (the simulator's plans and
    prices): no customer's CLV falls."""
    clv, base = contractual.models["clv"], contractual.base
    up = {"basic": ("pro", 79.0), "pro": ("business", 199.0)}
    assert set(base["plan"].dropna()) == {"basic", "pro", "business"}
    movable = base["plan"].isin(list(up)).to_numpy()
    higher = base.copy()
    higher.loc[movable, "price"] = [up[p][1] for p in base.loc[movable, "plan"]]
    higher.loc[movable, "plan"] = [up[p][0] for p in base.loc[movable, "plan"]]
    before, after = predictions(clv, base)[movable], predictions(clv, higher)[movable]
    assert movable.sum() > 100
    assert (after >= before).all(), np.sort(after - before)[:5]


def test_a_longer_silence_never_raises_a_shops_clv_on_average(shop: Champions):
    clv, base = shop.models["clv"], shop.base
    before, after = predictions(clv, base), predictions(clv, changed(base, "recency_days", 60))
    assert after.mean() <= before.mean(), (before.mean(), after.mean())


# ------------------------------------------------------------------- invariance
def every_champion() -> list[tuple[str, str]]:
    return [("contractual", m) for m in ("churn", "upsell", "stage", "clv", "uplift")] + \
           [("shop", m) for m in ("churn", "stage", "clv")]


def champion_and_base(kind: str, model: str, request: pytest.FixtureRequest) -> tuple[object, pd.DataFrame]:
    """The kind of business's champion `model` and the base it scores (skipped without one)."""
    champions: Champions = request.getfixturevalue(kind)
    if model not in champions.models:
        pytest.skip(f"{kind} has no {model} model (the gate's output says why)")
    return champions.models[model], champions.base


@pytest.mark.parametrize("kind, model", every_champion())
def test_the_customer_id_changes_nothing(kind: str, model: str, request: pytest.FixtureRequest):
    champion, base = champion_and_base(kind, model, request)
    renamed = base.assign(customer_id=[f"X{i:09d}" for i in range(len(base))][::-1])
    np.testing.assert_array_equal(predictions(champion, renamed), predictions(champion, base))


@pytest.mark.parametrize("kind, model", every_champion())
def test_the_row_order_changes_nothing(kind: str, model: str, request: pytest.FixtureRequest):
    champion, base = champion_and_base(kind, model, request)
    order = np.random.default_rng(7).permutation(len(base))
    shuffled = base.iloc[order].reset_index(drop=True)
    np.testing.assert_allclose(predictions(champion, shuffled), predictions(champion, base)[order], rtol=0, atol=1e-12)
