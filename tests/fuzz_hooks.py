"""Schemathesis hooks for fuzzing the real-time API (`SCHEMATHESIS_HOOKS=tests.fuzz_hooks`,
with CLM_WORKSPACE naming the served workspace).

The spec states each feature's range but cannot state the rules between features (a 7-day
count within the 30-day one, a price within reach of its plan's): a body drawn from the
schema that breaks one is a valid refusal (422), not a failure of the spec. Those bodies are
not drawn; the rules themselves are tested by name in tests/code/test_api.py."""
from __future__ import annotations

import os
from functools import cache
from typing import Any

import schemathesis

from clm.workspace import Workspace
from decisions.catalogue import load_catalogue
from serving.vocabulary import FeatureProblem, FeatureRules, vocabulary_of


@cache
def _rules() -> FeatureRules:
    vocabulary = vocabulary_of(Workspace.at(os.environ["CLM_WORKSPACE"]), load_catalogue())
    return FeatureRules({f.name: f.kind for f in vocabulary.features}, vocabulary)


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    """Drawn in every phase (examples, coverage, fuzzing, stateful)."""
    body = case.body
    if case.operation.path != "/score_features" or not isinstance(body, dict):
        return True
    features = body.get("features")
    if not isinstance(features, dict):
        return True
    try:
        _rules().check_together(features)
    except FeatureProblem:
        return False
    except (TypeError, KeyError, ValueError):  # a negative case's odd values: kept, the API must refuse them itself
        return True
    return True
