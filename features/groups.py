"""Feature groups: every feature's definition, written once as SQL.

Each group is one SELECT over the raw tables (registered as views named after them) and a
`snapshots(as_of)` table of UTC instants. A row is one customer who signed up before
as_of; every feature uses only events strictly before as_of (point in time). Usage rows
cover the UTC day starting at their event_time, so a day counts once it has ended.

The SQL is DuckDB's dialect, kept to portable constructs (joins, CASE, window functions,
regr_slope, percent_rank) so that `features.spark` can transpile it with sqlglot: there is
no second copy of any feature's logic. A group is built only if the workspace holds the
tables it needs; a transactions-only workspace gets profile and rfm, and the other groups
are absent (not zero-filled).

Over 500 lines on purpose: the eight groups' SQL and field descriptions are the one place a
feature is defined, and reading them side by side is how one checks they agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa

from clm.domain import CSAT_SCALE, MAX_AMOUNT, NPS_SCALE, Table

FLOAT, STRING = "float", "string"
DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class Range:
    """The values a numeric feature can take: from low to high (inclusive), whole numbers
    only if `whole`. What a caller sends to the API is checked against it (`Feature.problem`)."""

    low: float
    high: float
    whole: bool = False

    def problem(self, value: float) -> str | None:
        """Why `value` cannot be this feature's, or None."""
        if not math.isfinite(value):
            return "must be a finite number"
        if not self.low <= value <= self.high:
            return f"must lie from {self.low:g} to {self.high:g}"
        if self.whole and not float(value).is_integer():
            return "must be a whole number"
        return None


# Ranges of the features' values, from the raw tables' contracts (`clm.contracts`): an amount
# of money below MAX_AMOUNT, CSAT and NPS on their scales; a span of days under 100,000.
ANY_NUMBER = Range(-1e15, 1e15)  # a business's own attribute may be a big number (epoch milliseconds: 1.7e12)
NON_NEGATIVE = Range(0, MAX_AMOUNT)
MONEY = Range(0, MAX_AMOUNT)
COUNT = Range(0, MAX_AMOUNT, whole=True)
DAYS = Range(0, 100_000)  # the contracts bound no date from below: a signup in 1900 is 46,000 days old
SHARE = Range(0, 1)
FLAG = Range(0, 1, whole=True)
CSAT = Range(*CSAT_SCALE)
NPS = Range(*NPS_SCALE)
NPS_CHANGE = Range(NPS_SCALE[0] - NPS_SCALE[1], NPS_SCALE[1] - NPS_SCALE[0], whole=True)


def days_within(days: int) -> Range:
    """A count of days out of the last `days`."""
    return Range(0, days, whole=True)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # FLOAT or STRING
    description: str
    values: Range = ANY_NUMBER  # a numeric feature's range (text features: any text)


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    description: str
    requires: tuple[Table, ...]
    features: tuple[Feature, ...]
    sql: str

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


def _days_between(later: str, earlier: str) -> str:
    return f"((epoch({later}) - epoch({earlier})) / {DAY_SECONDS})"


# Sums of values that are not whole numbers (money, days, decayed counts) are added as exact
# decimals (12 places, up to 10^18): a floating-point sum depends on the order its terms are added in,
# which follows the engine's threads and the rows' ids (pseudonymised ingest changes the
# ids), and a feature must be the same whatever that order. Whole numbers add exactly as
# they are.
EXACT = "DECIMAL(30, 12)"


def exact_sum(value: str) -> str:
    """sum(value), the same whatever order the rows come in."""
    return f"CAST(sum(CAST({value} AS {EXACT})) AS DOUBLE)"


def exact_mean(value: str) -> str:
    """avg(value) (null if no value), the same whatever order the rows come in."""
    return f"({exact_sum(value)} / nullif(count({value}), 0))"


# The latest of a customer's events: exports that give dates only put several events at one
# instant, and which one is the latest must not depend on the rows' order (the engine's
# threads, the ids). The contracts' keys leave two such ties: subscription events of
# different kinds, ranked in the lifecycle's order, and tickets resolved at one instant (the
# lower CSAT counts as the latest). The lifecycle's order on one day: a first start, changes
# of plan, a cancellation, then a restart (a start after the customer's first instant: a
# cancel and a start on one day end live). So a customer who started and cancelled on one
# day, or upgraded and cancelled, has cancelled; one who cancelled and restarted has not.
SUBSCRIPTION_EVENTS = """(
    SELECT *, min(event_time) OVER (PARTITION BY customer_id) AS first_event_time FROM subscriptions
)"""  # the subscriptions, each with the customer's first instant (an instant before any as_of it ranks at)


def latest_subscription_first(alias: str) -> str:
    """ORDER BY terms ranking a customer's subscription events (alias: of SUBSCRIPTION_EVENTS)
    latest first: the one rule for the profile's plan and is_subscribed and the decision
    population."""
    lifecycle = (f"CASE WHEN {alias}.event = 'start' AND {alias}.event_time > {alias}.first_event_time THEN 0 "
                 f"WHEN {alias}.event = 'cancel' THEN 1 WHEN {alias}.event = 'downgrade' THEN 2 "
                 f"WHEN {alias}.event = 'upgrade' THEN 3 ELSE 4 END")
    return f"{alias}.event_time DESC, {lifecycle}"


SPINE = """
spine AS (
    SELECT c.customer_id, s.as_of, c.signup_time
    FROM customers c JOIN snapshots s ON c.signup_time < s.as_of
)"""


