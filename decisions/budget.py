"""What a decision run may spend: the one budget rule of every command that decides for a
base (`clm score`, `run`, `retrain` and `evaluate-policy`), so that the policy judged is
the policy shipped.

Given (`--budget`), it is that amount; otherwise DEFAULT_BUDGET_PER_CUSTOMER for each
customer decided for at the date (`decisions.population.in_decision_population`: the
funnel's base, not every customer the workspace ever knew). The API decides one customer
at a time and has no budget (only the contact rules and daily capacities).
"""
from __future__ import annotations

# About what lets the oracle treat 10% of a simulated base with the default catalogue
# (cheap upgrade offers and nudges go first): measured on 20,000 and 100,000 customers.
DEFAULT_BUDGET_PER_CUSTOMER = 0.15

HELP = ("What the decided actions may cost in all (contacts and discounts), allocated across the whole base; "
        f"default: {DEFAULT_BUDGET_PER_CUSTOMER} per customer decided for (the same rule for score, run, retrain "
        "and evaluate-policy; 1e12 for no limit).")


def decision_budget(given: float | None, customers_decided: int) -> float:
    """The budget of a decision run over `customers_decided` customers (module docstring)."""
    return float(given) if given is not None else DEFAULT_BUDGET_PER_CUSTOMER * customers_decided
