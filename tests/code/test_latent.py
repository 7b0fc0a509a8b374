"""The Laplace algebra behind the closed-form truth, checked against brute force."""
from __future__ import annotations

import numpy as np

from simulator import latent
from simulator.params import LatentProcess

PROC = LatentProcess(rho=0.95, scale=0.1, mean_shape=0.8)


def _paths(x0: float, delta: float, days: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.full(n, x0)
    out = np.empty((days, n))
    for d in range(days):
        x = latent.step(rng, x, np.full(n, delta), PROC)
        out[d] = x
    return out


def test_stationary_mean_is_delta_c_over_one_minus_rho():
    rng = np.random.default_rng(1)
    draws = latent.sample_stationary(rng, np.full(400_000, 0.8), PROC)
    assert abs(draws.mean() - 0.8 * 0.1 / 0.05) < 0.02  # 1.6


def test_one_step_mean_reverts_as_an_ar1():
    # E[x' | x] = rho x + delta c.
    paths = _paths(x0=5.0, delta=0.8, days=1, n=400_000)
    assert abs(paths[0].mean() - (0.95 * 5.0 + 0.08)) < 0.01


def test_survival_coefficients_match_monte_carlo():
    weight, days, x0, delta = 0.05, 20, 2.0, 0.8
    coef = latent.survival_coefficients(PROC, weight, days)
    exact = np.exp(coef.log_survival(np.array([x0]), np.array([delta]), days))[0]
    paths = _paths(x0, delta, days, n=200_000, seed=2)
    mc = np.exp(-weight * paths.sum(axis=0))
    assert abs(mc.mean() - exact) < 4 * mc.std() / np.sqrt(mc.size)


def test_ticket_arrivals_fold_into_the_recursion():
    """Arrivals at Poisson rate a + b x_{j-1}, each costing a known escape factor."""
    weight, days, x0, delta, base, per_x = 0.02, 15, 1.5, 0.8, 0.05, 0.2
    escape = latent.geometric_escape(0.3, 0.4, days)
    coef = latent.survival_coefficients(PROC, weight, days, base, per_x, escape)
    exact = np.exp(coef.log_survival(np.array([x0]), np.array([delta]), days))[0]
    rng = np.random.default_rng(3)
    n = 200_000
    x = np.full(n, x0)
    log_s = np.zeros(n)
    for day in range(1, days + 1):
        arrivals = rng.poisson(base + per_x * x)
        remaining = days - day + 1
        for _ in range(arrivals.max()):
            has = arrivals > 0
            open_days = np.minimum(rng.geometric(0.4, n), remaining)
            log_s -= np.where(has, 0.3 * open_days, 0.0)
            arrivals = arrivals - has
        x = latent.step(rng, x, np.full(n, delta), PROC)
        log_s -= weight * x
    mc = np.exp(log_s)
    assert abs(mc.mean() - exact) < 4 * mc.std() / np.sqrt(n)


def test_geometric_escape_by_hand():
    # D ~ Geometric(0.5) on 1, 2, ...; window of 2 days: E[e^{-h min(D, 2)}]
    # = P(D=1) e^{-h} + P(D>=2) e^{-2h} = 0.5 e^{-h} + 0.5 e^{-2h}.
    h = 0.7
    got = latent.geometric_escape(h, 0.5, 3)
    assert got[0] == 1.0
    assert np.isclose(got[1], np.exp(-h))
    assert np.isclose(got[2], 0.5 * np.exp(-h) + 0.5 * np.exp(-2 * h))
    assert np.isclose(got[3], 0.5 * np.exp(-h) + 0.25 * np.exp(-2 * h) + 0.25 * np.exp(-3 * h))


def test_propagate_matches_monte_carlo():
    v, steps, x0, delta = np.array([0.3]), 12, 3.0, 0.8
    phi, gam = latent.propagate(PROC, v, steps)
    exact = np.exp(-phi[steps, 0] * x0 - delta * gam[steps, 0])
    paths = _paths(x0, delta, steps, n=200_000, seed=4)
    mc = np.exp(-0.3 * paths[-1])
    assert abs(mc.mean() - exact) < 4 * mc.std() / np.sqrt(mc.size)