PROFILE = FeatureGroup(
    name="profile",
    description="Who the customer is and what they pay.",
    requires=(Table.CUSTOMERS,),
    features=(
        Feature("tenure_days", FLOAT, "Days from signup to as_of.", DAYS),
        Feature("segment", STRING, "Customer segment (null if unknown)."),
        Feature("acquisition_channel", STRING, "Channel the customer was acquired through (null if unknown)."),
        Feature("region", STRING, "Sales region (null if unknown)."),
        Feature("plan", STRING, "Plan after the latest subscription event before as_of (null without subscriptions)."),
        Feature("price", FLOAT, "Monthly list price of that plan (null without subscriptions).", MONEY),
        Feature("is_subscribed", FLOAT, "1 if the latest subscription event is not a cancellation (null without subscriptions).", FLAG),
    ),
    sql=f"""
WITH {SPINE},
last_sub AS (
    SELECT customer_id, as_of, plan, price, event FROM (
        SELECT s.customer_id, s.as_of, e.plan, e.price, e.event,
               row_number() OVER (PARTITION BY s.customer_id, s.as_of ORDER BY {latest_subscription_first('e')}) AS rn
        FROM spine s JOIN {SUBSCRIPTION_EVENTS} e ON e.customer_id = s.customer_id AND e.event_time < s.as_of
    ) t WHERE rn = 1
)
SELECT s.customer_id, s.as_of AS event_timestamp,
       {_days_between('s.as_of', 's.signup_time')} AS tenure_days,
       c.segment, c.acquisition_channel, c.region,
       l.plan, l.price,
       CASE WHEN l.event IS NULL THEN NULL WHEN l.event = 'cancel' THEN 0.0 ELSE 1.0 END AS is_subscribed
FROM spine s JOIN customers c ON c.customer_id = s.customer_id
LEFT JOIN last_sub l ON l.customer_id = s.customer_id AND l.as_of = s.as_of
""",
)

