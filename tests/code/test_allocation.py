"""Batch allocation: optimal against brute force; budget, capacity, one action each, and
never an action of non-positive value."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from serving.allocation import allocate


def brute_force(value, cost, allowed, budget, capacity):
    n, k = value.shape
    best = 0.0
    for choice in itertools.product(range(-1, k), repeat=n):
        picks = [(i, a) for i, a in enumerate(choice) if a >= 0]
        if any(not allowed[i, a] for i, a in picks):
            continue
        if sum(cost[i, a] for i, a in picks) > budget + 1e-9:
            continue
        if any(sum(1 for _, b in picks if b == a) > capacity[a] for a in range(k)):
            continue
        best = max(best, sum(value[i, a] for i, a in picks))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_allocation_is_optimal_on_small_cases(seed):
    rng = np.random.default_rng(seed)
    n, k = rng.integers(1, 7), rng.integers(1, 4)
    value = np.round(rng.normal(3, 4, (n, k)), 2)  # some negative: never worth doing
    cost = np.round(rng.uniform(0.5, 5, (n, k)), 2)
    allowed = rng.random((n, k)) < 0.8
    budget = float(np.round(rng.uniform(0, 10), 2))
    capacity = np.where(rng.random(k) < 0.5, rng.integers(0, 3, k), 10**6).astype(float)
    result = allocate(value, cost, allowed, budget, np.where(capacity >= 10**6, np.inf, capacity))
    assert result.value == pytest.approx(brute_force(value, cost, allowed, budget, capacity), abs=1e-6)
    picked = np.flatnonzero(result.choice >= 0)
    chosen = result.choice[picked]
    assert all(allowed[i, a] and value[i, a] > 0 for i, a in zip(picked, chosen))
    assert cost[picked, chosen].sum() <= budget + 1e-9 and result.cost == pytest.approx(cost[picked, chosen].sum())
    assert all((chosen == a).sum() <= capacity[a] for a in range(k))


def test_value_density_is_not_first_come_first_served():
    # Budget 10. Customer 0's action is worth most (9) but costs the whole budget; customers
    # 1 and 2 are worth 6 + 6 for 5 + 5. Greedy by value takes 9; the optimum takes 12.
    value = np.array([[9.0], [6.0], [6.0]])
    cost = np.array([[10.0], [5.0], [5.0]])
    result = allocate(value, cost, np.ones((3, 1), dtype=bool), budget=10.0)
    assert result.choice.tolist() == [-1, 0, 0] and result.value == 12.0


def test_capacity_goes_to_where_it_is_worth_most():
    # One call a day (action 0); customer 1 gains more from it, customer 0 has an email
    # (action 1) nearly as good; the budget is no constraint.
    value = np.array([[5.0, 4.5], [8.0, 1.0]])
    cost = np.ones((2, 2))
    result = allocate(value, cost, np.ones((2, 2), dtype=bool), 100.0, np.array([1.0, np.inf]))
    assert result.choice.tolist() == [1, 0] and result.value == 12.5


def test_nothing_worth_doing_is_nothing():
    result = allocate(np.array([[-1.0, 0.0]]), np.ones((1, 2)), np.ones((1, 2), dtype=bool), 10.0)
    assert result.choice.tolist() == [-1] and result.value == 0.0 and result.cost == 0.0


@pytest.mark.parametrize("seed, limited", [(1, False), (2, True), (3, True)])
def test_the_large_base_method_is_within_its_proven_gap_of_the_optimum(seed, limited):
    """The greedy with prices (used above EXACT_MAX_CANDIDATES pairs) on a base the exact
    solver still handles: never above the optimum, and below it by at most its proven gap."""
    from serving.allocation import _exact, _greedy_with_prices

    rng = np.random.default_rng(seed)
    n, k = 1500, 4
    value = rng.normal(1, 5, (n, k))
    cost = rng.uniform(0.2, 40, (n, k))
    candidate = (rng.random((n, k)) < 0.7) & (value > 0)
    capacity = np.array([30.0, np.inf, np.inf, np.inf]) if limited else np.full(k, np.inf)
    budget = 2_000.0
    exact = _exact(value, cost, candidate, budget, capacity)
    fast = _greedy_with_prices(value, cost, candidate, budget, capacity)
    picked = np.flatnonzero(fast.choice >= 0)
    assert fast.cost <= budget + 1e-9 and all((fast.choice == a).sum() <= capacity[a] for a in range(k))
    assert candidate[picked, fast.choice[picked]].all()
    assert fast.value <= exact.value + 1e-6
    assert fast.value >= exact.value * (1 - fast.gap) - 1e-6  # the proof holds
    assert fast.gap < 0.01  # and it is tight: within 1% here



DROPPED = """
import ctypes
from serving.allocation import c_output_dropped
libc = ctypes.CDLL(None)
with c_output_dropped():
    libc.printf(b"HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();\\n")
libc.printf(b"C after\\n")
print("Python after")
"""


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_what_the_solver_prints_from_c_goes_nowhere_and_stdout_comes_back(unbuffered):
    """HiGHS prints a debug line with C's printf whatever its options: inside
    `c_output_dropped` C output is dropped, whether C buffers it (output to a pipe: it would
    reach the terminal at exit) or not (PYTHONUNBUFFERED), and after it the process's
    standard output is what it was."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | (
        {"PYTHONUNBUFFERED": unbuffered} if unbuffered else {})
    done = subprocess.run([sys.executable, "-c", DROPPED], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "HighsMipSolverData" not in done.stdout
    assert "C after" in done.stdout and "Python after" in done.stdout
