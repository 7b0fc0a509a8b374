"""The trained champions of each kind of business, shared by the tests that only read them.

- contractual: the main job's workspace (`clm run -n 2000`, the session's `main_job`);
- transactions only: the session's shop after `clm retrain` (`retrained_shop`).

A champion is judged on the base it would score: every customer in the model population
at the data's end, with the features the batch reads (`pipelines.score.features_at`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from clm.workspace import Workspace
from pipelines.score import features_at
from training import registry


@dataclass
class Champions:
    workspace: Workspace
    base: pd.DataFrame  # the model population at the data's end, with its features
    models: dict[str, object]  # model -> its champion (the uplift model: the latest version if none)


def champions_of(workspace: Workspace) -> Champions:
    manifest = workspace.read_manifest()
    frame, in_population = features_at(workspace, manifest.end, manifest.business == "contractual")
    client = registry.connect(workspace)
    models = {}
    for model in ("churn", "upsell", "stage", "clv", "uplift"):
        version = registry.alias_version(client, model, registry.CHAMPION) or registry.alias_version(
            client, model, registry.CHALLENGER)
        if version is not None:
            models[model] = registry.load_version(client, model, version)
    return Champions(workspace, frame[in_population].reset_index(drop=True), models)


@pytest.fixture(scope="session")
def contractual(main_job) -> Champions:
    ws, outcome = main_job
    assert outcome.exit_code == 0, outcome.output
    return champions_of(Workspace(ws))


@pytest.fixture(scope="session")
def shop(retrained_shop) -> Champions:
    ws, outcome = retrained_shop
    assert outcome.exit_code == 0, outcome.output
    return champions_of(ws)
