"""Who a model scores at an instant T: the one rule shared by training labels and scoring.

A customer is *in the population* at T (and so gets churn, upsell and CLV scores) when:

  contractual      their latest subscription event before T is not a cancellation: the
                   contract is live. A cancelled customer's contract has ended; there is
                   nothing left to churn or upsell, so their scores are null.
  non-contractual  they made at least one paid purchase before T. Churn is only ever an
                   estimate here (no purchase within the horizon), so a customer quiet for
                   a long time is still scored: lapsed customers are who a win-back targets.

Training labels are computed for exactly these (customer, cutoff) rows
(`training.labels.outcome_labels`), and `clm score` / `clm backtest` score exactly these
rows at the as-of date: a model is never asked to score a row it was not trained on.

Who clm *decides for* at T (`in_decision_population`) is the same for a contractual
business; a non-contractual one decides for every customer on record at T, bought or not:
a shop's campaign may aim at a first purchase, and its uplift model learns from every
customer a campaign chose (`training.train_uplift`). Their scores stay null; the actions'
values need none (`decisions.value`: a purchase won from a customer with no revenue on
record is worth the catalogue's `value.purchase_value`).
"""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from clm.rawdb import connect_raw
from clm.workspace import Workspace
from features.groups import SUBSCRIPTION_EVENTS, latest_subscription_first

# CTEs over a `cutoffs(as_of)` table and the raw views; the last one, `population`, holds
# one (customer_id, as_of) row per customer in the population at each cutoff.
POPULATION_CTES = """
last_sub AS (
    SELECT customer_id, as_of, event FROM (
        SELECT c.as_of, e.customer_id, e.event,
               row_number() OVER (PARTITION BY e.customer_id, c.as_of ORDER BY {latest}) AS rn
        FROM cutoffs c JOIN {subscriptions} e ON e.event_time < c.as_of
    ) t WHERE rn = 1
),
buyers AS (
    SELECT DISTINCT e.customer_id, c.as_of
    FROM cutoffs c JOIN transactions e ON e.event_time < c.as_of AND e.status = 'paid'
),
population AS (
    SELECT customer_id, as_of FROM last_sub WHERE {contractual} AND event <> 'cancel'
    UNION ALL
    SELECT customer_id, as_of FROM buyers WHERE NOT {contractual}
)"""


def population_ctes(contractual: bool) -> str:
    return POPULATION_CTES.format(contractual="true" if contractual else "false",
                                  latest=latest_subscription_first("e"), subscriptions=SUBSCRIPTION_EVENTS)


def register_cutoffs(con: duckdb.DuckDBPyConnection, cutoffs: list[pd.Timestamp]) -> None:
    con.register("cutoffs", pd.DataFrame({"as_of": pd.DatetimeIndex(cutoffs).astype("datetime64[us, UTC]")}))


def population(workspace: Workspace, cutoffs: list[pd.Timestamp], contractual: bool) -> pd.DataFrame:
    """(customer_id, event_timestamp) for every customer in the population at each cutoff."""
    con = connect_raw(workspace)
    try:
        register_cutoffs(con, cutoffs)
        sql = f"WITH {population_ctes(contractual)} SELECT customer_id, as_of AS event_timestamp FROM population"
        return con.sql(sql + " ORDER BY event_timestamp, customer_id").df()
    finally:
        con.close()


POPULATION_FEATURES = ("is_subscribed", "frequency_total")  # what in_population reads


def population_feature(contractual: bool) -> str:
    """The feature `in_population` reads for this kind of business."""
    return POPULATION_FEATURES[0] if contractual else POPULATION_FEATURES[1]


def in_population(features: pd.DataFrame, contractual: bool) -> np.ndarray:
    """The same rule read off a customer's features at T (what scoring has in hand):
    contractual, `is_subscribed` = 1 (the latest subscription event before T is not a
    cancellation); non-contractual, `frequency_total` > 0 (a paid purchase before T).
    A test holds it equal to `population` on whole workspaces."""
    column = population_feature(contractual)
    if column not in features:
        return np.zeros(len(features), dtype=bool)
    values = pd.to_numeric(features[column], errors="coerce").to_numpy(dtype=float)
    return (values >= 1) if contractual else (values > 0)


def in_decision_population(features: pd.DataFrame, contractual: bool) -> np.ndarray:
    """Who is decided for, read off the customers' features at T (a row per customer on
    record then): contractual, the model population (`in_population`); non-contractual,
    every row (module docstring)."""
    return in_population(features, contractual) if contractual else np.ones(len(features), dtype=bool)
