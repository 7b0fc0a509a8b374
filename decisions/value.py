"""The value rule: what an action's effect on a customer is worth. One place, used by every
policy that is decided or evaluated (clm's, the oracle's, churn-risk targeting, random).

  expected incremental value = (fall in churn probability) x keep value
                             + (rise in upgrade probability) x upgrade margin
                             - cost (the contact, and any discount it grants)

- monthly revenue: the customer's plan price; without plans (a transactions export), the
  paid amount of the last 365 days / 12; unknown: 0.
- keep value: `keep_months` of monthly revenue (catalogue `value.keep_months`, default 12):
  what the business keeps by not losing the customer within the horizon. A customer with no
  revenue on record (a shop's customer who never bought, or not within the year): the
  catalogue's `value.purchase_value`, what winning a purchase from them is worth (churn,
  for a shop, is "no purchase within the horizon"; preventing it is winning one).
- upgrade margin: `upgrade_months` of the step from the current plan's price to the next
  plan's (the plans the data knows, by price); 0 on the top plan or without plans.
- both times the catalogue's `value.margin`, the share of revenue the business keeps.
- cost: `ActionEntry.cost` at the monthly revenue (a discount is a share of bills).

Only observable data enters (prices, spend), never a model's prediction, so that the same
accounting judges every policy, and a policy cannot look better by inflating its own
estimate of what a customer is worth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clm.domain import Table
from clm.workspace import Workspace
from decisions.catalogue import ActionEntry, ValueSettings

# The customer columns the rule reads; any may be missing or null.
VALUE_COLUMNS = ("price", "monetary_365d")


def monthly_revenue(customers: pd.DataFrame) -> np.ndarray:
    """Plan price, else the last year's spend / 12, else 0."""
    n = len(customers)
    price = customers["price"].to_numpy(dtype=float) if "price" in customers else np.full(n, np.nan)
    spend = customers["monetary_365d"].to_numpy(dtype=float) / 12 if "monetary_365d" in customers else np.full(n, np.nan)
    return np.nan_to_num(np.where(np.isnan(price), spend, price), nan=0.0)


def next_plan_price(price: np.ndarray, plan_prices: np.ndarray) -> np.ndarray:
    """The price of the next plan up from each price (the lowest known price above it);
    the same price on the top plan or when it is unknown (no step, no margin)."""
    ladder = np.unique(np.asarray(plan_prices, dtype=float)[np.isfinite(plan_prices)])
    price = np.asarray(price, dtype=float)
    if ladder.size == 0:
        return price.copy()
    position = np.searchsorted(ladder, np.nan_to_num(price, nan=np.inf), side="right")
    above = ladder[np.minimum(position, ladder.size - 1)]
    return np.where(np.isfinite(price) & (position < ladder.size), above, price)


@dataclass(frozen=True)
class CustomerValues:
    """Per customer: monthly revenue, what keeping them is worth, what an upgrade earns."""

    monthly_revenue: np.ndarray
    keep_value: np.ndarray
    upgrade_margin: np.ndarray


def customer_values(customers: pd.DataFrame, plan_prices: np.ndarray, settings: ValueSettings) -> CustomerValues:
    revenue = monthly_revenue(customers)
    price = customers["price"].to_numpy(dtype=float) if "price" in customers else np.full(len(customers), np.nan)
    step = np.nan_to_num(next_plan_price(price, plan_prices) - price, nan=0.0)
    known = (revenue > 0) | np.isfinite(price)  # revenue on record, or a plan (a free one keeps its 0)
    keep = np.where(known, settings.keep_months * revenue, settings.purchase_value)
    return CustomerValues(revenue, settings.margin * keep, settings.margin * settings.upgrade_months * np.maximum(step, 0.0))


@dataclass(frozen=True)
class ValueParts:
    """(customers, actions) arrays: the parts of the expected incremental value, and the
    total (computed once: callers index it per customer)."""

    retention: np.ndarray  # fall in churn probability x keep value
    upgrade: np.ndarray  # rise in upgrade probability x upgrade margin
    cost: np.ndarray
    total: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.retention + self.upgrade - self.cost)


def action_costs(entries: list[ActionEntry], revenue: np.ndarray) -> np.ndarray:
    """(customers, actions): each action's cost for each customer."""
    if not entries:
        return np.zeros((revenue.size, 0))
    return np.column_stack([np.broadcast_to(e.cost(revenue), revenue.shape) for e in entries]).astype(float)


def expected_value(churn_change: np.ndarray, upgrade_change: np.ndarray, values: CustomerValues,
                   cost: np.ndarray) -> ValueParts:
    """churn_change, upgrade_change: (customers, actions) changes of the probabilities an
    action brings (negative churn change = fewer leave)."""
    return ValueParts(
        retention=-churn_change * values.keep_value[:, None],
        upgrade=upgrade_change * values.upgrade_margin[:, None],
        cost=cost,
    )


def plan_list_prices(workspace: Workspace) -> dict[str, tuple[float, float]]:
    """Each plan on record and the lowest and highest list price it had (empty without
    subscriptions)."""
    path = workspace.table_path(Table.SUBSCRIPTIONS)
    if not path.exists():
        return {}
    subs = workspace.read_table(Table.SUBSCRIPTIONS, columns=["plan", "price"]).dropna()
    spans = subs.groupby("plan")["price"].agg(["min", "max"])
    return {str(plan): (float(row["min"]), float(row["max"])) for plan, row in spans.iterrows()}


def plan_prices(workspace: Workspace) -> np.ndarray:
    """The monthly price of every plan the data knows (each plan's latest price); empty
    without subscriptions."""
    path = workspace.table_path(Table.SUBSCRIPTIONS)
    if not path.exists():
        return np.zeros(0)
    subs = workspace.read_table(Table.SUBSCRIPTIONS, columns=["event_time", "plan", "price"])
    # A plan priced twice at one instant: the higher price, whatever the rows' order.
    latest = subs.dropna(subset=["price"]).sort_values(["event_time", "price"]).drop_duplicates("plan", keep="last")
    return np.sort(latest["price"].to_numpy(dtype=float))