RFM = FeatureGroup(
    name="rfm",
    description="Recency, frequency and monetary value of paid transactions, and their percentile across the base.",
    requires=(Table.CUSTOMERS, Table.TRANSACTIONS),
    features=(
        Feature("recency_days", FLOAT, "Days since the last paid transaction (null if none).", DAYS),
        Feature("frequency_90d", FLOAT, "Paid transactions in the 90 days before as_of.", COUNT),
        Feature("frequency_365d", FLOAT, "Paid transactions in the 365 days before as_of.", COUNT),
        Feature("monetary_90d", FLOAT, "Amount paid in the 90 days before as_of.", MONEY),
        Feature("monetary_365d", FLOAT, "Amount paid in the 365 days before as_of.", MONEY),
        Feature("avg_transaction_value", FLOAT, "Mean paid amount over all history (null if none).", MONEY),
        Feature("recency_score", FLOAT, "Percentile (0-1) of recency across customers at as_of; 1 = most recent.", SHARE),
        Feature("frequency_score", FLOAT, "Percentile (0-1) of 365-day frequency across customers at as_of.", SHARE),
        Feature("monetary_score", FLOAT, "Percentile (0-1) of 365-day amount across customers at as_of.", SHARE),
        Feature("frequency_total", FLOAT, "Paid transactions over all history before as_of.", COUNT),
        Feature("first_purchase_days", FLOAT, "Days since the first paid transaction (null if none).", DAYS),
        Feature("purchase_days_total", FLOAT, "Distinct days (UTC) with a paid transaction before as_of: with "
                "recency_days and first_purchase_days, the buy-till-you-die models' summary of a history.",
            COUNT,
        ),
        Feature("mean_gap_days", FLOAT, "Mean days between consecutive paid transactions (null with fewer than 2).", DAYS),
        Feature("gap_std_days", FLOAT, "Standard deviation of those gaps: purchase regularity (null with fewer than 3).", DAYS),
        Feature("last_gap_days", FLOAT, "Days between the last two paid transactions (null with fewer than 2).", DAYS),
        Feature("max_gap_180d", FLOAT, "Longest gap ending in the last 180 days (a missed bill shows here; null if none).", DAYS),
        Feature("recency_over_mean_gap", FLOAT, "Days since the last purchase over the customer's own mean gap: "
                "above 1 means later than usual (null without a gap).",
            NON_NEGATIVE,
        ),
        Feature("last_amount_ratio", FLOAT, "Last paid amount over the customer's mean paid amount (null if none).", NON_NEGATIVE),
    ),
    sql=f"""
WITH {SPINE},
t AS (
    SELECT s.customer_id, s.as_of, e.amount, {_days_between('s.as_of', 'e.event_time')} AS age_days
    FROM spine s JOIN transactions e ON e.customer_id = s.customer_id
     AND e.event_time < s.as_of AND e.status = 'paid'
),
gaps AS (
    -- k = 1 is the latest purchase; gap = days from the purchase before it.
    SELECT customer_id, as_of, amount, age_days,
           lead(age_days) OVER (PARTITION BY customer_id, as_of ORDER BY age_days, amount DESC) - age_days AS gap,
           row_number() OVER (PARTITION BY customer_id, as_of ORDER BY age_days, amount DESC) AS k
    FROM t
),
agg AS (
    SELECT customer_id, as_of,
           min(age_days) AS recency_days,
           sum(CASE WHEN age_days <= 90 THEN 1 ELSE 0 END) AS frequency_90d,
           sum(CASE WHEN age_days <= 365 THEN 1 ELSE 0 END) AS frequency_365d,
           {exact_sum('CASE WHEN age_days <= 90 THEN amount ELSE 0 END')} AS monetary_90d,
           {exact_sum('CASE WHEN age_days <= 365 THEN amount ELSE 0 END')} AS monetary_365d,
           {exact_mean('amount')} AS avg_transaction_value,
           count(*) AS frequency_total,
           -- as_of is a day's start, so ceil(age) is the number of days back to the purchase's day.
           count(DISTINCT ceil(age_days)) AS purchase_days_total,
           max(age_days) AS first_purchase_days,
           count(gap) AS gaps,
           -- Exact sums of the gaps and of their squares, for the mean and the sample standard
           -- deviation sqrt((n sum(g^2) - sum(g)^2) / (n (n - 1))). Days with 9 places: the
           -- gaps' sum is at most the history's span (under 216,000 days: pandas' times run
           -- from 1677 to 2262) and the squares' sum at most the sum's square (under 5 x 10^10,
           -- within the 11 whole digits of DECIMAL(29, 18)), so every step fits 38 digits in
           -- DuckDB and in Spark.
           CAST(sum(CAST(gap AS DECIMAL(16, 9))) AS DECIMAL(16, 9)) AS gap_sum,
           CAST(sum(CAST(gap AS DECIMAL(16, 9)) * CAST(gap AS DECIMAL(16, 9))) AS DECIMAL(29, 18)) AS gap_square_sum,
           max(CASE WHEN k = 1 THEN gap END) AS last_gap_days,
           max(CASE WHEN age_days <= 180 THEN gap END) AS max_gap_180d,
           max(CASE WHEN k = 1 THEN amount END) AS last_amount
    FROM gaps GROUP BY customer_id, as_of
),
base AS (
    SELECT s.customer_id, s.as_of, a.recency_days,
           coalesce(a.frequency_90d, 0) AS frequency_90d, coalesce(a.frequency_365d, 0) AS frequency_365d,
           coalesce(a.monetary_90d, 0) AS monetary_90d, coalesce(a.monetary_365d, 0) AS monetary_365d,
           a.avg_transaction_value, coalesce(a.frequency_total, 0) AS frequency_total,
           coalesce(a.purchase_days_total, 0) AS purchase_days_total, a.first_purchase_days,
           CAST(a.gap_sum AS DOUBLE) / nullif(a.gaps, 0) AS mean_gap_days,
           CASE WHEN a.gaps >= 2 THEN sqrt(CAST(CAST(a.gaps AS DECIMAL(8, 0)) * a.gap_square_sum
                                                - a.gap_sum * a.gap_sum AS DOUBLE)
                                           / (a.gaps * (a.gaps - 1))) END AS gap_std_days,
           a.last_gap_days, a.max_gap_180d, a.last_amount
    FROM spine s LEFT JOIN agg a ON a.customer_id = s.customer_id AND a.as_of = s.as_of
)
SELECT customer_id, as_of AS event_timestamp,
       recency_days, CAST(frequency_90d AS DOUBLE) AS frequency_90d, CAST(frequency_365d AS DOUBLE) AS frequency_365d,
       CAST(monetary_90d AS DOUBLE) AS monetary_90d, CAST(monetary_365d AS DOUBLE) AS monetary_365d,
       avg_transaction_value,
       percent_rank() OVER (PARTITION BY as_of ORDER BY coalesce(recency_days, 1e9) DESC) AS recency_score,
       percent_rank() OVER (PARTITION BY as_of ORDER BY frequency_365d) AS frequency_score,
       percent_rank() OVER (PARTITION BY as_of ORDER BY monetary_365d) AS monetary_score,
       CAST(frequency_total AS DOUBLE) AS frequency_total, first_purchase_days,
       CAST(purchase_days_total AS DOUBLE) AS purchase_days_total,
       mean_gap_days, gap_std_days, last_gap_days, max_gap_180d,
       recency_days / nullif(mean_gap_days, 0) AS recency_over_mean_gap,
       last_amount / nullif(avg_transaction_value, 0) AS last_amount_ratio
FROM base
""",
)


