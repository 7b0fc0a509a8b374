"""Every number of the generative model, in one place, each with its meaning.

Time runs in days. Hazards are per day: a customer whose hazard is h on a day leaves that
day with probability 1 - exp(-h).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LatentProcess:
    """A gamma autoregressive process, ARG(1) (Gourieroux & Jasiak, 2006).

    x' | x ~ Gamma(shape = delta_i + Poisson(beta * x), scale = c), with beta * c = rho.
    Its stationary law is Gamma(delta_i, c / (1 - rho)), mean delta_i * c / (1 - rho). Its
    Laplace transform is exponential-affine, E[exp(-u x') | x] =
    exp(-x * beta*c*u / (1 + c*u) - delta_i * log(1 + c*u)), which is what makes the
    ground truth exact (see simulator.truth). delta_i varies by customer (cohort quality),
    rho and c are common.
    """

    rho: float  # day-to-day persistence
    scale: float  # c
    mean_shape: float  # typical delta; a customer's delta is mean_shape * its multiplier

    @property
    def beta(self) -> float:
        return self.rho / self.scale

    @property
    def stationary_mean_per_shape(self) -> float:
        return self.scale / (1.0 - self.rho)


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_price: float


@dataclass(frozen=True)
class SimulationParams:
    """The generative model. Defaults describe a mid-sized B2B SaaS business."""

    # Latent states (all >= 0): risk = dissatisfaction, disengage = lack of use,
    # appetite = appetite for more (expansion).
    risk: LatentProcess = LatentProcess(rho=0.99, scale=0.02, mean_shape=0.5)
    disengage: LatentProcess = LatentProcess(rho=0.985, scale=0.03, mean_shape=0.5)
    appetite: LatentProcess = LatentProcess(rho=0.99, scale=0.02, mean_shape=0.5)

    # Churn hazard per day: base + early-life + seasonal + risk + disengagement
    # + open tickets + recent failed payment.
    churn_base: float = 0.0001
    churn_early_life: float = 0.0015  # extra hazard at signup, decaying with tenure
    churn_early_life_days: float = 45.0
    churn_season_amplitude: float = 0.0001  # peaks at the turn of the year
    churn_per_risk: float = 0.0006
    churn_per_disengage: float = 0.0003
    # Open support tickets add hazard while unresolved, by severity.
    ticket_severity_probs: tuple[float, ...] = (0.45, 0.33, 0.17, 0.05)
    ticket_open_hazard: tuple[float, ...] = (0.0005, 0.0015, 0.004, 0.01)
    ticket_daily_resolve_prob: tuple[float, ...] = (0.35, 0.2, 0.12, 0.3)
    # Tickets arrive at rate base + per_risk * risk (risk before that day's move).
    ticket_rate_base: float = 0.004
    ticket_rate_per_risk: float = 0.02
    # A failed payment raises the hazard for the following days (dunning, involuntary churn).
    failed_payment_hazard: float = 0.008
    failed_payment_days: int = 14
    failed_payment_retry_days: int = 3
    # Decided to leave, for a cause no action reaches (the business closes, the budget is
    # cut, a competitor's contract is signed). A live customer decides at a daily rate by
    # segment (smb, mid_market, enterprise); from the next day on, exit_hazard adds to the
    # churn hazard and usage falls to exit_usage of what it was. No action changes either:
    # these are the lost causes (high risk, ~no effect), and the fall in usage is their
    # only trace in the data.
    exit_decision_rate: tuple[float, ...] = (0.0010, 0.0006, 0.0003)
    exit_hazard: float = 0.03
    exit_usage: float = 0.35

    # Plan changes. Downgrade hazard = per_risk * risk (not on the lowest plan);
    # upgrade hazard = segment base + per_appetite * appetite (not on the top plan, and not
    # within upgrade_block_days after a downgrade).
    plans: tuple[Plan, ...] = (Plan("basic", 29.0), Plan("pro", 79.0), Plan("business", 199.0))
    downgrade_per_risk: float = 0.0006
    upgrade_per_appetite: float = 0.001
    upgrade_block_days: int = 180
    appetite_after_upgrade: float = 0.2  # appetite is multiplied by this on upgrading

    # Observations.
    max_daily_sessions: float = 3.0  # sessions/day of a fully engaged customer
    n_product_features: int = 12
    addon_rate: float = 0.004  # add-on purchases per day at full engagement
    nps_survey_rate: float = 1.0 / 120.0  # chance per day of being surveyed
    nps_response_prob: float = 0.45
    csat_response_prob: float = 0.55
    referral_rate: float = 0.0012  # referrals per day for a delighted, engaged customer
    referral_conversion_prob: float = 0.3

    # Customers.
    segments: tuple[str, ...] = ("smb", "mid_market", "enterprise")
    segment_probs: tuple[float, ...] = (0.62, 0.28, 0.10)
    channels: tuple[str, ...] = ("organic", "paid_search", "paid_social", "partner", "referral")
    channel_probs: tuple[float, ...] = (0.32, 0.25, 0.2, 0.13, 0.10)
    # Spread (log-normal sigma) of each customer's latent shapes around its cohort's.
    shape_spread: float = 0.6
    # Cohort quality: multipliers of the risk / disengagement shape by channel.
    channel_risk: tuple[float, ...] = (0.9, 1.1, 1.5, 0.8, 0.7)
    channel_disengage: tuple[float, ...] = (0.9, 1.1, 1.6, 0.9, 0.7)
    segment_risk: tuple[float, ...] = (1.2, 0.9, 0.6)
    segment_appetite: tuple[float, ...] = (0.8, 1.4, 0.8)
    segment_upgrade_base: tuple[float, ...] = (0.0002, 0.0004, 0.0002)
    # Initial plan distribution by segment (rows) over plans (columns).
    segment_plan_probs: tuple[tuple[float, ...], ...] = (
        (0.75, 0.22, 0.03),
        (0.35, 0.50, 0.15),
        (0.05, 0.35, 0.60),
    )
    regions: tuple[str, ...] = ("na", "emea", "apac", "latam")
    region_probs: tuple[float, ...] = (0.45, 0.3, 0.15, 0.1)
    region_failed_payment_prob: tuple[float, ...] = (0.02, 0.025, 0.035, 0.06)
    consent_email_prob: float = 0.85
    consent_phone_prob: float = 0.45
    # Signups: share of the base that signs up in the first 30 days (an existing book
    # migrated at launch), the rest spread over the period with growth and seasonality.
    launch_share: float = 0.25
    signup_growth: float = 0.6  # last day's signup rate / first day's, minus one
    signup_season_amplitude: float = 0.25

    # Logged policy (monthly campaign on each month's first day).
    decision_cooldown_days: int = 90  # a customer gets at most one decision per 90 days
    policy_temperature: float = 0.7
    policy_min_none: float = 0.3  # randomised control: P(none) is never below this
    policy_min_action: float = 0.03  # every eligible action keeps this much chance
    retention_discount: float = 0.2
    retention_discount_bills: int = 3

    horizons: tuple[int, ...] = (30, 90)
    effect_horizon: int = 90

    rng_bit_generator: str = field(default="PCG64", repr=False)

    def plan_prices(self) -> np.ndarray:
        return np.array([p.monthly_price for p in self.plans])
