"""The daily simulation loop: customers, their latent states, the events they cause.

Customers are sorted by signup, so on day d the signed-up customers are a prefix of every
state array; churned ones stay in it with `active` False. Each day, in this order:
  1. new signups start (state drawn from the stationary laws, first bill);
  2. on a month's first day, the logged policy decides for eligible customers and the
     chosen actions change their latent state (`simulator.effects`);
  3. support tickets arrive, Poisson(base + per_risk * risk);
  4. risk, disengagement and appetite move one ARG(1) step;
  5. churn with the day's hazard; then downgrade; then upgrade;
  6. open tickets resolve; usage, NPS, referrals, add-ons are observed; bills are charged;
  7. on a month's last day, the ground truth is computed from the state at the end of day.
The ground-truth formulas in `simulator.truth` assume exactly this order.

Over 500 lines on purpose: the day's steps share the state arrays and their order is the
truth's assumption; one class keeps the whole day readable top to bottom.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, overload

import numpy as np
import pandas as pd

from clm.domain import (
    ACTION_CATALOGUE,
    ALL_ACTIONS,
    CHANNEL_CONSENT_COLUMN,
    TICKET_SEVERITIES,
    Action,
)
from simulator import latent
from simulator.effects import LatentState, apply_action
from simulator.hazards import deterministic_churn_hazard
from simulator.params import SimulationParams
from simulator.policy import BusinessPolicyInputs, action_probabilities, draw_actions
from simulator.stages import true_stage
from simulator.truth import SnapshotState, SnapshotTruth, TruthModel

SECONDS_PER_DAY = 86_400
NEVER = -(10**6)  # "day" of an event that never happened
WEEKEND_USE = 0.35
MAX_BILLS_AHEAD = 4


@dataclass(frozen=True)
class SimulationConfig:
    n_customers: int
    seed: int
    start: pd.Timestamp  # first simulated day (UTC midnight)
    end: pd.Timestamp  # last simulated day, inclusive
    params: SimulationParams = field(default_factory=SimulationParams)

    @property
    def n_days(self) -> int:
        return int((self.end - self.start).days) + 1


class Columns:
    """Column chunks of one output table, appended day by day."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[np.ndarray]] = {}

    def add(self, **cols: np.ndarray) -> None:
        for name, values in cols.items():
            self.chunks.setdefault(name, []).append(np.asarray(values))

    def arrays(self) -> dict[str, np.ndarray]:
        """Concatenate the chunks, releasing them as it goes."""
        out = {}
        for name in list(self.chunks):
            out[name] = np.concatenate(self.chunks.pop(name))
        return out


_T = TypeVar("_T")