# Weekly sessions over the last 12 weeks (x = 0 oldest .. 11 newest, empty weeks y = 0):
# slope = (12 sum(x y) - sum(x) sum(y)) / (12 sum(x^2) - sum(x)^2), sum(x) = 66, sum(x^2) = 506.
ENGAGEMENT = FeatureGroup(
    name="engagement",
    description="Product use in rolling windows, its trend, and recency of use.",
    requires=(Table.CUSTOMERS, Table.USAGE),
    features=(
        Feature("sessions_7d", FLOAT, "Sessions in the 7 days before as_of.", COUNT),
        Feature("sessions_30d", FLOAT, "Sessions in the 30 days before as_of.", COUNT),
        Feature("sessions_90d", FLOAT, "Sessions in the 90 days before as_of.", COUNT),
        Feature("active_days_7d", FLOAT, "Days with any session in the last 7.", days_within(7)),
        Feature("active_days_30d", FLOAT, "Days with any session in the last 30.", days_within(30)),
        Feature("active_days_90d", FLOAT, "Days with any session in the last 90.", days_within(90)),
        Feature("minutes_30d", FLOAT, "Active minutes in the last 30 days.", NON_NEGATIVE),
        Feature("feature_breadth_30d", FLOAT, "Most product features used on one day in the last 30 days.", NON_NEGATIVE),
        Feature("sessions_trend_12w", FLOAT, "Least-squares slope of weekly sessions over the last 12 weeks (sessions/week per week)."),
        Feature("recent_past_ratio", FLOAT, "Sessions in the last 30 days over the monthly mean of days 31-90 (null if none then).", NON_NEGATIVE),
        Feature("days_since_last_activity", FLOAT, "Days since the end of the last day with a session (null if never).", DAYS),
        Feature(
            "sessions_decayed_30d", FLOAT,
            "Sessions in the last 90 days, each day's weighted by exp(-age / 30 days): recent use counts most.",
            NON_NEGATIVE,
        ),
        Feature("features_per_active_day_30d", FLOAT, "Mean product features used per day with use, last 30 days (null if none).", NON_NEGATIVE),
        Feature("features_per_active_day_90d", FLOAT, "Mean product features used per day with use, last 90 days (null if none).", NON_NEGATIVE),
        Feature("minutes_per_session_90d", FLOAT, "Active minutes per session over the last 90 days (null if no session).", NON_NEGATIVE),
    ),
    sql=f"""
WITH {SPINE},
u AS (
    SELECT s.customer_id, s.as_of, e.sessions, e.features_used, e.active_minutes,
           {_days_between('s.as_of', 'e.event_time')} AS age_days
    FROM spine s JOIN usage e ON e.customer_id = s.customer_id
     AND e.event_time <= s.as_of - INTERVAL 1 DAY
     AND e.event_time >= s.as_of - INTERVAL 90 DAY
),
w AS (
    SELECT customer_id, as_of,
           sum(CASE WHEN age_days <= 7 THEN sessions ELSE 0 END) AS sessions_7d,
           sum(CASE WHEN age_days <= 30 THEN sessions ELSE 0 END) AS sessions_30d,
           sum(sessions) AS sessions_90d,
           sum(CASE WHEN age_days <= 7 THEN 1 ELSE 0 END) AS active_days_7d,
           sum(CASE WHEN age_days <= 30 THEN 1 ELSE 0 END) AS active_days_30d,
           count(*) AS active_days_90d,
           {exact_sum('CASE WHEN age_days <= 30 THEN active_minutes ELSE 0 END')} AS minutes_30d,
           max(CASE WHEN age_days <= 30 THEN features_used ELSE 0 END) AS feature_breadth_30d,
           sum(CASE WHEN age_days <= 84 THEN (11 - floor((age_days - 1) / 7)) * sessions ELSE 0 END) AS sxy,
           sum(CASE WHEN age_days <= 84 THEN sessions ELSE 0 END) AS sy,
           sum(CASE WHEN age_days > 30 THEN sessions ELSE 0 END) AS sessions_31_90,
           {exact_sum('sessions * exp(-age_days / 30.0)')} AS sessions_decayed_30d,
           avg(CASE WHEN age_days <= 30 THEN features_used END) AS features_per_active_day_30d,
           avg(features_used) AS features_per_active_day_90d,
           {exact_sum('active_minutes')} / nullif(sum(sessions), 0) AS minutes_per_session_90d
    FROM u GROUP BY customer_id, as_of
),
marks AS (
    SELECT customer_id, event_time AS ts, 1 AS is_event FROM usage
    UNION ALL
    SELECT customer_id, as_of - INTERVAL 1 DAY AS ts, 0 AS is_event FROM spine
),
last_use AS (
    SELECT customer_id, ts + INTERVAL 1 DAY AS as_of, last_day FROM (
        SELECT customer_id, ts, is_event,
               max(CASE WHEN is_event = 1 THEN ts END) OVER (
                   PARTITION BY customer_id ORDER BY ts, is_event DESC
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS last_day
        FROM marks
    ) t WHERE is_event = 0
)
SELECT s.customer_id, s.as_of AS event_timestamp,
       CAST(coalesce(w.sessions_7d, 0) AS DOUBLE) AS sessions_7d,
       CAST(coalesce(w.sessions_30d, 0) AS DOUBLE) AS sessions_30d,
       CAST(coalesce(w.sessions_90d, 0) AS DOUBLE) AS sessions_90d,
       CAST(coalesce(w.active_days_7d, 0) AS DOUBLE) AS active_days_7d,
       CAST(coalesce(w.active_days_30d, 0) AS DOUBLE) AS active_days_30d,
       CAST(coalesce(w.active_days_90d, 0) AS DOUBLE) AS active_days_90d,
       CAST(coalesce(w.minutes_30d, 0) AS DOUBLE) AS minutes_30d,
       CAST(coalesce(w.feature_breadth_30d, 0) AS DOUBLE) AS feature_breadth_30d,
       CAST((12 * coalesce(w.sxy, 0) - 66 * coalesce(w.sy, 0)) / 1716.0 AS DOUBLE) AS sessions_trend_12w,
       CASE WHEN coalesce(w.sessions_31_90, 0) > 0
            THEN CAST(w.sessions_30d AS DOUBLE) / (w.sessions_31_90 / 2.0) END AS recent_past_ratio,
       {_days_between('s.as_of', "l.last_day + INTERVAL 1 DAY")} AS days_since_last_activity,
       CAST(coalesce(w.sessions_decayed_30d, 0) AS DOUBLE) AS sessions_decayed_30d,
       CAST(w.features_per_active_day_30d AS DOUBLE) AS features_per_active_day_30d,
       CAST(w.features_per_active_day_90d AS DOUBLE) AS features_per_active_day_90d,
       CAST(w.minutes_per_session_90d AS DOUBLE) AS minutes_per_session_90d
FROM spine s
LEFT JOIN w ON w.customer_id = s.customer_id AND w.as_of = s.as_of
LEFT JOIN last_use l ON l.customer_id = s.customer_id AND l.as_of = s.as_of
""",
)


