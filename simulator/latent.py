"""Gamma autoregressive latent processes: sampling, and their exact Laplace algebra.

For an ARG(1) process (see `params.LatentProcess`) the expectation
E[exp(-sum_{j=1..m} (w * x_j) - ticket terms) | x_0] is exp(-A[m] x_0 - delta G[m] - L[m])
with A, G, L from a short backward recursion shared by every customer. This is the whole
reason the ground truth is a closed form rather than a Monte Carlo estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.params import LatentProcess


def sample_stationary(rng: np.random.Generator, delta: np.ndarray, proc: LatentProcess) -> np.ndarray:
    """Draw from the stationary law Gamma(delta, c / (1 - rho))."""
    return rng.gamma(delta, proc.stationary_mean_per_shape)


def step(rng: np.random.Generator, x: np.ndarray, delta: np.ndarray, proc: LatentProcess) -> np.ndarray:
    """One day of the process: x' ~ Gamma(delta + Poisson(beta x), c)."""
    n = rng.poisson(proc.beta * x)
    return rng.gamma(delta + n, proc.scale)


@dataclass(frozen=True)
class SurvivalCoefficients:
    """exp(-A[m] x - delta G[m] - L[m]) = E[exp(-hazard mass over days 1..m) | x_0 = x].

    Index m runs 0..horizon (A[0] = G[0] = L[0] = 0).
    """

    A: np.ndarray
    G: np.ndarray
    L: np.ndarray

    def log_survival(self, x: np.ndarray, delta: np.ndarray, m: int | np.ndarray) -> np.ndarray:
        return -(self.A[m] * x + delta * self.G[m] + self.L[m])


def survival_coefficients(
    proc: LatentProcess,
    weight: float,
    horizon: int,
    arrival_base: float = 0.0,
    arrival_per_x: float = 0.0,
    arrival_escape: np.ndarray | None = None,
) -> SurvivalCoefficients:
    """Backward recursion for hazard `weight * x_j` on each day j = 1..m.

    Optionally, events (support tickets) arrive on each day at Poisson rate
    `arrival_base + arrival_per_x * x_{j-1}`; an event arriving on day 1 of an m-day
    window multiplies survival by a random factor of mean `arrival_escape[m]`. By the
    Poisson exponential formula, day 1 then contributes
    exp(-(arrival_base + arrival_per_x x_0) (1 - arrival_escape[m])).
    """
    A = np.zeros(horizon + 1)
    G = np.zeros(horizon + 1)
    L = np.zeros(horizon + 1)
    escape = np.ones(horizon + 1) if arrival_escape is None else arrival_escape
    c, bc = proc.scale, proc.beta * proc.scale
    for m in range(1, horizon + 1):
        u = weight + A[m - 1]
        A[m] = arrival_per_x * (1.0 - escape[m]) + bc * u / (1.0 + c * u)
        G[m] = G[m - 1] + np.log1p(c * u)
        L[m] = L[m - 1] + arrival_base * (1.0 - escape[m])
    return SurvivalCoefficients(A, G, L)


def propagate(proc: LatentProcess, v: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Laplace transform of x_n given x_0 for n = 0..steps, at each argument in v.

    E[exp(-v x_n) | x_0] = exp(-Phi[n] x_0 - delta Gamma[n]); returns (Phi, Gamma), each of
    shape (steps + 1, len(v)).
    """
    v = np.asarray(v, dtype=float)
    phi = np.empty((steps + 1, v.size))
    gam = np.zeros((steps + 1, v.size))
    phi[0] = v
    c, bc = proc.scale, proc.beta * proc.scale
    for n in range(1, steps + 1):
        prev = phi[n - 1]
        gam[n] = gam[n - 1] + np.log1p(c * prev)
        phi[n] = bc * prev / (1.0 + c * prev)
    return phi, gam


def geometric_escape(hazard: float, resolve_prob: float, horizon: int) -> np.ndarray:
    """E[exp(-hazard * min(D, n))] for n = 0..horizon, D ~ Geometric(resolve_prob) on 1, 2, ...

    D is how many days a ticket stays open counting its first; a ticket resolves at the end
    of each open day with probability resolve_prob.
    """
    out = np.ones(horizon + 1)
    q = 1.0 - resolve_prob
    d = np.arange(1, horizon + 1)
    pmf_terms = resolve_prob * q ** (d - 1) * np.exp(-hazard * d)  # P(D = d) e^{-h d}
    partial = np.concatenate([[0.0], np.cumsum(pmf_terms)])
    for n in range(1, horizon + 1):
        out[n] = partial[n - 1] + q ** (n - 1) * np.exp(-hazard * n)
    return out
