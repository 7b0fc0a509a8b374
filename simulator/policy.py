"""The logged policy: how the simulated business chose proactive actions.

A CRM team's rules of thumb, made stochastic so that effects can be learned afterwards:
each eligible customer gets a softmax over heuristic scores built from observable signals
only, mixed with floors (P(none) >= policy_min_none, every eligible action >=
policy_min_action). The drawn action and its probability (the assignment propensity) are
logged; 'none' decisions are the randomised control group.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clm.domain import ACTION_CATALOGUE, ALL_ACTIONS, Action
from simulator.params import SimulationParams


@dataclass
class BusinessPolicyInputs:
    """What the simulated business's own (logged, randomised) policy sees of the eligible
    customers at decision time: observable signals only."""

    open_tickets: np.ndarray
    sessions_ewm: np.ndarray  # exponentially weighted daily sessions
    days_inactive: np.ndarray
    tenure_days: np.ndarray
    last_nps: np.ndarray  # -1 if never answered
    recent_failed_payment: np.ndarray
    enterprise_or_mid: np.ndarray
    top_tier: np.ndarray
    consent: dict[str, np.ndarray]  # channel -> bool


def action_probabilities(inp: BusinessPolicyInputs, params: SimulationParams) -> np.ndarray:
    """(n, len(ALL_ACTIONS)) assignment probabilities, columns in ALL_ACTIONS order."""
    n = inp.open_tickets.size
    has_ticket = (inp.open_tickets > 0).astype(float)
    low_use = (inp.sessions_ewm < 0.5).astype(float)
    scores = {
        Action.NONE: np.full(n, 1.0),
        Action.RETENTION_OFFER: 1.5 * has_ticket + 2.0 * low_use + 1.0 * inp.recent_failed_payment - 0.5,
        Action.SUCCESS_CALL: 2.0 * has_ticket + 1.0 * inp.enterprise_or_mid - 1.0,
        Action.ONBOARDING_NUDGE: 3.0 * (inp.tenure_days < 90) - 1.5,
        Action.UPGRADE_OFFER: 1.5 * (inp.sessions_ewm > 2.0) - 0.5,
        Action.REFERRAL_INVITE: 2.0 * (inp.last_nps >= 9) - 1.0,
        Action.WIN_BACK: 3.0 * (inp.days_inactive >= 21) - 1.5,
    }
    eligible = {Action.NONE: np.ones(n, dtype=bool)}
    for action, spec in ACTION_CATALOGUE.items():
        ok = inp.consent.get(spec.channel, np.ones(n, dtype=bool)).copy()
        if action is Action.UPGRADE_OFFER:
            ok &= ~inp.top_tier
        eligible[action] = ok
    order = [Action(a) for a in ALL_ACTIONS]
    logits = np.column_stack([scores[a] for a in order]) / params.policy_temperature
    mask = np.column_stack([eligible[a] for a in order])
    logits = np.where(mask, logits, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    soft /= soft.sum(axis=1, keepdims=True)
    floors = np.where(mask, params.policy_min_action, 0.0)
    floors[:, 0] = params.policy_min_none
    return floors + (1.0 - floors.sum(axis=1, keepdims=True)) * soft


def draw_actions(rng: np.random.Generator, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw one action index per row; returns (indices into ALL_ACTIONS, propensities)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    chosen = (u[:, None] >= cum).sum(axis=1)
    chosen = np.minimum(chosen, probs.shape[1] - 1)
    return chosen, probs[np.arange(probs.shape[0]), chosen]