SUPPORT = FeatureGroup(
    name="support",
    description="Support tickets: volume, what is still open, resolution time and satisfaction.",
    requires=(Table.CUSTOMERS, Table.TICKETS),
    features=(
        Feature("tickets_30d", FLOAT, "Tickets opened in the 30 days before as_of.", COUNT),
        Feature("tickets_90d", FLOAT, "Tickets opened in the 90 days before as_of.", COUNT),
        Feature("open_tickets", FLOAT, "Tickets opened before as_of and not resolved by then.", COUNT),
        Feature("open_high_severity", FLOAT, "Of those, severity high or urgent.", COUNT),
        Feature("high_severity_90d", FLOAT, "High or urgent tickets opened in the last 90 days.", COUNT),
        Feature("mean_resolution_days_90d", FLOAT, "Mean days to resolve tickets resolved in the last 90 days (null if none).", DAYS),
        Feature("last_csat", FLOAT, "CSAT (1-5) of the latest rated ticket resolved before as_of (null if none).", CSAT),
        Feature("days_since_last_ticket", FLOAT, "Days since the latest ticket was opened (null if never).", DAYS),
        Feature("tickets_decayed_60d", FLOAT, "Tickets opened before as_of, each weighted by exp(-age / 60 days).", NON_NEGATIVE),
        Feature("tickets_per_year", FLOAT, "Tickets opened before as_of per 365 days of tenure (counted as at least 30 days).", NON_NEGATIVE),
        Feature("mean_csat_365d", FLOAT, "Mean CSAT (1-5) of tickets resolved in the 365 days before as_of (null if none rated).", CSAT),
    ),
    sql=f"""
WITH {SPINE},
t AS (
    SELECT s.customer_id, s.as_of, e.severity, e.event_time, e.csat,
           CASE WHEN e.resolved_time < s.as_of THEN e.resolved_time END AS resolved_time,
           {_days_between('s.as_of', 'e.event_time')} AS age_days
    FROM spine s JOIN tickets e ON e.customer_id = s.customer_id AND e.event_time < s.as_of
),
agg AS (
    SELECT customer_id, as_of,
           sum(CASE WHEN age_days <= 30 THEN 1 ELSE 0 END) AS tickets_30d,
           sum(CASE WHEN age_days <= 90 THEN 1 ELSE 0 END) AS tickets_90d,
           sum(CASE WHEN resolved_time IS NULL THEN 1 ELSE 0 END) AS open_tickets,
           sum(CASE WHEN resolved_time IS NULL AND severity IN ('high', 'urgent') THEN 1 ELSE 0 END) AS open_high_severity,
           sum(CASE WHEN age_days <= 90 AND severity IN ('high', 'urgent') THEN 1 ELSE 0 END) AS high_severity_90d,
           {exact_mean(f"CASE WHEN resolved_time >= as_of - INTERVAL 90 DAY THEN {_days_between('resolved_time', 'event_time')} END")} AS mean_resolution_days_90d,
           min(age_days) AS days_since_last_ticket,
           {exact_sum('exp(-age_days / 60.0)')} AS tickets_decayed_60d,
           count(*) AS tickets_ever,
           {exact_mean('CASE WHEN resolved_time >= as_of - INTERVAL 365 DAY THEN csat END')} AS mean_csat_365d
    FROM t GROUP BY customer_id, as_of
),
csat AS (
    SELECT customer_id, as_of, csat AS last_csat FROM (
        SELECT customer_id, as_of, csat,
               row_number() OVER (PARTITION BY customer_id, as_of ORDER BY resolved_time DESC, csat) AS rn
        FROM t WHERE resolved_time IS NOT NULL AND csat IS NOT NULL
    ) r WHERE rn = 1
)
SELECT s.customer_id, s.as_of AS event_timestamp,
       CAST(coalesce(a.tickets_30d, 0) AS DOUBLE) AS tickets_30d,
       CAST(coalesce(a.tickets_90d, 0) AS DOUBLE) AS tickets_90d,
       CAST(coalesce(a.open_tickets, 0) AS DOUBLE) AS open_tickets,
       CAST(coalesce(a.open_high_severity, 0) AS DOUBLE) AS open_high_severity,
       CAST(coalesce(a.high_severity_90d, 0) AS DOUBLE) AS high_severity_90d,
       a.mean_resolution_days_90d,
       CAST(c.last_csat AS DOUBLE) AS last_csat,
       a.days_since_last_ticket,
       CAST(coalesce(a.tickets_decayed_60d, 0) AS DOUBLE) AS tickets_decayed_60d,
       CAST(coalesce(a.tickets_ever, 0) * 365.0 / greatest({_days_between('s.as_of', 's.signup_time')}, 30.0) AS DOUBLE) AS tickets_per_year,
       CAST(a.mean_csat_365d AS DOUBLE) AS mean_csat_365d
FROM spine s
LEFT JOIN agg a ON a.customer_id = s.customer_id AND a.as_of = s.as_of
LEFT JOIN csat c ON c.customer_id = s.customer_id AND c.as_of = s.as_of
""",
)


