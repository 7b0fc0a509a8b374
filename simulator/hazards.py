"""The deterministic part of the churn hazard, shared by the engine and the ground truth."""
from __future__ import annotations

import numpy as np

from simulator.params import SimulationParams


def season(day_of_year: np.ndarray, params: SimulationParams) -> np.ndarray:
    """Seasonal churn hazard: 0 at mid-year, 2 * amplitude at the turn of the year."""
    return params.churn_season_amplitude * (1.0 + np.cos(2.0 * np.pi * (day_of_year - 1) / 365.25))


def deterministic_churn_hazard(
    tenure_days: np.ndarray, day_of_year: np.ndarray, params: SimulationParams
) -> np.ndarray:
    """Base + early-life (decays with tenure) + seasonal hazard for one day."""
    early = params.churn_early_life * np.exp(-tenure_days / params.churn_early_life_days)
    return params.churn_base + early + season(day_of_year, params)
