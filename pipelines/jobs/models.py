"""The registry by hand: each model's versions, a promotion, a rollback, the audit trail.

Every change of a champion is recorded (who, when, why) by `training.registry`; these
jobs are what `clm models list|promote|rollback|history` run.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from mlflow.exceptions import MlflowException

from clm.errors import ClmError
from clm.workspace import Workspace
from training import audit, registry

# The test figures shown beside a version (metric names as logged).
SHOWN_FIGURES = ("test_roc_auc", "test_ece", "test_macro_f1", "test_spearman", "test_mae", "test_uplift_r2")


def require_model_store(workspace: Workspace, tracking_uri: str | None) -> None:
    """Models to read: a store by URI, or the workspace's own (said before anything is made)."""
    if not registry.has_store(workspace, tracking_uri):
        workspace.require_existing()
        registry.tracking_uri(workspace, tracking_uri)  # says there are no models yet, and how to train them


def shown_figures(metrics: dict[str, float]) -> dict[str, float]:
    """The key test figures of a version, by name without the `test_` prefix."""
    return {k.removeprefix("test_"): v for k, v in sorted(metrics.items()) if k in SHOWN_FIGURES}


def utc_minute(millis: int) -> str:
    """An MLflow timestamp (milliseconds since the epoch) as `YYYY-MM-DD HH:MM` in UTC."""
    return f"{pd.Timestamp(millis, unit='ms', tz='UTC'):%Y-%m-%d %H:%M}"


@dataclass
class VersionRow:
    model: str  # the registered name, e.g. clm-churn
    version: str
    aliases: list[str]
    created: str  # UTC, to the minute
    figures: dict[str, float]


def list_versions(workspace: Workspace, tracking_uri: str | None = None) -> list[VersionRow] | None:
    """Every registered version with its aliases and key test figures; None when the
    workspace has no model store yet (nothing is created by looking)."""
    if not registry.has_store(workspace, tracking_uri):
        workspace.require_existing()
        return None
    client = registry.connect(workspace, tracking_uri)
    rows = []
    for rm in client.search_registered_models(order_by=["name"]):
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        for mv in sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda v: int(v.version)):
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            rows.append(VersionRow(rm.name, str(mv.version), aliases_by_version.get(str(mv.version), []),
                                   utc_minute(mv.creation_timestamp), shown_figures(metrics)))
    return rows


@dataclass
class ChampionChange:
    model: str  # the registered name
    version: str
    changed: bool  # False: it was champion already


def version_number(text: str) -> str:
    """A version as the registry writes it: `03` is 3; anything but a whole number >= 1 refused."""
    if not text.strip().isdigit() or int(text) < 1:
        raise ClmError(f"VERSION '{text}' is not a version number: see `clm models list` (e.g. 3).")
    return str(int(text))


def promote(workspace: Workspace, model: str, version: str, reason: str = "", tracking_uri: str | None = None,
            command: str = "clm models promote") -> ChampionChange:
    """Make a version the champion by hand (model: a model key, version: a version number
    as text, `03` read as 3); only a version whose model loads."""
    require_model_store(workspace, tracking_uri)
    version = version_number(version)
    name = registry.registered_name(model)
    client = registry.connect(workspace, tracking_uri)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise ClmError(f"{name} has no version {version}; see `clm models list`.") from None
    registry.load_version(client, model, version)  # one whose files are gone is said now, not by the next batch
    changed = registry.set_champion(client, model, version, reason=reason, command=command)
    return ChampionChange(name, version, changed)


def rollback(workspace: Workspace, model: str, reason: str = "", tracking_uri: str | None = None,
             command: str = "clm models rollback") -> ChampionChange:
    """Restore the previous champion of a model."""
    require_model_store(workspace, tracking_uri)
    client = registry.connect(workspace, tracking_uri)
    try:
        version = registry.rollback(client, model, reason=reason, command=command)
    except MlflowException:
        raise ClmError(f"No registered model {registry.registered_name(model)}; run `clm train` first.") from None
    return ChampionChange(registry.registered_name(model), version, True)


@dataclass
class History:
    model: str  # the registered name
    events: list[audit.ChampionEvent]  # oldest first


def history(workspace: Workspace, model: str, tracking_uri: str | None = None) -> History:
    """Every change of a model's champion, oldest first."""
    require_model_store(workspace, tracking_uri)
    client = registry.connect(workspace, tracking_uri)
    name = registry.registered_name(model)
    try:
        return History(name, audit.history(client, name))
    except MlflowException:
        raise ClmError(f"No registered model {name}; run `clm train` first.") from None