BILLING = FeatureGroup(
    name="billing",
    description="Payment failures, discounts and plan changes.",
    requires=(Table.CUSTOMERS, Table.TRANSACTIONS, Table.SUBSCRIPTIONS),
    features=(
        Feature("failed_payments_30d", FLOAT, "Failed payment attempts in the 30 days before as_of.", COUNT),
        Feature("failed_payments_90d", FLOAT, "Failed payment attempts in the 90 days before as_of.", COUNT),
        Feature("days_since_failed_payment", FLOAT, "Days since the latest failed payment (null if never).", DAYS),
        Feature("discount_90d", FLOAT, "Discounts granted on bills in the last 90 days.", MONEY),
        Feature("upgrades_365d", FLOAT, "Upgrades in the 365 days before as_of.", COUNT),
        Feature("downgrades_365d", FLOAT, "Downgrades in the 365 days before as_of.", COUNT),
        Feature("days_since_plan_change", FLOAT, "Days since the latest upgrade or downgrade (null if never).", DAYS),
        Feature("failed_payment_share", FLOAT, "Share of all payment attempts before as_of that failed (null if none).", SHARE),
    ),
    sql=f"""
WITH {SPINE},
pay AS (
    SELECT s.customer_id, s.as_of,
           sum(CASE WHEN e.status = 'failed' AND e.event_time >= s.as_of - INTERVAL 30 DAY THEN 1 ELSE 0 END) AS f30,
           sum(CASE WHEN e.status = 'failed' AND e.event_time >= s.as_of - INTERVAL 90 DAY THEN 1 ELSE 0 END) AS f90,
           min(CASE WHEN e.status = 'failed' THEN {_days_between('s.as_of', 'e.event_time')} END) AS since_failed,
           {exact_sum('CASE WHEN e.event_time >= s.as_of - INTERVAL 90 DAY THEN e.discount ELSE 0 END')} AS discount_90d,
           avg(CASE WHEN e.status = 'failed' THEN 1.0 ELSE 0.0 END) AS failed_share
    FROM spine s JOIN transactions e ON e.customer_id = s.customer_id AND e.event_time < s.as_of
    GROUP BY s.customer_id, s.as_of
),
plan AS (
    SELECT s.customer_id, s.as_of,
           sum(CASE WHEN e.event = 'upgrade' AND e.event_time >= s.as_of - INTERVAL 365 DAY THEN 1 ELSE 0 END) AS up365,
           sum(CASE WHEN e.event = 'downgrade' AND e.event_time >= s.as_of - INTERVAL 365 DAY THEN 1 ELSE 0 END) AS down365,
           min(CASE WHEN e.event IN ('upgrade', 'downgrade') THEN {_days_between('s.as_of', 'e.event_time')} END) AS since_change
    FROM spine s JOIN subscriptions e ON e.customer_id = s.customer_id AND e.event_time < s.as_of
    GROUP BY s.customer_id, s.as_of
)
SELECT s.customer_id, s.as_of AS event_timestamp,
       CAST(coalesce(p.f30, 0) AS DOUBLE) AS failed_payments_30d,
       CAST(coalesce(p.f90, 0) AS DOUBLE) AS failed_payments_90d,
       p.since_failed AS days_since_failed_payment,
       CAST(coalesce(p.discount_90d, 0) AS DOUBLE) AS discount_90d,
       CAST(coalesce(c.up365, 0) AS DOUBLE) AS upgrades_365d,
       CAST(coalesce(c.down365, 0) AS DOUBLE) AS downgrades_365d,
       c.since_change AS days_since_plan_change,
       p.failed_share AS failed_payment_share
FROM spine s
LEFT JOIN pay p ON p.customer_id = s.customer_id AND p.as_of = s.as_of
LEFT JOIN plan c ON c.customer_id = s.customer_id AND c.as_of = s.as_of
""",
)


VOICE = FeatureGroup(
    name="voice",
    description="Voice of the customer: NPS answers.",
    requires=(Table.CUSTOMERS, Table.NPS),
    features=(
        Feature("last_nps", FLOAT, "Latest NPS score (0-10) before as_of (null if never answered).", NPS),
        Feature("nps_trend", FLOAT, "Latest NPS score minus the one before it (null with fewer than two).", NPS_CHANGE),
        Feature("nps_responses_365d", FLOAT, "NPS answers in the 365 days before as_of.", COUNT),
        Feature("days_since_last_nps", FLOAT, "Days since the latest NPS answer (null if never).", DAYS),
        Feature("mean_nps", FLOAT, "Mean of all NPS scores before as_of (null if never answered).", NPS),
    ),
    sql=f"""
WITH {SPINE},
n AS (
    SELECT s.customer_id, s.as_of, e.score, {_days_between('s.as_of', 'e.event_time')} AS age_days,
           row_number() OVER (PARTITION BY s.customer_id, s.as_of ORDER BY e.event_time DESC) AS rn
    FROM spine s JOIN nps e ON e.customer_id = s.customer_id AND e.event_time < s.as_of
),
agg AS (
    SELECT customer_id, as_of,
           max(CASE WHEN rn = 1 THEN score END) AS last_nps,
           max(CASE WHEN rn = 2 THEN score END) AS previous_nps,
           sum(CASE WHEN age_days <= 365 THEN 1 ELSE 0 END) AS responses_365d,
           min(age_days) AS days_since_last_nps,
           avg(score) AS mean_nps
    FROM n GROUP BY customer_id, as_of
)
SELECT s.customer_id, s.as_of AS event_timestamp,
       CAST(a.last_nps AS DOUBLE) AS last_nps,
       CAST(a.last_nps - a.previous_nps AS DOUBLE) AS nps_trend,
       CAST(coalesce(a.responses_365d, 0) AS DOUBLE) AS nps_responses_365d,
       a.days_since_last_nps,
       CAST(a.mean_nps AS DOUBLE) AS mean_nps
FROM spine s LEFT JOIN agg a ON a.customer_id = s.customer_id AND a.as_of = s.as_of
""",
)


