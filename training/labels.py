"""Outcome labels, from data strictly after each cutoff, and the time-based split.

For a cutoff T (00:00 UTC of a month's first day) and horizon H, the label window is
[T, T + H). Labels exist for the population at T (`decisions.population`: a live contract,
or any paid purchase before T), the same rows that scoring scores.

  churn    contractual: a cancellation in the window; non-contractual: no paid purchase in it
  upsell   an upgrade in the window (contractual only: there are no plans otherwise)
  clv      revenue (paid amounts) in [T, T + clv_days)
  stage    the stage at T + H by the product's stage rules (`clm.stages`), from features
           as of T + H
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm.errors import ClmError
from clm.rawdb import connect_raw
from clm.workspace import RawManifest, Workspace
from decisions.population import population_ctes, register_cutoffs
from features.groups import exact_sum

MIN_HISTORY_DAYS = 30  # a cutoff needs this much data before it


class NotEnoughHistory(ClmError):
    """Too few complete label windows before the as-of date to train a model."""


class NotEnoughExamples(ClmError):
    """The label windows exist, but hold too few examples of some outcome to learn or judge
    a model (a small or skewed base)."""


@dataclass(frozen=True)
class LabelConfig:
    horizon_days: int = 90
    clv_days: int = 365
    shortest_clv_days: int = 90  # CLV's window may be shortened to this where history is short


@dataclass(frozen=True)
class Split:
    """Cutoffs of each part; every label window of a part ends by the next part's cutoff."""

    train: list[pd.Timestamp]
    valid: pd.Timestamp
    test: pd.Timestamp

    @property
    def all(self) -> list[pd.Timestamp]:
        return [*self.train, self.valid, self.test]


def candidate_cutoffs(manifest: RawManifest, as_of: pd.Timestamp, window_days: int) -> list[pd.Timestamp]:
    """Month starts with enough history before them whose label window ends by as_of."""
    first = manifest.start + pd.Timedelta(days=MIN_HISTORY_DAYS)
    dates = pd.date_range(first, as_of, freq="MS", tz="UTC")
    return [d for d in dates if d + pd.Timedelta(days=window_days) <= as_of]


def time_split(
    cutoffs: list[pd.Timestamp], window_days: int, min_train: int = 3,
    advice: str = "Use a longer period of data or a shorter --horizon-days.",
) -> Split:
    """Test = the latest cutoff; validation = the latest whose label window ends by the
    test cutoff; training = those whose windows end by the validation cutoff. No label
    window of training or validation reaches the test cutoff; where the history is too
    short for that, NotEnoughHistory says how much is needed (never a silent overlap)."""
    window = pd.Timedelta(days=window_days)
    if cutoffs:
        test = cutoffs[-1]
        valid_options = [c for c in cutoffs if c + window <= test]
        if valid_options:
            valid = valid_options[-1]
            train = [c for c in cutoffs if c + window <= valid]
            if len(train) >= min_train:
                return Split(train, valid, test)
    months = min_train + 1 + 2 * int(np.ceil(window_days / 30.4))
    raise NotEnoughHistory(
        f"Not enough history for a {window_days}-day label window: a time split without overlap needs "
        f"{min_train} training cutoffs, then a validation and a test cutoff each a full window later, and the "
        f"test window complete: about {months} months of cutoffs plus {window_days} days "
        f"(found {len(cutoffs)} usable cutoff(s)). {advice}"
    )


