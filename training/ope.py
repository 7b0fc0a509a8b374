"""Off-policy evaluation: the value of a new policy, estimated from logged decisions alone
(real data has no true effects to judge it by).

The logged policy chose action a_i with known propensity e_i, and the decision's reward
r_i followed (by the value rule: kept, upgraded, minus what the action cost). A target
policy pi would have chosen pi_i. Its incremental value over doing nothing, per decision:

  IPS    mean( 1[a = pi] r / e  -  1[a = none] r / e )
  SNIPS  sum(1[a = pi] r / e) / sum(1[a = pi] / e)  -  the same for none
         (self-normalised: bounded, a little biased, much steadier)
  DR     mean( q(x, pi) + 1[a = pi] (r - q(x, a)) / e  -  [the same for none] )
         (doubly robust: unbiased if the propensities are right, whatever the reward
         model q; low variance when q is good)

Confidence intervals: percentile bootstrap over decisions (the same resamples for every
estimator). Estimators only need the propensity of the action taken, which the log keeps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("ips", "snips", "dr")
BOOTSTRAP = 400
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float  # incremental value per decision over doing nothing
    low: float
    high: float

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


def _estimates(weights: np.ndarray, reward: np.ndarray, is_target: np.ndarray, is_none: np.ndarray,
               propensity: np.ndarray, q_target: np.ndarray, q_none: np.ndarray, q_taken: np.ndarray) -> np.ndarray:
    """(len(ESTIMATORS), resamples): each estimator under each row of `weights`
    (resamples x decisions: how often each decision is drawn)."""
    total = weights.sum(axis=1)
    w_target, w_none = is_target / propensity, is_none / propensity
    ips = weights @ ((w_target - w_none) * reward) / total
    snips = (weights @ (w_target * reward)) / np.maximum(weights @ w_target, 1e-12) \
        - (weights @ (w_none * reward)) / np.maximum(weights @ w_none, 1e-12)
    residual = reward - q_taken
    dr = weights @ (q_target - q_none + (w_target - w_none) * residual) / total
    return np.vstack([ips, snips, dr])


def incremental_value(reward: np.ndarray, taken: np.ndarray, target: np.ndarray, propensity: np.ndarray,
                      q_target: np.ndarray, q_none: np.ndarray, q_taken: np.ndarray, none: str = "none",
                      seed: int = 0, resamples: int = BOOTSTRAP) -> dict[str, Estimate]:
    """IPS, SNIPS and DR estimates (with bootstrap intervals) of the target policy's value
    per decision above doing nothing. taken/target: the logged and the target action of
    each decision; q_*: the reward model's prediction for the target action, for none and
    for the action taken."""
    is_target, is_none = (taken == target).astype(float), (taken == none).astype(float)
    args = (reward, is_target, is_none, propensity, q_target, q_none, q_taken)
    point = _estimates(np.ones((1, reward.size)), *args)[:, 0]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(reward.size, np.full(reward.size, 1.0 / reward.size), size=resamples).astype(float)
    spread = _estimates(draws, *args)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(spread, [tail, 100 - tail], axis=1)
    return {name: Estimate(float(point[k]), float(low[k]), float(high[k])) for k, name in enumerate(ESTIMATORS)}
