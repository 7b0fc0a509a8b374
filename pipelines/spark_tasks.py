"""What Spark's Python workers run for the batch (`pipelines.score_spark`): pass 1 scores a
batch of features, pass 2 adds the decisions, by the local batch's functions. Kept apart
and light to import (no Feast, no MLflow): every worker imports it once.
"""
from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from decisions.catalogue import Catalogue
from pipelines.decisions import OUTPUT_COLUMNS, PLAN_COLUMNS, with_decisions
from serving.scoring import (
    CONSENT_COLUMNS,
    FUNNEL_COLUMNS,
    SCORE_COLUMNS,
    Champions,
    score_rows,
)

LIVE = "_live"  # pass 1's flags: in the model population, and decided for (`serving.scoring.Scored`)
DECIDED = "_decided"
# The funnel's inputs that are not already score columns, and the effects, one column each.
FUNNEL_EXTRA = tuple(c for c in FUNNEL_COLUMNS if c not in SCORE_COLUMNS)
STRINGS = {"customer_id", "stage", "predicted_stage", "stage_probabilities", "segment", "action", "reasons",
           "model_versions", "why"}
BOOLEANS = {"consent_email", "consent_phone", "explored", LIVE, DECIDED}

BatchFunction = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]  # what mapInPandas runs


def _spark_type(column: str) -> str:
    if column in STRINGS:
        return "string"
    if column in BOOLEANS:
        return "boolean"
    if column == "as_of":
        return "timestamp"
    if column == "choice":
        return "int"
    return "double"


def schema(columns: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{c}` {_spark_type(c)}" for c in columns)


def effect_columns(actions: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Pass 1's effect columns, one per outcome and contact action of the catalogue."""
    return {kind: tuple(f"_{kind}_change__{a}" for a in actions) for kind in ("churn", "upgrade")}


def pass1_columns(actions: Sequence[str]) -> tuple[str, ...]:
    effects = effect_columns(actions)
    return (*SCORE_COLUMNS, LIVE, DECIDED, *FUNNEL_EXTRA, *effects["churn"], *effects["upgrade"])


@functools.lru_cache(maxsize=2)
def _champions(blob: bytes) -> Champions:
    """The champions, unpickled once per Python worker (Spark reuses its workers)."""
    return pickle.loads(blob)


def _typed(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """frame's columns as the Spark schema says (object columns of all-None become typed)."""
    out = frame.reindex(columns=list(columns))
    for column in columns:
        kind = _spark_type(column)
        if kind == "double":
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
        elif kind == "boolean":
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def score_batches(blob: bytes, contractual: bool, actions: list[str]) -> BatchFunction:
    """Pass 1's function for mapInPandas: pass1_columns(actions) for each batch of features
    (with consents); actions: the catalogue's contact action ids."""
    columns, effects = pass1_columns(actions), effect_columns(actions)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        champions = _champions(blob)
        for frame in batches:
            consents = frame[["customer_id", *CONSENT_COLUMNS]].set_index("customer_id")
            scored = score_rows(champions, frame.drop(columns=list(CONSENT_COLUMNS)), contractual, consents, actions)
            out = scored.scores.assign(**{LIVE: scored.live, DECIDED: scored.decided})
            live = np.flatnonzero(scored.decided)
            for column in FUNNEL_EXTRA:
                values = np.full(len(out), None, dtype=object)
                values[live] = scored.funnel[column].to_numpy(dtype=object)
                out[column] = values
            for kind, change in (("churn", scored.churn_change), ("upgrade", scored.upgrade_change)):
                for j, column in enumerate(effects[kind]):
                    values = np.full(len(out), np.nan)
                    if change is not None:
                        values[live] = change[:, j]
                    out[column] = values
            yield _typed(out, columns)
    return run


def decide_batches(blob: bytes, contractual: bool, catalogue: Catalogue, actions: list[str],
                   feature_columns: list[str], as_of: pd.Timestamp, with_plan: bool) -> BatchFunction:
    """Pass 2's function for mapInPandas: OUTPUT_COLUMNS for each batch of scores, features
    and plan rows (null plan rows outside the population)."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        champions = _champions(blob)
        for frame in batches:
            scores = frame[list(SCORE_COLUMNS)].assign(as_of=as_of)
            features = frame[feature_columns]
            planned = frame.loc[frame["choice"].notna(), list(PLAN_COLUMNS)] if with_plan else None
            yield _typed(with_decisions(scores, features, planned, actions, catalogue, champions, contractual),
                         OUTPUT_COLUMNS)
    return run
