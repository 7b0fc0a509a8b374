"""Off-policy estimators (training/ope.py) on a hand-made log whose truth is known."""
from __future__ import annotations

import numpy as np
import pytest

from training.ope import incremental_value


def logged(n: int, seed: int):
    """Rewards: 10 + 5 x (x > 0.5) + 3 if the offer was sent to x > 0.5 (else -1: its cost),
    noise sd 4. The logged policy sends the offer with probability 0.2 + 0.5 x (confounded:
    it favours the customers with the higher reward anyway)."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    p_offer = 0.2 + 0.5 * x
    taken = np.where(rng.random(n) < p_offer, "offer", "none")
    propensity = np.where(taken == "offer", p_offer, 1 - p_offer)
    effect = np.where(x > 0.5, 3.0, -1.0)
    reward = 10 + 5 * (x > 0.5) + effect * (taken == "offer") + rng.normal(0, 4, n)
    return x, taken, propensity, reward, effect


def test_the_estimators_find_a_known_policy_value():
    x, taken, propensity, reward, effect = logged(40_000, 0)
    target = np.where(x > 0.5, "offer", "none")  # the right policy: worth 3 on half the base
    truth = float(np.where(target == "offer", effect, 0).mean())  # 1.5 per decision
    base = 10 + 5 * (x > 0.5)
    q_none = base
    q_target = base + np.where(target == "offer", effect, 0)
    q_taken = base + np.where(taken == "offer", effect, 0)
    estimates = incremental_value(reward, taken, target, propensity, q_target, q_none, q_taken, seed=1)
    for name, e in estimates.items():
        assert e.low < e.value < e.high
        assert e.covers(truth), (name, e, truth)
        assert e.value == pytest.approx(truth, abs=0.25)
    # With a good reward model, DR's interval is the narrowest.
    width = {name: e.high - e.low for name, e in estimates.items()}
    assert width["dr"] < width["snips"] and width["dr"] < width["ips"]
    # Whereas a naive treated-minus-untreated comparison is fooled by the logged policy's
    # preference: the true mean effect of sending to everyone is 1.0.
    naive = reward[taken == "offer"].mean() - reward[taken == "none"].mean()
    assert abs(naive - 1.0) > 0.5


def test_intervals_cover_the_truth_about_95_percent_of_the_time():
    covered = {"ips": 0, "snips": 0, "dr": 0}
    runs = 40
    for seed in range(runs):
        x, taken, propensity, reward, effect = logged(2_000, 100 + seed)
        target = np.where(x > 0.3, "offer", "none")
        truth = float(np.where(target == "offer", effect, 0).mean())
        zeros = np.zeros(x.size)  # no reward model: DR falls back on the propensities alone
        for name, e in incremental_value(reward, taken, target, propensity, zeros, zeros, zeros,
                                         seed=seed, resamples=200).items():
            covered[name] += e.covers(truth)
    for name, hits in covered.items():
        assert hits / runs >= 0.85, (name, hits)
