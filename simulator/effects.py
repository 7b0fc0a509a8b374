"""The true effect of each proactive action on a customer's latent state.

One function, used by the engine when the logged policy acts and by the ground truth
when it prices every action for every customer. Effects are heterogeneous on purpose:
- retention_offer relieves risk in proportion to price sensitivity (smb most), but reminds
  customers who stopped using the product that they pay for it ("sleeping dogs");
- success_call lowers only the risk above a normal level (no help to the content) and
  re-engages a little;
- onboarding_nudge re-engages customers in their first 90 days, barely anyone else;
- upgrade_offer raises expansion appetite in proportion to engagement and irritates the
  disengaged;
- referral_invite reinforces the delighted and irritates the unhappy;
- win_back re-engages customers inactive for 21+ days and does nothing for active ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clm.domain import Action

RETENTION_RELIEF_BY_SEGMENT = np.array([0.7, 0.5, 0.3])  # smb, mid_market, enterprise
SLEEPING_DOG_INACTIVE_DAYS = 14
WIN_BACK_INACTIVE_DAYS = 21
ONBOARDING_DAYS = 90


@dataclass
class LatentState:
    """Latent state of a set of customers plus the observable context effects depend on."""

    risk: np.ndarray
    disengage: np.ndarray
    appetite: np.ndarray
    tenure_days: np.ndarray
    days_inactive: np.ndarray
    segment: np.ndarray  # index into params.segments


def apply_action(action: Action | str, s: LatentState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New (risk, disengage, appetite) after `action`; inputs are not modified."""
    x, g, y = s.risk.copy(), s.disengage.copy(), s.appetite.copy()
    action = Action(action)
    if action is Action.RETENTION_OFFER:
        x *= 1.0 - RETENTION_RELIEF_BY_SEGMENT[s.segment]
        x += np.where(s.days_inactive >= SLEEPING_DOG_INACTIVE_DAYS, 0.8, 0.0)
    elif action is Action.SUCCESS_CALL:
        x -= 0.7 * np.maximum(x - 0.5, 0.0)
        g *= 0.8
    elif action is Action.ONBOARDING_NUDGE:
        g *= np.where(s.tenure_days < ONBOARDING_DAYS, 0.35, 0.97)
    elif action is Action.UPGRADE_OFFER:
        y += 1.2 * np.exp(-g)
        x += np.where(g > 2.0, 0.3, 0.0)
    elif action is Action.REFERRAL_INVITE:
        x = np.where(x < 0.5, 0.9 * x, np.where(x > 2.0, x + 0.3, x))
    elif action is Action.WIN_BACK:
        lapsed = s.days_inactive >= WIN_BACK_INACTIVE_DAYS
        g = np.where(lapsed, 0.25 * g, g)
        x = np.where(lapsed, 0.7 * x, x)
    return x, g, y
