"""Closed-form ground truth: churn and upgrade probabilities, and action effects.

Given one customer's full state at the end of a snapshot day t (latent risk x,
disengagement g, appetite y, open tickets, billing calendar, last failed payment, plan,
upgrade block), and assuming no proactive action in (t, t+H]:

  P(no churn through day k) = exp(-sum_{j<=k} a(t+j))                 deterministic hazard
                              * exp(-A^x_k x - delta_x G^x_k - L^x_k)   risk + new tickets
                              * exp(-A^g_k g - delta_g G^g_k)           disengagement
                              * prod_open tickets psi_sev(k)            tickets open now
                              * prod_bills(1 - p_f + p_f e^{-kappa n_b(k)})  future failures
                              * exp(-kappa min(r, k))                   past failure's dunning
                              * S_exit(k)                               decided to leave (`exit_log_survival`)

Each factor is exact because the latent processes are ARG(1) (exponential-affine Laplace
transform, `simulator.latent`), ticket arrivals are Poisson given risk, resolution is
geometric, and payment failures are independent draws. p_churn_H = 1 - that at k = H.

The upgrade is the first success of a daily coin with hazard a_u + b_y y_j on eligible
days (not on the top plan, not in the block after a downgrade). Appetite is independent
of risk and disengagement, so with S_u(k) = P(no upgrade coin through k) (exact, by the
same algebra, with `latent.propagate` for a block that ends inside the window) and
S_cd(k) = P(no churn and no downgrade through k) (the churn product with the risk weight
raised by the downgrade hazard):

  p_upgrade_H = sum_{k=1..H} (S_u(k-1) - S_u(k)) S_cd(k)

Nothing here is estimated: the only error is floating point. An action's effect is the
same computation on the state the action leaves (`simulator.effects`), minus the baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import latent
from simulator.hazards import season
from simulator.params import SimulationParams


@dataclass(frozen=True)
class TruthModel:
    """Recursion coefficients shared by every customer and snapshot (depend on params only)."""

    horizon: int
    churn_risk: latent.SurvivalCoefficients
    churn_down_risk: latent.SurvivalCoefficients
    churn_disengage: latent.SurvivalCoefficients
    upgrade_appetite: latent.SurvivalCoefficients
    appetite_phi: np.ndarray  # (horizon + 1, horizon + 1): [n steps, m-day window]
    appetite_gamma: np.ndarray
    log_ticket_escape: np.ndarray  # (n_severities, horizon + 1)

    @classmethod
    def build(cls, params: SimulationParams, horizon: int) -> "TruthModel":
        escapes = np.array(
            [
                latent.geometric_escape(h, r, horizon)
                for h, r in zip(params.ticket_open_hazard, params.ticket_daily_resolve_prob)
            ]
        )
        mean_escape = np.asarray(params.ticket_severity_probs) @ escapes
        tickets = dict(
            arrival_base=params.ticket_rate_base,
            arrival_per_x=params.ticket_rate_per_risk,
            arrival_escape=mean_escape,
        )
        churn_risk = latent.survival_coefficients(params.risk, params.churn_per_risk, horizon, **tickets)
        churn_down_risk = latent.survival_coefficients(
            params.risk, params.churn_per_risk + params.downgrade_per_risk, horizon, **tickets
        )
        churn_dis = latent.survival_coefficients(params.disengage, params.churn_per_disengage, horizon)
        upgrade = latent.survival_coefficients(params.appetite, params.upgrade_per_appetite, horizon)
        phi, gam = latent.propagate(params.appetite, upgrade.A, horizon)
        return cls(horizon, churn_risk, churn_down_risk, churn_dis, upgrade, phi, gam, np.log(escapes))


@dataclass
class SnapshotState:
    """What the truth needs about n customers at the end of snapshot day `day`.

    billing_offsets: (n, K) days after the snapshot of each upcoming bill (> horizon: none);
    dunning_days_left: days of the last failed payment's extra hazard still to come;
    upgrade_start: first day offset (>= 1) on which an upgrade is allowed;
    tier: plan index (0 = lowest).
    """

    day_of_year_ahead: np.ndarray  # (horizon,) day of year of days t+1..t+H
    risk: np.ndarray
    disengage: np.ndarray
    appetite: np.ndarray
    risk_shape: np.ndarray
    disengage_shape: np.ndarray
    appetite_shape: np.ndarray
    tenure_days: np.ndarray
    open_tickets: np.ndarray  # (n, n_severities) counts
    billing_offsets: np.ndarray
    failed_payment_prob: np.ndarray
    dunning_days_left: np.ndarray
    tier: np.ndarray
    upgrade_start: np.ndarray
    upgrade_base: np.ndarray
    decided: np.ndarray  # decided to leave (exit hazard from the next day)
    exit_rate: np.ndarray  # daily probability of deciding to leave


@dataclass(frozen=True)
class Probabilities:
    p_churn: dict[int, np.ndarray]
    p_upgrade: dict[int, np.ndarray]


def exit_log_survival(decided: np.ndarray, rate: np.ndarray, hazard: float, horizon: int) -> np.ndarray:
    """(n, horizon) log P(no exit-driven churn through day k), k = 1..horizon.

    Decided now: the hazard applies every day, exp(-hazard k). Not yet: a decision at the
    end of day j (probability q (1-q)^(j-1), q the daily rate) applies from day j+1, so
    S(k) = (1-q)^(k-1) + q sum_{j<k} (1-q)^(j-1) exp(-hazard (k-j)); the sum T(k) obeys
    T(1) = 0, T(k+1) = exp(-hazard) (T(k) + (1-q)^(k-1)). The decision is independent of
    every other cause, so the factor multiplies the rest exactly. No action changes it.
    """
    k = np.arange(1, horizon + 1)
    out = np.empty((decided.size, horizon))
    out[decided] = -hazard * k
    undecided = ~decided
    for q in np.unique(rate[undecided]):
        stay = (1.0 - q) ** (k - 1)  # (1-q)^(k-1)
        tail = np.zeros(horizon)
        for i in range(1, horizon):
            tail[i] = np.exp(-hazard) * (tail[i - 1] + stay[i - 1])
        out[undecided & (rate == q)] = np.log(stay + q * tail)
    return out


class SnapshotTruth:
    """Truth for one snapshot: the parts that no action changes are computed once."""

    def __init__(self, model: TruthModel, params: SimulationParams, s: SnapshotState):
        H = model.horizon
        k = np.arange(1, H + 1)
        n = s.risk.size
        self.params = params
        self.top_tier = len(params.plans) - 1

        season_cum = np.cumsum(season(s.day_of_year_ahead, params))
        decay = np.exp(-1.0 / params.churn_early_life_days)
        early_cum = np.cumsum(decay**k)  # sum_j exp(-j / tau)
        det = (
            params.churn_base * k[None, :]
            + params.churn_early_life * np.exp(-s.tenure_days / params.churn_early_life_days)[:, None] * early_cum
            + season_cum[None, :]
        )
        log_static = -det
        log_static -= s.disengage_shape[:, None] * model.churn_disengage.G[k]
        log_static += s.open_tickets @ model.log_ticket_escape[:, 1:]
        log_static += self._failed_payment_log_factor(s, k)
        log_static += exit_log_survival(s.decided, s.exit_rate, params.exit_hazard, H)

        risk_c, down_c = model.churn_risk, model.churn_down_risk
        self.log_churn_static = log_static - s.risk_shape[:, None] * risk_c.G[k] - risk_c.L[k]
        # Extra log-survival term, per unit of risk shape and constant, when downgrades count too.
        self.down_extra_per_shape = down_c.G[k] - risk_c.G[k]
        self.down_extra_const = down_c.L[k] - risk_c.L[k]
        self.risk_shape = s.risk_shape
        self.risk_coef = risk_c.A[k]
        self.risk_down_coef = down_c.A[k]
        self.can_downgrade = s.tier > 0
        self.disengage_coef = model.churn_disengage.A[k]

        # Upgrade coin: a window of m = k - start + 1 eligible days, after start - 1 quiet
        # steps. Most customers can upgrade from day 1 (start = 1): one shared row.
        up = model.upgrade_appetite
        kk = np.arange(0, H + 1)
        self.appetite_coef = np.broadcast_to(up.A[kk], (n, H + 1)).copy()
        self.log_upgrade_static = -(s.upgrade_base[:, None] * kk + s.appetite_shape[:, None] * up.G[kk])
        blocked = np.flatnonzero(s.upgrade_start > 1)
        if blocked.size:
            start = np.minimum(s.upgrade_start[blocked], H + 1)
            m = np.clip(kk[None, :] - start[:, None] + 1, 0, H)
            steps = (start - 1)[:, None]
            self.appetite_coef[blocked] = model.appetite_phi[steps, m]
            self.log_upgrade_static[blocked] = -(
                s.upgrade_base[blocked, None] * m
                + s.appetite_shape[blocked, None] * (model.appetite_gamma[steps, m] + up.G[m])
            )
        self.upgradable = np.flatnonzero(s.tier < self.top_tier)
        self.risk, self.disengage, self.appetite = s.risk, s.disengage, s.appetite
        self.n = n

    def _failed_payment_log_factor(self, s: SnapshotState, k: np.ndarray) -> np.ndarray:
        """log P(no churn from payment failures through day k): future bills and past dunning."""
        kappa, F = self.params.failed_payment_hazard, self.params.failed_payment_days
        p = s.failed_payment_prob[:, None]
        # log(1 - p + p e^{-kappa n}) for n = 0..F bump days inside the window.
        per_bump_days = np.log1p(-p + p * np.exp(-kappa * np.arange(F + 1))[None, :])
        out = -kappa * np.minimum(s.dunning_days_left[:, None], k[None, :]).astype(float)
        for b in s.billing_offsets.T:
            if b.size == 0 or b.min() >= k[-1]:  # nobody live at this snapshot, or no bill inside the window
                continue
            bump_days = np.clip(k[None, :] - b[:, None], 0, F)
            out += np.take_along_axis(per_bump_days, bump_days, axis=1)
        return out

    def _survival_churn_down(self, pos: np.ndarray, risk: np.ndarray, disengage: np.ndarray) -> np.ndarray:
        """S_cd(k), k = 1..H: no churn and no downgrade through day k.

        pos: positions within self.upgradable (the only customers it is needed for).
        """
        r = risk.astype(np.float32)[:, None]
        g = disengage.astype(np.float32)[:, None]
        return np.exp(self._cd_static[pos] - self._cd_risk_coef[pos] * r - self._dis_coef32 * g)

    def _first_upgrade(self, pos: np.ndarray, appetite: np.ndarray) -> np.ndarray:
        """P(first upgrade coin success on day k), k = 1..H; pos as in _survival_churn_down."""
        s_u = np.exp(self._up_static[pos] - self._up_coef[pos] * appetite.astype(np.float32)[:, None])
        return s_u[:, :-1] - s_u[:, 1:]

    def _p_churn(self, risk: np.ndarray, disengage: np.ndarray, h: int) -> np.ndarray:
        log_s = (
            self.log_churn_static[:, h - 1] - self.risk_coef[h - 1] * risk - self.disengage_coef[h - 1] * disengage
        )
        return -np.expm1(log_s)

    def baseline(self) -> Probabilities:
        """Probabilities with no action; also kept to price actions against."""
        rows = self.upgradable
        down = self.can_downgrade[rows, None]
        # The day-by-day upgrade sums run in float32 (relative error ~1e-7, far below any
        # sampling error), which halves their cost; the churn probabilities stay float64.
        self._cd_risk_coef = np.where(down, self.risk_down_coef, self.risk_coef).astype(np.float32)
        self._cd_static = (
            self.log_churn_static[rows]
            - down * (self.risk_shape[rows, None] * self.down_extra_per_shape + self.down_extra_const)
        ).astype(np.float32)
        self._up_static = self.log_upgrade_static[rows].astype(np.float32)
        self._up_coef = self.appetite_coef[rows].astype(np.float32)
        self._dis_coef32 = self.disengage_coef.astype(np.float32)
        everyone = np.arange(rows.size)
        self._s_cd = self._survival_churn_down(everyone, self.risk[rows], self.disengage[rows])
        self._first = self._first_upgrade(everyone, self.appetite[rows])
        joint = self._first * self._s_cd
        p_churn, p_upgrade = {}, {}
        for h in self.params.horizons:
            p_churn[h] = self._p_churn(self.risk, self.disengage, h)
            p_upgrade[h] = np.zeros(self.n)
            p_upgrade[h][rows] = joint[:, :h].sum(axis=1, dtype=np.float64)
        self._base = Probabilities(p_churn, p_upgrade)
        return self._base

    def with_state(self, risk: np.ndarray, disengage: np.ndarray, appetite: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(p_churn_h, p_upgrade_h) if the latent state were (risk, disengage, appetite).

        Only the factors an action changed are recomputed; call baseline() first.
        """
        p_churn = self._p_churn(risk, disengage, h)
        base_up = self.upgradable
        moved_xg = (risk[base_up] != self.risk[base_up]) | (disengage[base_up] != self.disengage[base_up])
        moved_y = appetite[base_up] != self.appetite[base_up]
        moved = np.flatnonzero(moved_xg | moved_y)
        p_upgrade = self._base.p_upgrade[h].copy()
        if moved.size:
            rows = base_up[moved]
            s_cd = self._s_cd[moved]
            xg = moved_xg[moved]
            if xg.any():
                s_cd[xg] = self._survival_churn_down(moved[xg], risk[rows[xg]], disengage[rows[xg]])
            first = self._first[moved]
            yy = moved_y[moved]
            if yy.any():
                first[yy] = self._first_upgrade(moved[yy], appetite[rows[yy]])
            p_upgrade[rows] = (first[:, :h] * s_cd[:, :h]).sum(axis=1, dtype=np.float64)
        return p_churn, p_upgrade
