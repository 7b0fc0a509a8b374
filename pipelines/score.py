"""Batch scoring with the champion models: what `clm score` runs.

Scores every customer known at the as-of date (signed up before it), from features as of
that date (built on demand), and writes one Parquet file, atomically. Customers whose
current stage is churned keep that stage and get null scores. A column is null
where its model has no champion for the workspace (e.g. upsell without subscriptions).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clm.contracts import require_valid
from clm.domain import Stage
from clm.errors import ClmError
from clm.stages import current_stage
from clm.workspace import Workspace
from features.build import build_features, read_snapshot
from features.store import apply as apply_features
from features.store import historical_features
from training import registry

SCORE_COLUMNS = (
    "customer_id", "churn_probability", "upsell_probability", "stage", "predicted_stage",
    "stage_probabilities", "clv", "as_of",
)


@dataclass
class ScoreResult:
    path: Path
    customers: int
    models: dict[str, str | None]  # model -> champion version used


def score(workspace: Workspace, as_of: pd.Timestamp, out: Path, tracking_uri: str | None = None) -> ScoreResult:
    manifest = require_valid(workspace)
    build_features(workspace, [as_of], raw_checked=True)
    apply_features(workspace)
    client = registry.connect(workspace, tracking_uri)
    champions = {m: registry.alias_version(client, m, registry.CHAMPION) for m in ("churn", "upsell", "stage", "clv")}
    if not any(champions.values()):
        raise ClmError(f"No champion models in {workspace.root}: run `clm train` first.")

    customers = read_snapshot(workspace, "profile", as_of)[["customer_id"]]
    entities = customers.assign(event_timestamp=as_of)
    frame = historical_features(workspace, entities, "churn")  # every group the workspace has
    result = pd.DataFrame({"customer_id": frame["customer_id"]})
    contractual = manifest.business == "contractual"
    result["stage"] = current_stage(frame, contractual).to_numpy()

    models = {m: registry.load_version(client, m, v) for m, v in champions.items() if v is not None}
    for model, column in (("churn", "churn_probability"), ("upsell", "upsell_probability"), ("clv", "clv")):
        result[column] = models[model].predict(frame) if model in models else np.nan
    stage_model = models.get("stage")
    if stage_model is not None:
        proba = stage_model.predict(frame)
        result["predicted_stage"] = np.asarray(stage_model.classes)[np.argmax(proba, axis=1)]
        result["stage_probabilities"] = [json.dumps(dict(zip(stage_model.classes, np.round(row, 6).tolist()))) for row in proba]
    else:
        result["predicted_stage"] = None
        result["stage_probabilities"] = None
    # Models score live customers; a churned one keeps its stage and gets no scores.
    gone = result["stage"] == Stage.CHURNED.value
    result.loc[gone, ["churn_probability", "upsell_probability", "clv"]] = np.nan
    result.loc[gone, "predicted_stage"] = Stage.CHURNED.value
    result.loc[gone, "stage_probabilities"] = None
    result["as_of"] = as_of
    result = result[list(SCORE_COLUMNS)].sort_values("customer_id").reset_index(drop=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    result.to_parquet(tmp, index=False)
    tmp.replace(out)
    return ScoreResult(out, len(result), champions)