def split_with_longest_window(
    manifest: RawManifest, as_of: pd.Timestamp, wanted_days: int, shortest_days: int, step_days: int = 30
) -> tuple[Split, int]:
    """The split for the longest label window that the history allows without overlap:
    wanted_days, else the multiples of step_days below it down to shortest_days; and that
    window's length. For labels whose length is a convention rather than the user's
    question (CLV's year). Raises NotEnoughHistory (saying what the shortest needs) if none fits."""
    candidates = [wanted_days] + [d for d in range(wanted_days // step_days * step_days, shortest_days - 1, -step_days)
                                  if d < wanted_days]
    for days in candidates[:-1]:
        try:
            return time_split(candidate_cutoffs(manifest, as_of, days), days), days
        except NotEnoughHistory:
            continue
    shortest = candidates[-1]
    advice = (f"The window is already shortened from {wanted_days} to {shortest} days, the least that says "
              "something about value: use a longer period of data.")
    return time_split(candidate_cutoffs(manifest, as_of, shortest), shortest, advice=advice), shortest


# CLV's revenue is an exact sum (`features.groups.exact_sum`): the same label whatever order
# the rows are added in (and so the same training rows' order, `training.frames.row_hashes`).
LABEL_SQL = """
WITH {population},
window_subs AS (
    SELECT p.customer_id, p.as_of,
           max(CASE WHEN e.event = 'cancel' THEN 1 ELSE 0 END) AS cancelled,
           max(CASE WHEN e.event = 'upgrade' THEN 1 ELSE 0 END) AS upgraded
    FROM population p JOIN subscriptions e ON e.customer_id = p.customer_id
     AND e.event_time >= p.as_of AND e.event_time < p.as_of + INTERVAL {horizon} DAY
    GROUP BY p.customer_id, p.as_of
),
window_paid AS (
    SELECT p.customer_id, p.as_of,
           sum(CASE WHEN e.event_time < p.as_of + INTERVAL {horizon} DAY THEN 1 ELSE 0 END) AS purchases,
           """ + exact_sum("CASE WHEN e.event_time < p.as_of + INTERVAL {clv_days} DAY THEN e.amount ELSE 0 END") + """ AS revenue
    FROM population p JOIN transactions e ON e.customer_id = p.customer_id AND e.status = 'paid'
     AND e.event_time >= p.as_of AND e.event_time < p.as_of + INTERVAL {longest} DAY
    GROUP BY p.customer_id, p.as_of
)
SELECT p.customer_id, p.as_of AS event_timestamp,
       CASE WHEN {contractual} THEN coalesce(s.cancelled, 0)
            ELSE CASE WHEN coalesce(w.purchases, 0) = 0 THEN 1 ELSE 0 END END AS churn,
       CASE WHEN {contractual} THEN coalesce(s.upgraded, 0) END AS upsell,
       CAST(coalesce(w.revenue, 0) AS DOUBLE) AS clv
FROM population p
LEFT JOIN window_subs s ON s.customer_id = p.customer_id AND s.as_of = p.as_of
LEFT JOIN window_paid w ON w.customer_id = p.customer_id AND w.as_of = p.as_of
ORDER BY event_timestamp, customer_id
"""


# The rows labelled instead of the population (`outcome_labels(rows=...)`): given
# (customer, cutoff) pairs of customers signed up before the cutoff.
GIVEN_ROWS = """population AS (
    SELECT g.customer_id, g.as_of FROM given_rows g
    JOIN customers c ON c.customer_id = g.customer_id AND c.signup_time < g.as_of
)"""


def outcome_labels(
    workspace: Workspace, cutoffs: list[pd.Timestamp], config: LabelConfig, contractual: bool,
    rows: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """churn, upsell and clv for the population at each cutoff (stage: see stage_labels), or
    for the given (customer_id, event_timestamp) rows of customers signed up by then (the
    customers a campaign chose: a shop's campaign may reach who has not bought yet)."""
    con = connect_raw(workspace)
    try:
        register_cutoffs(con, cutoffs)
        if rows is not None:
            con.register("given_rows", rows[["customer_id", "event_timestamp"]].rename(
                columns={"event_timestamp": "as_of"}).drop_duplicates())
        sql = LABEL_SQL.format(
            population=population_ctes(contractual) if rows is None else GIVEN_ROWS,
            contractual="true" if contractual else "false",
            horizon=int(config.horizon_days), clv_days=int(config.clv_days),
            longest=max(int(config.horizon_days), int(config.clv_days)),
        )
        frame = con.sql(sql).df()
    finally:
        con.close()
    frame["churn"] = frame["churn"].astype("int64")
    frame["upsell"] = frame["upsell"].astype("Int64")
    return frame


def stage_labels(population: pd.DataFrame, stages_later: pd.DataFrame, horizon_days: int) -> pd.Series:
    """Stage at cutoff + H for each (customer_id, event_timestamp) row of population.

    stages_later: (customer_id, event_timestamp, stage) from the stage rules at later dates.
    """
    later = population[["customer_id", "event_timestamp"]].assign(
        at=population["event_timestamp"] + pd.Timedelta(days=horizon_days)
    )
    merged = later.merge(
        stages_later.rename(columns={"event_timestamp": "at"}), on=["customer_id", "at"], how="left", validate="one_to_one"
    )
    return pd.Series(merged["stage"].to_numpy(), index=population.index, name="stage")
