"""Drift statistics (training.drift) and the monitor's drift table, on worked examples and
on simulated customers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import drift


def test_psi_worked_out_by_hand():
    # reference half and half; today three quarters in the first bin:
    # (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5) = 0.25 ln 1.5 + 0.25 ln 2
    assert drift.psi(np.array([0.5, 0.5]), np.array([3, 1])) == pytest.approx(0.25 * np.log(1.5) + 0.25 * np.log(2))
    assert drift.psi(np.array([0.2, 0.8]), np.array([20, 80])) == pytest.approx(0.0)
    # an empty bin is floored at 1e-4, not infinite: (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5)
    floor = 1e-4
    expected = (floor - 0.5) * np.log(floor / 0.5) + (1 - 0.5) * np.log(1 / 0.5)
    assert drift.psi(np.array([0.5, 0.5]), np.array([0, 4])) == pytest.approx(expected, rel=1e-3)


def test_a_profile_bins_numbers_by_the_references_quantiles():
    profile = drift.profile_of(np.arange(10.0), categorical=False, bins=2)
    assert profile.edges == [4.5]  # the median of 0..9
    assert profile.shares == [0.5, 0.5, 0.0]  # below, above, missing
    counts = profile.count(pd.Series([0.0, 1.0, 2.0, 8.0, None]))
    assert counts.tolist() == [3, 1, 1]
    # the bins are right-closed: 4.5 falls in the first
    assert profile.count(np.array([4.5])).tolist() == [1, 0, 0]
    # today [0, 1, 2, 8]: 0.25 ln 1.5 + 0.25 ln 2, as above
    assert profile.psi(profile.count(np.array([0.0, 1.0, 2.0, 8.0]))) == pytest.approx(
        0.25 * np.log(1.5) + 0.25 * np.log(2))


def test_categories_keep_their_shares_and_an_unseen_one_is_other():
    profile = drift.profile_of(pd.Series(["a"] * 20 + ["b"] * 10 + [None] * 10), categorical=True)
    assert profile.categories == ["a", "b"]
    assert profile.shares == [0.5, 0.25, 0.0, 0.25]  # a, b, (other), (missing)
    assert profile.count(pd.Series(["b", "c", "a", None])).tolist() == [1, 1, 1, 1]
    same = profile.count(pd.Series(["a"] * 200 + ["b"] * 100 + [None] * 100))
    moved = profile.count(pd.Series(["b"] * 300 + ["a"] * 100))
    assert profile.p_value(same) > 0.5 and profile.p_value(moved) < 1e-6
    assert drift.profile_from_dict(profile.as_dict()) == profile


def test_a_category_of_few_rows_is_not_kept_in_the_reference():
    """A value held by fewer than 10 rows (an e-mail address, a name) is counted as (other):
    the reference, an MLflow artifact, names no one."""
    values = pd.Series(["smb"] * 30 + ["ann@example.com"] + ["mid"] * 9 + [None] * 10)
    profile = drift.profile_of(values, categorical=True)
    assert profile.categories == ["smb"] and "ann@example.com" not in str(profile.as_dict())
    assert profile.shares == [0.6, 0.2, 0.2]  # smb 30, (other) 1 + 9, (missing) 10, of 50


def test_a_planted_shift_is_flagged_and_a_second_sample_of_the_same_customers_is_not(main_job):
    """Reference: half of the simulated customers at a date; today: the other half (the
    same population, so only sampling noise), then the other half with one feature
    planted (spend tripled). Only the planted feature is flagged."""
    from clm.workspace import Workspace
    from decisions.population import in_population
    from features.snapshots import snapshot_chunks
    from pipelines.monitor import Champion, DriftCounts, Thresholds, drift_table

    when = pd.Timestamp("2025-06-01", tz="UTC")  # a monthly snapshot `clm run` built
    rows = pd.concat(list(snapshot_chunks(Workspace(main_job[0]), when, 100_000)), ignore_index=True)
    rows = rows[in_population(rows, True)].reset_index(drop=True)
    numeric = [c for c in rows.columns if c != "customer_id" and pd.api.types.is_numeric_dtype(rows[c])
               and rows[c].nunique() > 20]
    planted = "monetary_total" if "monetary_total" in numeric else numeric[0]
    first, second = rows.iloc[::2], rows.iloc[1::2]
    reference = {"features": {c: drift.profile_of(first[c], False).as_dict() for c in numeric},
                 "score": drift.profile_of(np.zeros(1), False).as_dict(), "importance": None}
    champion = Champion("churn", "1", None, reference, {})

    def table(today: pd.DataFrame) -> pd.DataFrame:
        counts = DriftCounts()
        for c in numeric:
            counts.features[("churn", c)] = drift.profile_from_dict(reference["features"][c]).count(today[c])
        return drift_table([champion], counts, Thresholds()).set_index("variable")

    clean = table(second)
    assert not clean.flagged.any(), clean.psi.max()
    shifted = table(second.assign(**{planted: second[planted] * 3 + 1}))
    assert shifted.flagged[planted] and shifted.flagged.sum() == 1