MARKETING = FeatureGroup(
    name="marketing",
    description="Proactive contacts received (fatigue) and whether the customer responded.",
    requires=(Table.CUSTOMERS, Table.ACTIONS, Table.USAGE),
    features=(
        Feature("contacts_30d", FLOAT, "Proactive contacts (not 'none') in the 30 days before as_of.", COUNT),
        Feature("contacts_90d", FLOAT, "Proactive contacts in the 90 days before as_of.", COUNT),
        Feature("days_since_last_contact", FLOAT, "Days since the latest contact (null if never).", DAYS),
        Feature("offers_90d", FLOAT, "Retention or upgrade offers in the last 90 days.", COUNT),
        Feature(
            "responses_90d", FLOAT,
            "Contacts in the last 90 days followed by product use within 7 days (and before as_of).",
            COUNT,
        ),
        Feature("last_action", STRING, "The latest proactive action before as_of, e.g. retention_offer (null if never)."),
    ),
    sql=f"""
WITH {SPINE},
c AS (
    SELECT s.customer_id, s.as_of, e.event_time, e.action, {_days_between('s.as_of', 'e.event_time')} AS age_days
    FROM spine s JOIN actions e ON e.customer_id = s.customer_id AND e.event_time < s.as_of AND e.action <> 'none'
),
responded AS (
    SELECT DISTINCT c.customer_id, c.as_of, c.event_time
    FROM c JOIN usage u ON u.customer_id = c.customer_id
     AND u.event_time >= c.event_time AND u.event_time < c.event_time + INTERVAL 7 DAY
     AND u.event_time <= c.as_of - INTERVAL 1 DAY
    WHERE c.age_days <= 90
),
agg AS (
    SELECT c.customer_id, c.as_of,
           sum(CASE WHEN c.age_days <= 30 THEN 1 ELSE 0 END) AS contacts_30d,
           sum(CASE WHEN c.age_days <= 90 THEN 1 ELSE 0 END) AS contacts_90d,
           min(c.age_days) AS days_since_last_contact,
           sum(CASE WHEN c.age_days <= 90 AND c.action IN ('retention_offer', 'upgrade_offer') THEN 1 ELSE 0 END) AS offers_90d,
           sum(CASE WHEN r.event_time IS NOT NULL THEN 1 ELSE 0 END) AS responses_90d
    FROM c LEFT JOIN responded r ON r.customer_id = c.customer_id AND r.as_of = c.as_of AND r.event_time = c.event_time
    GROUP BY c.customer_id, c.as_of
),
last_contact AS (
    SELECT customer_id, as_of, action FROM (
        SELECT customer_id, as_of, action,
               row_number() OVER (PARTITION BY customer_id, as_of ORDER BY event_time DESC, action) AS rn
        FROM c
    ) r WHERE rn = 1
)
SELECT s.customer_id, s.as_of AS event_timestamp,
       CAST(coalesce(a.contacts_30d, 0) AS DOUBLE) AS contacts_30d,
       CAST(coalesce(a.contacts_90d, 0) AS DOUBLE) AS contacts_90d,
       a.days_since_last_contact,
       CAST(coalesce(a.offers_90d, 0) AS DOUBLE) AS offers_90d,
       CAST(coalesce(a.responses_90d, 0) AS DOUBLE) AS responses_90d,
       l.action AS last_action
FROM spine s
LEFT JOIN agg a ON a.customer_id = s.customer_id AND a.as_of = s.as_of
LEFT JOIN last_contact l ON l.customer_id = s.customer_id AND l.as_of = s.as_of
""",
)


ADVOCACY = FeatureGroup(
    name="advocacy",
    description="Referrals made.",
    requires=(Table.CUSTOMERS, Table.REFERRALS),
    features=(
        Feature("referrals_365d", FLOAT, "Referrals made in the 365 days before as_of.", COUNT),
        Feature("converted_referrals_365d", FLOAT, "Of those, referrals that became customers.", COUNT),
        Feature("days_since_last_referral", FLOAT, "Days since the latest referral (null if never).", DAYS),
    ),
    sql=f"""
WITH {SPINE},
agg AS (
    SELECT s.customer_id, s.as_of,
           sum(CASE WHEN e.event_time >= s.as_of - INTERVAL 365 DAY THEN 1 ELSE 0 END) AS r365,
           sum(CASE WHEN e.event_time >= s.as_of - INTERVAL 365 DAY AND e.converted THEN 1 ELSE 0 END) AS c365,
           min({_days_between('s.as_of', 'e.event_time')}) AS since
    FROM spine s JOIN referrals e ON e.customer_id = s.customer_id AND e.event_time < s.as_of
    GROUP BY s.customer_id, s.as_of
)
SELECT s.customer_id, s.as_of AS event_timestamp,
       CAST(coalesce(a.r365, 0) AS DOUBLE) AS referrals_365d,
       CAST(coalesce(a.c365, 0) AS DOUBLE) AS converted_referrals_365d,
       a.since AS days_since_last_referral
FROM spine s LEFT JOIN agg a ON a.customer_id = s.customer_id AND a.as_of = s.as_of
""",
)


