"""The models clm trains, by name: the one list, and how a name given by a user is read.

Light on purpose (no MLflow, no LightGBM): the command line checks a model's name before
it takes the workspace's lock or imports anything heavy.
"""
from __future__ import annotations

from clm.errors import ClmError

# churn, upsell, stage and CLV (training.models.SPECS) and the uplift model (training.uplift).
MODEL_NAMES = ("churn", "upsell", "stage", "clv", "uplift")


def registered_name(model: str) -> str:
    """The model's name in the MLflow registry."""
    return f"clm-{model}"


def model_key(text: str) -> str:
    """A model named on the command line, as `churn` or by its registered name `clm-churn`
    (what `clm models list` prints); a ClmError listing the names otherwise."""
    key = text.strip().lower().removeprefix("clm-")
    if key not in MODEL_NAMES:
        raise ClmError(f"'{text}' is not a clm model: name one of {', '.join(MODEL_NAMES)} (or its registered "
                       f"name, e.g. {registered_name(MODEL_NAMES[0])}).")
    return key
