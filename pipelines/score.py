"""Batch scoring with the champion models: what `clm score` runs.

Every customer known at the as-of date (signed up before it) gets a row, with the stage
the rules give them then. Churn, upsell and CLV scores, and the predicted stage, are given
to the customers in the model population at that date (`training.population`), the same
rule the models were trained on:

- non-contractual (transactions only): everyone with a paid purchase before the date,
  however long ago; a customer the rules call `churned` or `dormant` is still scored,
  since churn there is an estimate (no purchase within the horizon), not a fact;
- contractual: customers whose contract is live. A cancelled customer keeps null
  churn/upsell/CLV scores (the contract has ended) and the predicted stage `churned`.

A column is null where its model has no champion for the workspace (e.g. upsell without
subscriptions). With an uplift champion, each customer in the population also gets a
decision (`pipelines.decisions`: the funnel under the budget and capacities, exploration,
reasons), logged in the workspace's decision log: action, action_value, action_cost,
reasons (JSON), propensity, explored. The file is written atomically.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clm.contracts import require_valid
from clm.errors import ClmError
from clm.stages import current_stage
from clm.workspace import Workspace
from features.build import build_features, read_snapshot
from features.store import apply as apply_features
from features.store import historical_features
from pipelines.decisions import (
    DECISION_COLUMNS,
    BatchDecisions,
    decide_batch,
    with_consents,
)
from serving.catalogue import Catalogue, load_catalogue
from serving.decision_log import DEFAULT_EXPLORATION
from serving.value import plan_prices
from training import registry
from training.models import TrainedModel
from training.population import population

SCORE_COLUMNS = (
    "customer_id", "churn_probability", "upsell_probability", "stage", "predicted_stage",
    "stage_probabilities", "clv", "as_of",
)
SCALAR_SCORES = {"churn": "churn_probability", "upsell": "upsell_probability", "clv": "clv"}
MODELS = ("churn", "upsell", "stage", "clv")


@dataclass
class ScoreResult:
    path: Path
    customers: int
    scored: int  # customers in the model population, who got scores
    models: dict[str, str | None]  # model -> champion version used
    decisions: BatchDecisions | None = None  # with an uplift champion


def features_at(workspace: Workspace, as_of: pd.Timestamp, contractual: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Every group's features for every customer known at as_of (point in time), and a
    mask of the rows in the model population then."""
    build_features(workspace, [as_of], raw_checked=True)
    apply_features(workspace)
    customers = read_snapshot(workspace, "profile", as_of)[["customer_id"]]
    frame = historical_features(workspace, customers.assign(event_timestamp=as_of), "churn")  # every group
    frame = frame.sort_values("customer_id").reset_index(drop=True)
    live = set(population(workspace, [as_of], contractual)["customer_id"])
    return frame, frame["customer_id"].isin(live).to_numpy()


def score_frame(
    models: dict[str, TrainedModel], frame: pd.DataFrame, in_population: np.ndarray, contractual: bool,
) -> pd.DataFrame:
    """The scores of every row of `frame` (features of customers at one date): scores for
    rows in the population, nulls elsewhere (see the module's docstring)."""
    result = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy()})
    result["stage"] = current_stage(frame, contractual).to_numpy()
    live = frame[in_population]
    for model, column in SCALAR_SCORES.items():
        result[column] = np.nan
        if model in models and len(live):
            result.loc[in_population, column] = models[model].predict(live)
    # Outside the population no model speaks: the stage stays what the rules say.
    result["predicted_stage"] = result["stage"].astype(object)
    result["stage_probabilities"] = None
    stage_model = models.get("stage")
    if stage_model is None:
        result.loc[in_population, "predicted_stage"] = None
    elif len(live):
        proba = stage_model.predict(live)
        classes = np.asarray(stage_model.classes)
        result.loc[in_population, "predicted_stage"] = classes[np.argmax(proba, axis=1)]
        result.loc[in_population, "stage_probabilities"] = [
            json.dumps(dict(zip(stage_model.classes, np.round(row, 6).tolist()))) for row in proba
        ]
    return result


def check_output_path(out: Path) -> None:
    """Refuse, before any work, an output path that cannot become a file."""
    if out.is_dir():
        raise ClmError(f"--out {out} is a folder; name a file in it, e.g. {out / 'scores.parquet'}.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ClmError(f"Cannot create the folder of --out {out}: {err.strerror}.") from None
    if not os.access(out.parent, os.W_OK):
        raise ClmError(f"Cannot write --out {out}: its folder {out.parent} is not writable.")


def write_parquet_atomically(frame: pd.DataFrame, out: Path) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ClmError(f"Cannot write --out {out}: {err.strerror or err}.") from None


def write_json(report: dict[str, object], path: Path) -> None:
    """A JSON report, written beside the target and renamed in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)


def score(workspace: Workspace, as_of: pd.Timestamp, out: Path, tracking_uri: str | None = None,
          catalogue: Catalogue | None = None, budget: float | None = None,
          exploration: float = DEFAULT_EXPLORATION) -> ScoreResult:
    check_output_path(out)
    manifest = require_valid(workspace)
    client = registry.connect(workspace, tracking_uri)
    champions = {m: registry.alias_version(client, m, registry.CHAMPION) for m in MODELS}
    if not any(champions.values()):
        held = {m: registry.alias_version(client, m, registry.CHALLENGER) for m in MODELS}
        if any(held.values()):
            versions = ", ".join(f"{m} v{v}" for m, v in held.items() if v)
            raise ClmError(
                f"No champion models in {workspace.root}: training registered {versions}, but none passed the "
                "promotion gate (reasons: `clm models list` and the training output). Promote one by hand, e.g. "
                f"`clm models promote {next(m for m, v in held.items() if v)} {next(v for v in held.values() if v)}`, "
                "or train on more data."
            )
        raise ClmError(f"No champion models in {workspace.root}: run `clm train` first.")
    contractual = manifest.business == "contractual"
    frame, in_population = features_at(workspace, as_of, contractual)
    models = {m: registry.load_version(client, m, v) for m, v in champions.items() if v is not None}
    result = score_frame(models, frame, in_population, contractual)
    result["as_of"] = as_of
    result = result[list(SCORE_COLUMNS)]
    for column in DECISION_COLUMNS:
        result[column] = None
    decided = None
    uplift_version = registry.alias_version(client, "uplift", registry.CHAMPION)
    if uplift_version is not None and in_population.any():
        customers = frame[in_population].reset_index(drop=True)
        scored = result[in_population].reset_index(drop=True)
        customers = with_consents(workspace, customers.assign(
            stage=scored["stage"].to_numpy(), churn_probability=scored["churn_probability"].to_numpy(),
            upsell_probability=scored["upsell_probability"].to_numpy()))
        decided = decide_batch(workspace, catalogue or load_catalogue(), customers, as_of,
                               registry.load_version(client, "uplift", uplift_version),
                               {m: models[m] for m in ("churn", "upsell") if m in models}, plan_prices(workspace),
                               budget, exploration)
        result = result.drop(columns=list(DECISION_COLUMNS)).merge(decided.frame, on="customer_id", how="left")
        champions["uplift"] = uplift_version

    write_parquet_atomically(result, out)
    return ScoreResult(out, len(result), int(in_population.sum()), champions, decided)
