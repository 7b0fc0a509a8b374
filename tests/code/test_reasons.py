"""Reasons in words (serving/reasons.py): one phrase per feature, the top drivers from
LightGBM's contributions, the value sentence."""
from __future__ import annotations

import numpy as np
import pandas as pd

from serving.reasons import phrase, top_drivers, value_sentence
from training.models import BINARY, ModelSpec, fit_baseline, fit_lightgbm


def test_phrases_read_as_words():
    assert phrase("days_since_last_activity", 21.0) == "no sessions in 21 days"
    assert phrase("open_tickets", 2.0) == "2 open support tickets"
    assert phrase("open_tickets", 1.0) == "1 open support ticket"
    assert phrase("sessions_trend_12w", -0.5) == "weekly sessions falling (-0.50 a week)"
    # No phrase of its own: the feature's description (features/groups.py) and the value.
    assert phrase("minutes_30d", 12.5) == "Active minutes in the last 30 days: 12.50"
    assert phrase("segment", "smb") == "smb segment"
    assert phrase("region", "emea") == "in region emea"
    assert phrase("gap_std_days", 12.5) == ("Standard deviation of those gaps: purchase regularity (null with fewer "
                                            "than 3): 12.50")
    assert phrase("mean_gap_days", 12.4) == "usually buys every 12 days"
    assert phrase("bgnbd_p_alive", 0.25) == "25% likely to still be buying, by their buying rhythm"
    assert phrase("last_nps", float("nan")) == "Latest NPS score (0-10) before as_of (null if never answered): unknown"


def test_the_top_drivers_are_what_pushes_this_customers_score_up():
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame({"days_since_last_activity": rng.integers(0, 60, n).astype(float),
                          "open_tickets": rng.integers(0, 4, n).astype(float), "noise": rng.random(n)})
    logit = -3 + 0.08 * frame.days_since_last_activity + 0.9 * frame.open_tickets
    frame["churn"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    spec = ModelSpec("churn", BINARY, "churn")
    model = fit_lightgbm(spec, frame.iloc[:3000], frame.iloc[3000:], ["days_since_last_activity", "open_tickets", "noise"])
    customers = pd.DataFrame({"days_since_last_activity": [55.0, 2.0, 1.0], "open_tickets": [0.0, 3.0, 0.0],
                              "noise": [0.5, 0.5, 0.5]})
    drivers = top_drivers(model, customers)
    assert drivers[0][0] == "no sessions in 55 days"
    assert drivers[1][0] == "3 open support tickets"
    # Active, no tickets: nothing pushes the churn score up, so no driver is named for it.
    assert not any("no sessions" in d or "ticket" in d for d in drivers[2])
    # A registered scikit-learn baseline has no contributions: no drivers, no error.
    baseline = fit_baseline(spec, frame.iloc[:3000], ["days_since_last_activity", "open_tickets", "noise"])
    assert top_drivers(baseline, customers) == [[], [], []]


def test_value_sentence():
    assert value_sentence("retention_offer", 45.4, 94.8, 0.0, 49.4) == (
        "retention_offer: expected value 45.40 (94.80 from fewer leaving, minus 49.40 cost)")