GROUPS: tuple[FeatureGroup, ...] = (PROFILE, RFM, ENGAGEMENT, SUPPORT, BILLING, VOICE, MARKETING, ADVOCACY)

# Pairs of features where the first can never exceed the second (a shorter window inside a
# longer one, a part of a whole): a customer's features, as built or as sent, agree with them.
AT_MOST: tuple[tuple[str, str], ...] = (
    ("sessions_7d", "sessions_30d"), ("sessions_30d", "sessions_90d"),
    ("active_days_7d", "active_days_30d"), ("active_days_30d", "active_days_90d"),
    ("frequency_90d", "frequency_365d"), ("frequency_365d", "frequency_total"),
    ("purchase_days_total", "frequency_total"), ("monetary_90d", "monetary_365d"),
    ("tickets_30d", "tickets_90d"), ("open_high_severity", "open_tickets"),
    ("failed_payments_30d", "failed_payments_90d"), ("contacts_30d", "contacts_90d"),
    ("converted_referrals_365d", "referrals_365d"),
)


# The business's own columns (`clm ingest customers|attribute_history --attributes`): a group
# of their own, as they are. The customers table's are static (it says what holds now); the
# attribute history's are point in time (the latest row before the moment).
ATTRIBUTES = "attributes"
ATTRIBUTE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"  # a column name SQL, Feast and MLflow take as it is
STATIC_FEATURES = frozenset(f.name for g in GROUPS for f in g.features)
# Names the rows an attribute lands in already use (keys, labels, a decision's, the scores'):
# compared case-insensitively with an attribute's, as DuckDB and Spark resolve names.
LATEST_RANK = "clm_latest_rank"  # the attribute history's window column (a name no attribute may take)
TAKEN_NAMES = frozenset({"customer_id", "event_timestamp", "as_of", "churn", "upsell", "clv", "stage", LATEST_RANK,
                         "current_stage", "action", "propensity", "churn_probability", "upsell_probability",
                         "predicted_stage", "stage_probabilities"}) | STATIC_FEATURES


def attributes_group(static: dict[str, str], changing: dict[str, str] | None = None) -> FeatureGroup:
    """The group of the business's own attributes (name -> FLOAT or STRING): static, the
    customers table's; changing, the attribute history's, each customer's value in its
    latest row before the moment (point in time), missing before its first."""
    changing = changing or {}
    columns = [f'c."{name}" AS "{name}"' for name in static] + [f'l."{name}" AS "{name}"' for name in changing]
    latest = ""
    if changing:
        picked = ", ".join(f'h."{name}" AS "{name}"' for name in changing)
        latest = f""",
latest AS (
    SELECT * FROM (
        SELECT s.customer_id, s.as_of, {picked},
               row_number() OVER (PARTITION BY s.customer_id, s.as_of ORDER BY h.event_time DESC) AS {LATEST_RANK}
        FROM spine s JOIN {Table.ATTRIBUTE_HISTORY.value} h ON h.customer_id = s.customer_id AND h.event_time < s.as_of
    ) t WHERE {LATEST_RANK} = 1
)"""
    joined = "\nLEFT JOIN latest l ON l.customer_id = s.customer_id AND l.as_of = s.as_of" if changing else ""
    return FeatureGroup(
        name=ATTRIBUTES,
        description="The business's own attributes of the customer: the customers table's (static) and the "
                    "attribute history's (as of the moment).",
        requires=(Table.CUSTOMERS, Table.ATTRIBUTE_HISTORY) if changing else (Table.CUSTOMERS,),
        features=tuple(
            [Feature(name, kind, f"The business's attribute {name} (as of the customers table; static).")
             for name, kind in static.items()]
            + [Feature(name, kind, f"The business's attribute {name}: its latest value in the attribute history "
                                   "before as_of (null before the customer's first row).")
               for name, kind in changing.items()]),
        sql=f"""
WITH {SPINE}{latest}
SELECT s.customer_id, s.as_of AS event_timestamp, {", ".join(columns)}
FROM spine s JOIN customers c ON c.customer_id = s.customer_id{joined}
""",
    )


def available_groups(tables: set[Table], attributes: dict[str, str] | None = None,
                     changing: dict[str, str] | None = None) -> list[FeatureGroup]:
    """The groups a workspace holding `tables` can build (profile needs only customers), and
    the business's attributes (name -> kind; static, and changing: the attribute history's)
    as a group of their own when there are any."""
    groups = [g for g in GROUPS if set(g.requires) <= tables]
    changing = changing if Table.ATTRIBUTE_HISTORY in tables else {}
    if Table.CUSTOMERS in tables and (attributes or changing):
        groups.append(attributes_group(attributes or {}, changing))
    return groups


def arrow_schema(group: FeatureGroup, timestamp_type: pa.DataType) -> pa.Schema:
    """The declared types: what Feast's views say, whatever SQL arithmetic produced."""
    return pa.schema(
        [pa.field("customer_id", pa.string()), pa.field("event_timestamp", timestamp_type)]
        + [pa.field(f.name, pa.float64() if f.kind == FLOAT else pa.string()) for f in group.features]
    )
