"""Batch allocation: which customer gets which action, under a budget and daily capacities,
for the largest total expected incremental value. Not first come, first served.

The problem, with x[i, a] = 1 if customer i gets action a (a != none):

    maximise   sum v[i, a] x[i, a]
    subject to sum_a x[i, a] <= 1                 one action per customer (else none)
               sum c[i, a] x[i, a] <= budget      the campaign's budget
               sum_i x[i, a] <= capacity[a]       e.g. calls a day
               x[i, a] in {0, 1}, and only where the action is allowed and v[i, a] > 0

an assignment problem with knapsack constraints (a multiple-choice knapsack).

- Up to EXACT_MAX_CANDIDATES candidate pairs: solved exactly by HiGHS's branch and bound
  (`scipy.optimize.milp`), gap 0.
- Larger (HiGHS's time grows too fast with the pairs for a whole base: see the README's
  next-best-action section): the multiple-choice
  knapsack's LP relaxation solved by its greedy (Sinha and Zoltners, 1979): each
  customer's options reduced to the upper convex hull of (cost, value) from "none" at
  (0, 0); the hull's increments taken in falling order of value per unit of cost while the
  budget lasts. Everything before the first increment that does not fit is the LP optimum
  less that one increment's fraction, so the integer solution is within one increment of
  the optimum; increments that still fit are then added. Capacities are priced in by
  Lagrange multipliers (a value charged per use of a limited action, raised by bisection
  until its capacity holds), and the dual bound LP(mu) + sum mu K gives the proven gap.

Either way the reported gap is a proof, not an estimate. A pair whose value is not
positive is never a candidate: doing nothing is then the answer.
"""
from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array


@dataclass
class Allocation:
    """choice[i]: index of the action customer i gets, or -1 for none; value, cost: totals;
    gap: the solver's proven relative optimality gap (0 = optimal)."""

    choice: np.ndarray
    value: float
    cost: float
    gap: float


EXACT_MAX_CANDIDATES = 2_000  # beyond, HiGHS takes seconds to minutes; the greedy, milliseconds


def allocate(
    value: np.ndarray, cost: np.ndarray, allowed: np.ndarray, budget: float,
    capacity: np.ndarray | None = None, exact_max_candidates: int = EXACT_MAX_CANDIDATES,
) -> Allocation:
    """value, cost, allowed: (customers, actions) arrays over the contact actions (none
    excluded); capacity: per action, inf where unlimited."""
    n, k = value.shape
    capacity = np.full(k, np.inf) if capacity is None else np.asarray(capacity, dtype=float)
    candidate = allowed & (value > 0) & (cost <= budget)
    if not candidate.any():
        return Allocation(np.full(n, -1), 0.0, 0.0, 0.0)
    if candidate.sum() <= exact_max_candidates:
        return _exact(value, cost, candidate, budget, capacity)
    return _greedy_with_prices(value, cost, candidate, budget, capacity)


def _exact(value: np.ndarray, cost: np.ndarray, candidate: np.ndarray, budget: float, capacity: np.ndarray,
           time_limit_seconds: float = 120.0) -> Allocation:
    n, k = value.shape
    rows, cols = np.nonzero(candidate)
    choice = np.full(n, -1)
    v, c, m = value[rows, cols], cost[rows, cols], rows.size
    variables = np.arange(m)
    per_customer = csr_array((np.ones(m), (rows, variables)), shape=(n, m))
    per_action = csr_array((np.ones(m), (cols, variables)), shape=(k, m))
    constraints = [
        LinearConstraint(per_customer, -np.inf, 1.0),
        LinearConstraint(csr_array(c[None, :]), -np.inf, budget),
    ]
    limited = np.isfinite(capacity)
    if limited.any():
        constraints.append(LinearConstraint(per_action[limited], -np.inf, capacity[limited]))
    with c_output_dropped():
        result = milp(-v, integrality=np.ones(m), bounds=Bounds(0, 1), constraints=constraints,
                      options={"time_limit": time_limit_seconds, "mip_rel_gap": 1e-9, "disp": False})
    if result.x is None:
        raise RuntimeError(f"The allocation solver found no solution: {result.message}")
    picked = result.x > 0.5
    choice[rows[picked]] = cols[picked]
    proven_gap = float(getattr(result, "mip_gap", 0.0) or 0.0)
    return Allocation(choice, float(v[picked].sum()), float(c[picked].sum()), proven_gap)


