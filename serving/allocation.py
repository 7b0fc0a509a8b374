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
- Larger (a whole base: HiGHS needs minutes for 100,000 customers): the multiple-choice
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


EXACT_MAX_CANDIDATES = 20_000


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
    result = milp(-v, integrality=np.ones(m), bounds=Bounds(0, 1), constraints=constraints,
                  options={"time_limit": time_limit_seconds, "mip_rel_gap": 1e-9, "disp": False})
    if result.x is None:
        raise RuntimeError(f"The allocation solver found no solution: {result.message}")
    picked = result.x > 0.5
    choice[rows[picked]] = cols[picked]
    proven_gap = float(getattr(result, "mip_gap", 0.0) or 0.0)
    return Allocation(choice, float(v[picked].sum()), float(c[picked].sum()), proven_gap)


def _greedy(value: np.ndarray, cost: np.ndarray, candidate: np.ndarray, budget: float) -> tuple[np.ndarray, float]:
    """The multiple-choice knapsack greedy (no capacities): (choice, LP upper bound)."""
    n, k = value.shape
    v = np.where(candidate, value, -np.inf)
    # Per customer, options by cost; walk the upper convex hull from none at (0, 0).
    order = np.argsort(np.where(candidate, cost, np.inf), axis=1, kind="stable")
    increments = []  # (efficiency, customer, option, d_value, d_cost, step)
    for i in np.flatnonzero(candidate.any(axis=1)):
        hull = [(-1, 0.0, 0.0)]  # (option, cost, value)
        for a in order[i]:
            if not candidate[i, a] or v[i, a] <= hull[-1][2]:
                continue  # not an option, or no more value than a cheaper one: dominated
            point = (a, cost[i, a], v[i, a])
            while len(hull) >= 2 and _below(hull[-2], hull[-1], point):
                hull.pop()
            hull.append(point)
        for step, (prev, cur) in enumerate(zip(hull, hull[1:])):
            dv, dc = cur[2] - prev[2], cur[1] - prev[1]
            increments.append((dv / dc if dc > 0 else np.inf, i, cur[0], dv, dc, step))
    increments.sort(key=lambda t: (-t[0], t[1], t[5]))
    choice, spent, bound, taken, broken = np.full(n, -1), 0.0, 0.0, np.zeros(n, dtype=np.int64), False
    for efficiency, i, a, dv, dc, step in increments:
        if step != taken[i]:
            continue  # an earlier increment of this customer was left out: later ones cannot follow
        if spent + dc <= budget + 1e-12:
            choice[i], spent, taken[i] = a, spent + dc, taken[i] + 1
            if not broken:
                bound += dv
        elif not broken:  # the LP takes this increment's fraction and stops there
            bound += dv * (budget - spent) / dc
            broken = True
    return choice, bound


def _below(a: tuple, b: tuple, c: tuple) -> bool:
    """Whether hull point b lies on or below the segment from a to c (not on the upper hull)."""
    return (b[2] - a[2]) * (c[1] - a[1]) <= (c[2] - a[2]) * (b[1] - a[1])


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