class TableColumns(dict[str, dict[str, np.ndarray]]):
    """Tables by name; each table's chunks are concatenated only when first read."""

    def __init__(self, tables: dict[str, Columns]):
        super().__init__()
        self._pending = {name: cols for name, cols in tables.items() if cols.chunks}

    def __missing__(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._pending:
            raise KeyError(name)
        self[name] = self._pending.pop(name).arrays()
        return self[name]

    @overload
    def get(self, name: str, default: None = None) -> dict[str, np.ndarray] | None: ...
    @overload
    def get(self, name: str, default: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    @overload
    def get(self, name: str, default: _T) -> dict[str, np.ndarray] | _T: ...

    def get(self, name: str, default: object = None) -> object:
        try:
            return self[name]
        except KeyError:
            return default

    def release(self, name: str) -> None:
        self.pop(name, None)
        self._pending.pop(name, None)


@dataclass
class SimulationOutput:
    """Raw tables as column arrays; customer references are indices into `customer_ids`.

    Times are (day, second-of-day) pairs relative to config.start.
    """

    config: SimulationConfig
    customers: dict[str, np.ndarray]
    tables: TableColumns


def _calendar(config: SimulationConfig, extra_days: int) -> pd.DatetimeIndex:
    return pd.date_range(config.start, periods=config.n_days + extra_days, freq="D")


def _signup_days(rng: np.random.Generator, n: int, dates: pd.DatetimeIndex, p: SimulationParams) -> np.ndarray:
    n_days = len(dates)
    d = np.arange(n_days)
    density = (1.0 + p.signup_growth * d / n_days) * (
        1.0 + p.signup_season_amplitude * np.cos(2 * np.pi * (dates.dayofyear.to_numpy() - 10) / 365.25)
    )
    cdf = np.cumsum(density) / density.sum()
    n_launch = int(round(p.launch_share * n))
    launch = rng.integers(0, min(30, n_days), size=n_launch)
    later = np.searchsorted(cdf, rng.random(n - n_launch), side="right")
    return np.sort(np.concatenate([launch, np.minimum(later, n_days - 1)]))


def _make_customers(rng: np.random.Generator, config: SimulationConfig, dates: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    p, n = config.params, config.n_customers
    signup_day = _signup_days(rng, n, dates[: config.n_days], p)
    segment = rng.choice(len(p.segments), size=n, p=p.segment_probs)
    channel = rng.choice(len(p.channels), size=n, p=p.channel_probs)
    region = rng.choice(len(p.regions), size=n, p=p.region_probs)
    plan_cdf = np.cumsum(np.asarray(p.segment_plan_probs), axis=1)[segment]
    tier = (rng.random(n)[:, None] >= plan_cdf).sum(axis=1)
    # Later cohorts from paid social are worse: quality drifts with signup date.
    drift = 1.0 + 0.3 * (signup_day / max(config.n_days, 1)) * (np.asarray(p.channels)[channel] == "paid_social")
    risk_shape = (
        p.risk.mean_shape * np.asarray(p.channel_risk)[channel] * np.asarray(p.segment_risk)[segment] * drift
        * np.exp(rng.normal(0.0, p.shape_spread, n))
    )
    disengage_shape = (
        p.disengage.mean_shape * np.asarray(p.channel_disengage)[channel] * np.exp(rng.normal(0.0, p.shape_spread, n))
    )
    appetite_shape = (
        p.appetite.mean_shape * np.asarray(p.segment_appetite)[segment] * np.exp(rng.normal(0.0, p.shape_spread, n))
    )
    fail_prob = np.clip(np.asarray(p.region_failed_payment_prob)[region] * np.exp(rng.normal(0.0, 0.5, n)), 0.0, 0.5)
    signup_second = rng.integers(1, SECONDS_PER_DAY, size=n)
    return {
        "signup_day": signup_day,
        "signup_second": signup_second,
        "billing_dom": np.minimum(dates[signup_day].day.to_numpy(), 28),
        "segment": segment,
        "channel": channel,
        "region": region,
        "initial_tier": tier,
        "risk_shape": risk_shape,
        "disengage_shape": disengage_shape,
        "appetite_shape": appetite_shape,
        "failed_payment_prob": fail_prob,
        "consent_email": rng.random(n) < p.consent_email_prob,
        "consent_phone": rng.random(n) < p.consent_phone_prob,
    }


class Simulation:
    """State of the simulated business while the days run."""

    def __init__(self, config: SimulationConfig):
        self.config = config
        self.p = config.params
        self.rng = np.random.Generator(np.random.PCG64(config.seed))
        self.horizon = max(self.p.horizons)
        self.dates = _calendar(config, self.horizon + 1)
        self.doy = self.dates.dayofyear.to_numpy()
        self.dom = self.dates.day.to_numpy()
        self.c = _make_customers(self.rng, config, self.dates)
        self.truth_model = TruthModel.build(self.p, self.horizon)
        n = config.n_customers
        self.n_signed = np.searchsorted(self.c["signup_day"], np.arange(config.n_days), side="right")
        self.prices = self.p.plan_prices()
        # Latent state.
        self.x = np.zeros(n)
        self.g = np.zeros(n)
        self.y = np.zeros(n)
        # Observable/bookkeeping state.
        self.active = np.zeros(n, dtype=bool)
        self.tier = self.c["initial_tier"].copy()
        self.upgrade_block_until = np.full(n, NEVER)
        self.last_fail_day = np.full(n, NEVER)
        self.discount_bills_left = np.zeros(n, dtype=np.int64)
        self.referral_boost_until = np.full(n, NEVER)
        self.last_decision_day = np.full(n, NEVER)
        self.days_inactive = np.zeros(n, dtype=np.int64)
        self.decided = np.zeros(n, dtype=bool)  # decided to leave (params.exit_decision_rate)
        self.exit_rate = -np.expm1(-np.asarray(self.p.exit_decision_rate)[self.c["segment"]])  # daily probability
        self.active_days = np.zeros(n, dtype=np.int64)
        self.sessions_ewm = np.zeros(n)
        self.last_nps = np.full(n, -1)
        self.last_promoter_day = np.full(n, NEVER)
        self.last_referral_day = np.full(n, NEVER)
        self.open_counts = np.zeros((n, len(TICKET_SEVERITIES)), dtype=np.int64)
        # Open tickets: parallel arrays.
        self.open_ticket = np.zeros(0, dtype=np.int64)
        self.open_cust = np.zeros(0, dtype=np.int64)
        self.open_sev = np.zeros(0, dtype=np.int64)
        self.open_day = np.zeros(0, dtype=np.int64)
        self.open_second = np.zeros(0, dtype=np.int64)
        self.n_tickets = 0
        self.n_decisions = 0
        self.out = {name: Columns() for name in (
            "subscriptions", "transactions", "usage", "tickets", "ticket_resolutions", "nps",
            "referrals", "actions", "ground_truth", "ground_truth_effects",
        )}
        self.ticket_hazard = np.asarray(self.p.ticket_open_hazard)
        self.ticket_resolve = np.asarray(self.p.ticket_daily_resolve_prob)
        self.effect_actions = [Action(a) for a in ALL_ACTIONS if a != Action.NONE.value]

    # ----------------------------------------------------------------- helpers
    def _seconds(self, k: int) -> np.ndarray:
        return self.rng.integers(1, SECONDS_PER_DAY, size=k)

    def _latent_state(self, idx: np.ndarray, day: int) -> LatentState:
        return LatentState(
            risk=self.x[idx], disengage=self.g[idx], appetite=self.y[idx],
            tenure_days=day - self.c["signup_day"][idx], days_inactive=self.days_inactive[idx],
            segment=self.c["segment"][idx],
        )

    def _sub_event(self, idx: np.ndarray, day: int, seconds: np.ndarray, event: str) -> None:
        self.out["subscriptions"].add(
            cust=idx, day=np.full(idx.size, day), second=seconds, event=np.full(idx.size, event, dtype=object),
            tier=self.tier[idx].copy(), price=self.prices[self.tier[idx]],
        )

    def _bill(self, idx: np.ndarray, day: int, seconds: np.ndarray, failed: np.ndarray) -> None:
        discounted = self.discount_bills_left[idx] > 0
        full = self.prices[self.tier[idx]]
        discount = np.where(discounted, np.round(full * self.p.retention_discount, 2), 0.0)
        self.out["transactions"].add(
            cust=idx, day=np.full(idx.size, day), second=seconds,
            kind=np.full(idx.size, "subscription", dtype=object), amount=full - discount, discount=discount,
            status=np.where(failed, "failed", "paid").astype(object), tier=self.tier[idx].copy(),
        )

    # ------------------------------------------------------------- day steps
    def _start_customers(self, new: np.ndarray, day: int) -> None:
        c, p = self.c, self.p
        self.x[new] = latent.sample_stationary(self.rng, c["risk_shape"][new], p.risk)
        self.g[new] = latent.sample_stationary(self.rng, c["disengage_shape"][new], p.disengage)
        self.y[new] = latent.sample_stationary(self.rng, c["appetite_shape"][new], p.appetite)
        self.active[new] = True
        seconds = c["signup_second"][new]
        self._sub_event(new, day, seconds, "start")
        failed = self.rng.random(new.size) < c["failed_payment_prob"][new]
        self._bill(new, day, seconds, failed)
        self.last_fail_day[new[failed]] = day

    def _campaign(self, idx: np.ndarray, day: int) -> None:
        tenure = day - self.c["signup_day"][idx]
        eligible = idx[(tenure >= 14) & (day - self.last_decision_day[idx] >= self.p.decision_cooldown_days)]
        if eligible.size == 0:
            return
        c = self.c
        consent = {
            ch: (c[col][eligible] if col else np.ones(eligible.size, dtype=bool))
            for ch, col in CHANNEL_CONSENT_COLUMN.items()
        }
        inputs = BusinessPolicyInputs(
            open_tickets=self.open_counts[eligible].sum(axis=1),
            sessions_ewm=self.sessions_ewm[eligible],
            days_inactive=self.days_inactive[eligible],
            tenure_days=day - c["signup_day"][eligible],
            last_nps=self.last_nps[eligible],
            recent_failed_payment=(day - self.last_fail_day[eligible] <= 30).astype(float),
            enterprise_or_mid=(c["segment"][eligible] > 0).astype(float),
            top_tier=self.tier[eligible] == len(self.p.plans) - 1,
            consent=consent,
        )
        probs = action_probabilities(inputs, self.p)
        chosen, propensity = draw_actions(self.rng, probs)
        state = self._latent_state(eligible, day)
        for k, name in enumerate(ALL_ACTIONS):
            if name == Action.NONE.value:
                continue
            sel = chosen == k
            if not sel.any():
                continue
            sub = LatentState(**{f: v[sel] for f, v in vars(state).items()})
            x, g, y = apply_action(name, sub)
            who = eligible[sel]
            self.x[who], self.g[who], self.y[who] = x, g, y
            if name == Action.RETENTION_OFFER.value:
                self.discount_bills_left[who] = self.p.retention_discount_bills
            if name == Action.REFERRAL_INVITE.value:
                self.referral_boost_until[who] = day + 30
        self.last_decision_day[eligible] = day
        names = np.asarray(ALL_ACTIONS, dtype=object)[chosen]
        channels = np.array(
            [ACTION_CATALOGUE[Action(a)].channel if a != Action.NONE.value else None for a in ALL_ACTIONS],
            dtype=object,
        )[chosen]
        self.out["actions"].add(
            decision=np.arange(self.n_decisions, self.n_decisions + eligible.size), cust=eligible,
            day=np.full(eligible.size, day), second=np.zeros(eligible.size, dtype=np.int64),
            action=names, channel=channels, propensity=propensity,
        )
        self.n_decisions += eligible.size

    def _open_tickets(self, idx: np.ndarray, day: int) -> None:
        p = self.p
        counts = self.rng.poisson(p.ticket_rate_base + p.ticket_rate_per_risk * self.x[idx])
        if not counts.any():
            return
        cust = np.repeat(idx, counts)
        k = cust.size
        sev = self.rng.choice(len(TICKET_SEVERITIES), size=k, p=p.ticket_severity_probs)
        ids = np.arange(self.n_tickets, self.n_tickets + k)
        self.n_tickets += k
        seconds = self._seconds(k)
        self.out["tickets"].add(ticket=ids, cust=cust, day=np.full(k, day), second=seconds, severity=sev)
        np.add.at(self.open_counts, (cust, sev), 1)
        self.open_ticket = np.concatenate([self.open_ticket, ids])
        self.open_cust = np.concatenate([self.open_cust, cust])
        self.open_sev = np.concatenate([self.open_sev, sev])
        self.open_day = np.concatenate([self.open_day, np.full(k, day)])
        self.open_second = np.concatenate([self.open_second, seconds])

    def _churn_and_plan_changes(self, idx: np.ndarray, day: int) -> np.ndarray:
        """Returns the customers of idx still active at the end of the day."""
        p, c = self.p, self.c
        tenure = day - c["signup_day"][idx]
        hazard = (
            deterministic_churn_hazard(tenure, self.doy[day], p)
            + p.churn_per_risk * self.x[idx]
            + p.churn_per_disengage * self.g[idx]
            + self.open_counts[idx] @ self.ticket_hazard
            + p.failed_payment_hazard * ((day > self.last_fail_day[idx]) & (day <= self.last_fail_day[idx] + p.failed_payment_days))
            + p.exit_hazard * self.decided[idx]
        )
        churn = self.rng.random(idx.size) < -np.expm1(-hazard)
        gone = idx[churn]
        if gone.size:
            self.active[gone] = False
            self._sub_event(gone, day, self._seconds(gone.size), "cancel")
        stay = idx[~churn]
        # Deciding to leave (effective from tomorrow's hazard).
        self.decided[stay] |= self.rng.random(stay.size) < self.exit_rate[stay]
        # Downgrade, then upgrade.
        can_down = stay[self.tier[stay] > 0]
        down = can_down[self.rng.random(can_down.size) < -np.expm1(-p.downgrade_per_risk * self.x[can_down])]
        if down.size:
            self.tier[down] -= 1
            self.upgrade_block_until[down] = day + p.upgrade_block_days
            self._sub_event(down, day, self._seconds(down.size), "downgrade")
        can_up = stay[(self.tier[stay] < len(p.plans) - 1) & (day >= self.upgrade_block_until[stay])]
        up_hazard = np.asarray(p.segment_upgrade_base)[c["segment"][can_up]] + p.upgrade_per_appetite * self.y[can_up]
        up = can_up[self.rng.random(can_up.size) < -np.expm1(-up_hazard)]
        if up.size:
            self.tier[up] += 1
            self.y[up] *= p.appetite_after_upgrade
            self._sub_event(up, day, self._seconds(up.size), "upgrade")
        return stay

    def _resolve_tickets(self, day: int) -> None:
        if self.open_ticket.size == 0:
            return
        done = self.rng.random(self.open_ticket.size) < self.ticket_resolve[self.open_sev]
        if not done.any():
            return
        cust, sev = self.open_cust[done], self.open_sev[done]
        np.add.at(self.open_counts, (cust, sev), -1)
        k = cust.size
        days_open = day - self.open_day[done] + 1
        csat = np.clip(np.round(4.6 - 0.6 * self.x[cust] - 0.08 * days_open + self.rng.normal(0, 0.7, k)), 1, 5)
        rated = self.rng.random(k) < self.p.csat_response_prob
        # Resolved later the same day it opened, or at any time of a later day.
        earliest = np.where(self.open_day[done] == day, self.open_second[done] + 1, 1)
        seconds = earliest + (self.rng.random(k) * (SECONDS_PER_DAY - earliest)).astype(np.int64)
        self.out["ticket_resolutions"].add(
            ticket=self.open_ticket[done], day=np.full(k, day), second=seconds,
            csat=np.where(rated, csat, np.nan),
        )
        keep = ~done
        self.open_ticket, self.open_cust = self.open_ticket[keep], self.open_cust[keep]
        self.open_sev, self.open_day = self.open_sev[keep], self.open_day[keep]
        self.open_second = self.open_second[keep]

    def _observe(self, idx: np.ndarray, day: int) -> None:
        p, rng = self.p, self.rng
        x, g, y = self.x[idx], self.g[idx], self.y[idx]
        weekday = self.dates[day].dayofweek < 5
        rate = p.max_daily_sessions * np.exp(-g) * (1.0 + 0.25 * y) / (1.0 + 0.3 * x) * (1.0 if weekday else WEEKEND_USE)
        rate *= np.where(self.decided[idx], p.exit_usage, 1.0)
        sessions = rng.poisson(rate)
        used = sessions > 0
        u_idx, u_sessions = idx[used], sessions[used]
        k = u_idx.size
        share = np.clip(0.1 + 0.6 * np.exp(-g[used]) * (1.0 + 0.1 * y[used]), 0.05, 0.95)
        features = np.maximum(rng.binomial(p.n_product_features, share), 1)
        minutes = np.round(rng.gamma(2.0 * u_sessions, 6.0 * (1.0 + 0.2 * y[used])), 1)
        self.out["usage"].add(
            cust=u_idx.astype(np.int32), day=np.full(k, day, dtype=np.int16), sessions=u_sessions.astype(np.int32),
            features_used=features.astype(np.int32), active_minutes=minutes.astype(np.float32),
        )
        self.sessions_ewm[idx] = 0.9 * self.sessions_ewm[idx] + 0.1 * sessions
        self.days_inactive[idx] = np.where(used, 0, self.days_inactive[idx] + 1)
        self.active_days[u_idx] += 1

        surveyed = idx[(rng.random(idx.size) < p.nps_survey_rate)]
        responded = surveyed[rng.random(surveyed.size) < p.nps_response_prob]
        if responded.size:
            score = np.clip(
                np.round(9.0 - 2.2 * self.x[responded] - 1.0 * self.g[responded] + 0.5 * self.y[responded]
                         + rng.normal(0.0, 1.0, responded.size)), 0, 10,
            ).astype(np.int64)
            self.out["nps"].add(cust=responded, day=np.full(responded.size, day), second=self._seconds(responded.size), score=score)
            self.last_nps[responded] = score
            self.last_promoter_day[responded[score >= 9]] = day

        boost = np.where(self.referral_boost_until[idx] >= day, 3.0, 1.0)
        n_ref = rng.poisson(p.referral_rate * np.exp(-2.0 * x - g) * boost)
        if n_ref.any():
            ref_cust = np.repeat(idx, n_ref)
            self.out["referrals"].add(
                cust=ref_cust, day=np.full(ref_cust.size, day), second=self._seconds(ref_cust.size),
                converted=rng.random(ref_cust.size) < p.referral_conversion_prob,
            )
            self.last_referral_day[ref_cust] = day

        n_add = rng.poisson(p.addon_rate * np.exp(-g) * (1.0 + y))
        if n_add.any():
            add_cust = np.repeat(idx, n_add)
            k = add_cust.size
            self.out["transactions"].add(
                cust=add_cust, day=np.full(k, day), second=self._seconds(k), kind=np.full(k, "add_on", dtype=object),
                amount=np.round(rng.lognormal(np.log(25.0), 0.5, k), 2), discount=np.zeros(k),
                status=np.full(k, "paid", dtype=object), tier=self.tier[add_cust].copy(),
            )

    def _billing(self, idx: np.ndarray, day: int) -> None:
        due = idx[self.c["billing_dom"][idx] == self.dom[day]]
        if due.size:
            failed = self.rng.random(due.size) < self.c["failed_payment_prob"][due]
            self._bill(due, day, self._seconds(due.size), failed)
            self.discount_bills_left[due] = np.maximum(self.discount_bills_left[due] - 1, 0)
            self.last_fail_day[due[failed]] = day
        retry = idx[self.last_fail_day[idx] == day - self.p.failed_payment_retry_days]
        if retry.size:
            self._bill(retry, day, self._seconds(retry.size), np.zeros(retry.size, dtype=bool))

    # --------------------------------------------------------------- truth
    def _billing_offsets(self, day: int) -> np.ndarray:
        """(28, MAX_BILLS_AHEAD) offsets of the next bills for each billing day-of-month."""
        today = self.dates[day]
        table = np.full((28, MAX_BILLS_AHEAD), 10**6, dtype=np.int64)
        for dom in range(1, 29):
            first = today.replace(day=dom)
            bills = [first + pd.DateOffset(months=k) for k in range(MAX_BILLS_AHEAD + 1)]
            offsets = [(b - today).days for b in bills if (b - today).days > 0][:MAX_BILLS_AHEAD]
            table[dom - 1, : len(offsets)] = offsets
        return table

    def _snapshot(self, day: int) -> None:
        n = self.n_signed[day]
        everyone = np.arange(n)
        idx = everyone[self.active[:n]]
        c, p = self.c, self.p
        H = self.horizon
        state = SnapshotState(
            day_of_year_ahead=self.doy[day + 1: day + 1 + H],
            risk=self.x[idx], disengage=self.g[idx], appetite=self.y[idx],
            risk_shape=c["risk_shape"][idx], disengage_shape=c["disengage_shape"][idx],
            appetite_shape=c["appetite_shape"][idx],
            tenure_days=(day - c["signup_day"][idx]).astype(float),
            open_tickets=self.open_counts[idx].astype(float),
            billing_offsets=self._billing_offsets(day)[c["billing_dom"][idx] - 1],
            failed_payment_prob=c["failed_payment_prob"][idx],
            dunning_days_left=np.clip(self.last_fail_day[idx] + p.failed_payment_days - day, 0, None),
            tier=self.tier[idx],
            upgrade_start=np.maximum(1, self.upgrade_block_until[idx] - day),
            upgrade_base=np.asarray(p.segment_upgrade_base)[c["segment"][idx]],
            decided=self.decided[idx],
            exit_rate=self.exit_rate[idx],
        )
        truth = SnapshotTruth(self.truth_model, p, state)
        base = truth.baseline()

        cols = {name: np.full(n, np.nan) for name in ("p_churn_30d", "p_churn_90d", "p_upgrade_30d", "p_upgrade_90d")}
        for h in p.horizons:
            cols[f"p_churn_{h}d"][idx] = base.p_churn[h]
            cols[f"p_upgrade_{h}d"][idx] = base.p_upgrade[h]
        stage = true_stage(
            churned=~self.active[:n],
            tenure_days=day - c["signup_day"][:n],
            active_days=self.active_days[:n],
            days_inactive=self.days_inactive[:n],
            p_churn_90d=cols["p_churn_90d"],
            days_since_promoter_nps=day - self.last_promoter_day[:n],
            days_since_referral=day - self.last_referral_day[:n],
        )
        self.out["ground_truth"].add(cust=everyone, day=np.full(n, day), stage=stage, **cols)

        # Actions are decided at the next midnight (the cutoff): price them with the state
        # the engine will act on then, a day more of tenure (`_campaign`).
        ls = self._latent_state(idx, day + 1)
        h = p.effect_horizon
        for action in self.effect_actions:
            p_churn, p_upgrade = truth.with_state(*apply_action(action, ls), h)
            self.out["ground_truth_effects"].add(
                cust=idx, day=np.full(idx.size, day), action=np.full(idx.size, action.value, dtype=object),
                effect_churn=p_churn - base.p_churn[h], effect_upgrade=p_upgrade - base.p_upgrade[h],
            )

    # ------------------------------------------------------------------ run
    def run(self, progress: Callable[[int, int], None] | None = None) -> SimulationOutput:
        n_days = self.config.n_days
        p = self.p
        c = self.c
        n_prev = 0
        for day in range(n_days):
            n = self.n_signed[day]
            old = np.flatnonzero(self.active[:n_prev])
            if self.dom[day] == 1 and day > 0:
                self._campaign(old, day)
            self._open_tickets(old, day)
            self.x[old] = latent.step(self.rng, self.x[old], c["risk_shape"][old], p.risk)
            self.g[old] = latent.step(self.rng, self.g[old], c["disengage_shape"][old], p.disengage)
            self.y[old] = latent.step(self.rng, self.y[old], c["appetite_shape"][old], p.appetite)
            stay = self._churn_and_plan_changes(old, day)
            self._resolve_tickets(day)
            self._observe(stay, day)
            self._billing(stay, day)
            if n > n_prev:
                self._start_customers(np.arange(n_prev, n), day)
            n_prev = n
            if self.dates[day + 1].day == 1:
                self._snapshot(day)
            if progress is not None:
                progress(day + 1, n_days)
        return SimulationOutput(self.config, self.c, TableColumns(self.out))