@contextmanager
def c_output_dropped() -> Iterator[None]:
    """What C code prints to standard output inside the block goes nowhere. scipy's HiGHS
    prints "HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();" with
    printf whatever its options say (jump-dev/HiGHS.jl#312), and its buffer would reach the
    user's terminal when the process ends. Python's own output is flushed before; a thread
    printing meanwhile (a progress bar's refresh) loses those frames only."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        libc.fflush(None)  # what C buffered inside goes to /dev/null, not to the restored stdout
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _greedy(value: np.ndarray, cost: np.ndarray, candidate: np.ndarray, budget: float) -> tuple[np.ndarray, float]:
    """The multiple-choice knapsack greedy (no capacities): (choice, LP upper bound)."""
    n, k = value.shape
    hull_option, hull_cost, hull_value, size = _upper_hulls(value, cost, candidate)
    # Increments along each hull: (customer, step, option it moves to, d_value, d_cost).
    customers, steps = np.nonzero(np.arange(k)[None, :] < size[:, None] - 1)
    options = hull_option[customers, steps + 1]
    d_value = hull_value[customers, steps + 1] - hull_value[customers, steps]
    d_cost = hull_cost[customers, steps + 1] - hull_cost[customers, steps]
    with np.errstate(divide="ignore"):
        efficiency = np.where(d_cost > 0, d_value / np.where(d_cost > 0, d_cost, 1.0), np.inf)
    order = np.lexsort((steps, customers, -efficiency))
    customers, steps, options, d_value, d_cost = (a[order] for a in (customers, steps, options, d_value, d_cost))
    # Everything before the first increment that does not fit is taken (hull efficiencies fall
    # along each customer's hull, so a customer's steps come in order); the LP takes a fraction
    # of that one and stops.
    spent = np.cumsum(d_cost)
    fits = spent <= budget + 1e-12
    cut = int(np.argmin(fits)) if not fits.all() else fits.size
    choice = np.full(n, -1)
    taken = np.zeros(n, dtype=np.int64)
    np.maximum.at(taken, customers[:cut], steps[:cut] + 1)
    last = np.flatnonzero(taken)
    choice[last] = hull_option[last, taken[last]]
    bound = float(d_value[:cut].sum())
    left = budget - (float(spent[cut - 1]) if cut else 0.0)
    if cut < fits.size:
        bound += float(d_value[cut]) * left / float(d_cost[cut])
        # Then whole increments that still fit, in the same order, each after its predecessor
        # (the budget left only shrinks: one too dear now never fits later).
        rest = cut + np.flatnonzero(d_cost[cut:] <= left + 1e-12)
        for i, step, option, dc in zip(customers[rest], steps[rest], options[rest], d_cost[rest]):
            if dc <= left + 1e-12 and step == taken[i]:
                choice[i], taken[i], left = option, step + 1, left - dc
    return choice, bound


def _upper_hulls(value: np.ndarray, cost: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each customer's upper convex hull of (cost, value) over its candidate options, from
    "none" at (0, 0): (option, cost, value) per hull point, (n, k + 1) each, and the number
    of points. Built for all customers at once, one option (by cost) at a time."""
    n, k = value.shape
    by_cost = np.argsort(np.where(candidate, cost, np.inf), axis=1, kind="stable")
    option, c, v = np.full((n, k + 1), -1), np.zeros((n, k + 1)), np.zeros((n, k + 1))
    size = np.ones(n, dtype=np.int64)
    rows = np.arange(n)
    for j in range(k):
        a = by_cost[:, j]
        pc, pv = cost[rows, a], value[rows, a]
        # An option adds to the hull only if it is worth more than every cheaper one kept.
        adds = candidate[rows, a] & (pv > v[rows, size - 1])
        for _ in range(k):  # pop points that fall on or below the segment to the new one
            top, below = size - 1, size - 2
            safe = np.maximum(below, 0)
            under = (
                adds & (size >= 2)
                & ((v[rows, top] - v[rows, safe]) * (pc - c[rows, safe]) <= (pv - v[rows, safe]) * (c[rows, top] - c[rows, safe]))
            )
            if not under.any():
                break
            size -= under
        at = np.flatnonzero(adds)
        option[at, size[at]], c[at, size[at]], v[at, size[at]] = a[at], pc[at], pv[at]
        size[at] += 1
    return option, c, v, size


def _greedy_with_prices(value: np.ndarray, cost: np.ndarray, candidate: np.ndarray, budget: float,
                        capacity: np.ndarray, rounds: int = 40) -> Allocation:
    """The greedy with a price per use of each capacity-limited action, raised by bisection
    until its capacity holds (Lagrangian relaxation); the dual bound proves the gap."""
    n, k = value.shape
    price = np.zeros(k)
    limited = np.flatnonzero(np.isfinite(capacity))

    def solve(prices: np.ndarray) -> tuple[np.ndarray, float]:
        return _greedy(value - prices[None, :], cost, candidate & (value - prices[None, :] > 0), budget)

    choice, bound = solve(price)
    for _ in range(3 if limited.size > 1 else 1):  # a few sweeps when several actions are limited
        for a in limited:
            if (choice == a).sum() <= capacity[a]:
                continue
            low, high = price[a], max(float(value[:, a].max()), 1.0)
            for _ in range(rounds):
                price[a] = (low + high) / 2
                choice, bound = solve(price)
                low, high = (price[a], high) if (choice == a).sum() > capacity[a] else (low, price[a])
            price[a] = high
            choice, bound = solve(price)
    # Over capacity still (ties at the price): drop the least valuable uses.
    for a in limited:
        users = np.flatnonzero(choice == a)
        if users.size > capacity[a]:
            excess = users[np.argsort(value[users, a])][: users.size - int(capacity[a])]
            choice[excess] = -1
    picked = np.flatnonzero(choice >= 0)
    total = float(value[picked, choice[picked]].sum())
    upper = bound + float(price[limited] @ capacity[limited]) if limited.size else bound
    return Allocation(choice, total, float(cost[picked, choice[picked]].sum()),
                      max(0.0, (upper - total) / upper) if upper > 0 else 0.0)
