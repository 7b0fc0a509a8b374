"""MLflow: tracking, the model registry and champion/challenger aliases.

Embedded default: a SQLite backend and local artifacts in WORKSPACE/mlflow; set
`MLFLOW_TRACKING_URI` (or pass tracking_uri) to use a server. Registered models are
`clm-<model>`. A new version gets the alias `challenger`; it becomes `champion` only
through `decide_promotion` (better on the same latest window by a margin, and sane: finite
predictions, a positive calibration slope, calibrated) or by hand (`promote`). The first
version becomes champion if it is sane. Every change of champion is recorded in the registered model's tag
`champion_history`, which `rollback` walks back, and in the audit trail (`training.audit`):
who, when, how (the gate or by hand), why and on which figures.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import warnings
from contextlib import closing
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
import requests
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.tracking import MlflowClient
from mlflow.utils.logging_utils import disable_logging, enable_logging

from clm.errors import ClmError
from clm.files import sqlite_damage
from clm.workspace import Workspace, process_alive
from training import audit
from training.evaluate import (
    GATE_METRIC,
    binary_metrics,
    chance_ece,
    expected_calibration_error,
    multiclass_metrics,
    regression_metrics,
)
from training.models import BINARY, MULTICLASS, REGRESSION, TrainedModel, calibrated
from training.names import MODEL_NAMES, registered_name
from training.uri import check_tracking_uri

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from training.uplift import UpliftModel

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"
DEFAULT_MARGIN = {"roc_auc": 0.002, "macro_f1": 0.005, "spearman": 0.002}
MAX_ECE = 0.05


# The user's setting, read once: mlflow.set_tracking_uri() itself writes this variable, so
# reading it later would carry one workspace's store over to the next in the same process.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri(workspace: Workspace, explicit: str | None = None, create: bool = False) -> str:
    """The store to use: --tracking-uri, else $MLFLOW_TRACKING_URI, else the workspace's own
    SQLite store, made only when `create` (training): a command that reads models never
    leaves an empty store behind."""
    if explicit:
        return check_tracking_uri(explicit, "--tracking-uri")
    if USER_TRACKING_URI:
        return check_tracking_uri(USER_TRACKING_URI, "$MLFLOW_TRACKING_URI")
    if create:
        (workspace.root / "mlflow").mkdir(parents=True, exist_ok=True)
    elif not embedded_db(workspace).exists():
        raise ClmError(f"No models in workspace '{workspace.root}' yet ({embedded_db(workspace)} does not exist): "
                       "train them with `clm train` (or `clm run`).")
    return embedded_uri(workspace)


def embedded_db(workspace: Workspace) -> Path:
    return workspace.root / "mlflow" / "mlflow.db"


def has_store(workspace: Workspace, explicit_uri: str | None = None) -> bool:
    """Whether there is a model store to read: a URI given, or the workspace's own made."""
    return bool(explicit_uri or USER_TRACKING_URI) or embedded_db(workspace).exists()


def check_sqlite_store(uri: str, create: bool = False) -> None:
    """A SQLite store must be a sound database (holding MLflow's tables, unless `create`):
    a truncated, overwritten or emptied file is said in one sentence, with what to do,
    instead of failing deep inside MLflow (or being filled with empty tables)."""
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.parent.is_dir():
        raise ClmError(f"The tracking URI {uri} names a file in a folder that does not exist ({path.parent}): "
                       "create the folder first, or correct the URI.")
    if not create and not path.is_file():
        raise ClmError(f"No MLflow store at {path} (tracking URI {uri}): no models to read there. Train into it "
                       f"first (`clm train --tracking-uri {uri}`), or correct the URI.")
    problem = sqlite_damage(path, None if create else "registered_models")
    if problem is not None:
        raise ClmError(f"The MLflow store {path} is damaged ({problem}): its models cannot be read. Restore it from "
                       f"a backup; or move it aside (e.g. `mv {path} {path}.damaged`) and train again with "
                       "`clm train`.")


def embedded_uri(workspace: Workspace) -> str:
    """The workspace's own store: SQLite beside its artifacts."""
    return f"sqlite:///{(workspace.root / 'mlflow').resolve() / 'mlflow.db'}"


def artifacts_root(workspace: Workspace) -> Path:
    return (workspace.root / "mlflow" / "artifacts").resolve()


# Where the embedded store writes absolute artifact URIs: (table, column).
ARTIFACT_URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)


def rebase_artifacts(workspace: Workspace) -> int:
    """Point the embedded store's artifact URIs at this workspace's artifacts folder.

    MLflow records absolute artifact URIs. In a copied or moved workspace they still name
    the original folder: runs would write there, and a moved workspace could not load its
    models. Rewrites every URI under another folder's `mlflow/artifacts` to this one's, in
    one transaction; returns how many experiments were rebased (0 when already here).
    """
    db = workspace.root.resolve() / "mlflow" / "mlflow.db"
    if not db.exists():
        return 0
    here = artifacts_root(workspace).as_uri()
    marker = "/mlflow/artifacts/"
    with closing(sqlite3.connect(db, timeout=30)) as conn, conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return 0
        locations = [loc for (loc,) in conn.execute("SELECT artifact_location FROM experiments") if loc]
        elsewhere = {loc[: loc.rindex(marker) + len(marker) - 1] for loc in locations if marker in loc} - {here}
        default = conn.execute("SELECT artifact_location FROM experiments WHERE name = 'Default'").fetchone()
        if not elsewhere and (default is None or str(default[0]).startswith(here)):
            return 0  # already here: nothing written (a read-only store stays readable)
        for old in elsewhere:
            for table, column in ARTIFACT_URI_COLUMNS:
                if table in tables:
                    conn.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE substr({column}, 1, ?) = ?",
                        (here, len(old) + 1, len(old) + 1, old + "/"),
                    )
        # MLflow's own Default experiment points at ./mlruns of whichever folder created it.
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE name = 'Default' "
                     "AND substr(artifact_location, 1, ?) != ?", (f"{here}/0", len(here), here))
    return len(elsewhere)


SERVER_TIMEOUT_SECONDS = 10


def check_server(uri: str) -> None:
    """A tracking server must answer its health check, within seconds: MLflow itself retries
    an unreachable one for minutes without a word."""
    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_SECONDS).raise_for_status()
    except requests.RequestException as err:
        raise ClmError(
            f"Cannot reach the MLflow tracking server at {uri} ({type(err).__name__}). Check --tracking-uri or "
            "$MLFLOW_TRACKING_URI, or leave both unset to use the workspace's own store."
        ) from None


def connect(workspace: Workspace, explicit_uri: str | None = None, create: bool = False) -> MlflowClient:
    """A client of the model store (see `tracking_uri`; `create` for a command that trains)."""
    uri = tracking_uri(workspace, explicit_uri, create)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif uri.startswith("sqlite:///"):
        check_sqlite_store(uri, create)
        if uri == embedded_uri(workspace):
            rebase_artifacts(workspace)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment(client: MlflowClient, workspace: Workspace, model: str) -> str:
    name = registered_name(model)  # one experiment per model, named like its registered model
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(client, workspace, model))


def artifact_location(client: MlflowClient, workspace: Workspace, name: str) -> str | None:
    """Local artifacts beside the embedded SQLite store; a server keeps its own."""
    if client.tracking_uri.startswith("sqlite:"):
        return (artifacts_root(workspace) / name).as_uri()
    return None


def run_owner_tags(workspace: Workspace) -> dict[str, str]:
    """Who is running a training run: the workspace, host and process."""
    return {"workspace": str(workspace.root.resolve()), "clm.host": socket.gethostname(), "clm.pid": str(os.getpid())}


def fail_abandoned_runs(client: MlflowClient, workspace: Workspace) -> list[str]:
    """Runs of this workspace still RUNNING whose process on this host has ended (a killed
    `clm train`): marked FAILED, with the reason in the tag `clm.failure`. Returns their ids."""
    experiments = [e.experiment_id for e in client.search_experiments() if e.name.startswith("clm-")]
    if not experiments:
        return []
    runs = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    ended = []
    for run in runs:
        tags = run.data.tags
        started_here = tags.get("workspace") == str(workspace.root.resolve()) and tags.get("clm.host") == socket.gethostname()
        pid = tags.get("clm.pid", "")
        if started_here and pid.isdigit() and not process_alive(int(pid)):
            client.set_tag(run.info.run_id, "clm.failure", "its process ended before the run finished (killed?)")
            client.set_terminated(run.info.run_id, status="FAILED")
            ended.append(run.info.run_id)
    return ended


class ClmPyfunc(PythonModel):
    """MLflow wrapper: predict returns the model's scores as a frame (`predict_frame`: a
    TrainedModel's scores, or an UpliftModel's effects)."""

    def __init__(self, model: TrainedModel | UpliftModel):
        self.model = model

    # MLflow reads these hints (typing.get_type_hints): each must resolve at run time.
    def predict(self, context: PythonModelContext | None, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.model.predict_frame(model_input)


# What a logged model needs to load, pinned to the versions it was trained with (besides
# clm itself, whose classes it pickles by reference). Given explicitly: MLflow's own
# inference of them starts a subprocess that imports the model, 7 s of every 10 s log.
MODEL_REQUIREMENTS = ("mlflow", "lightgbm", "scikit-learn", "lifetimes", "pandas", "numpy", "pyarrow", "cloudpickle")


def pip_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def log_model(model: TrainedModel | UpliftModel, example: pd.DataFrame, model_name: str) -> str:
    """Log and register a version (in the active run); returns the version number. The
    example rows give the signature its columns and types only: no row is stored with the
    model (customers' data stays out of artifacts)."""
    signature = mlflow.models.infer_signature(example, ClmPyfunc(model).predict(None, example))
    disable_logging()  # MLflow's "Successfully registered" notices: clm reports the version itself
    try:
        with warnings.catch_warnings():  # MLflow asks for an input example: no rows leave the workspace's data
            warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=ClmPyfunc(model), signature=signature,
                registered_model_name=registered_name(model_name), pip_requirements=pip_requirements(),
            )
    finally:
        enable_logging()
    return str(info.registered_model_version)


def load_version(client: MlflowClient, model: str, version: str, check_requirements: bool = True) -> TrainedModel:
    """A registered version's model; one whose files cannot be loaded (damaged, removed) is
    a ClmError naming it and what to do. `check_requirements`: MLflow's warning when the
    packages the model was logged with differ from those installed."""
    uri = f"models:/{registered_name(model)}/{version}"
    try:
        return mlflow.pyfunc.load_model(uri, suppress_warnings=not check_requirements).unwrap_python_model().model
    except Exception as err:  # noqa: BLE001 - unpickling and MLflow's loaders fail in many ways
        raise ClmError(
            f"{registered_name(model)} version {version} cannot be loaded ({type(err).__name__}: {str(err)[:160]}): "
            f"its files in the model store are damaged or gone. Roll back to the previous champion "
            f"(`clm models rollback {model}`) or train a new version (`clm train --models {model}`)."
        ) from None


def alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(registered_name(model), alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def champion_versions(client: MlflowClient) -> dict[str, str | None]:
    """The registry's champion version of every model (None: none)."""
    return {m: alias_version(client, m, CHAMPION) for m in MODEL_NAMES}


def require_champions(workspace: Workspace, client: MlflowClient) -> dict[str, str | None]:
    """The champion versions, when at least one model has one (scores, or decisions: the
    uplift champion alone decides); otherwise a ClmError saying what to do."""
    versions = champion_versions(client)
    if any(versions.values()):
        return versions
    held = {m: alias_version(client, m, CHALLENGER) for m in MODEL_NAMES}
    if any(held.values()):
        said = "; ".join(f"{m} v{v} ({gate_reason(client, m, v) or 'no gate decision'})" for m, v in held.items() if v)
        model, version = next((m, v) for m, v in held.items() if v)
        raise ClmError(
            f"No champion models in {workspace.root}, so nobody can be scored: training registered challengers "
            f"that did not pass the promotion gate: {said}. Promote one by hand if you accept it, e.g. "
            f"`clm models promote {model} {version}`, or train on more data."
        )
    raise ClmError(f"No champion models in {workspace.root}: run `clm train` first.")


def load_champion(client: MlflowClient, model: str) -> TrainedModel | None:
    version = alias_version(client, model, CHAMPION)
    return None if version is None else load_version(client, model, version)


def _history(client: MlflowClient, model: str) -> list[str]:
    tags = client.get_registered_model(registered_name(model)).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def champion_horizon(client: MlflowClient, model: str) -> int | None:
    """The label horizon (days) the champion was trained for, if it has one on record."""
    version = alias_version(client, model, CHAMPION)
    if version is None:
        return None
    run_id = client.get_model_version(registered_name(model), version).run_id
    value = client.get_run(run_id).data.params.get("horizon_days") if run_id else None
    return int(float(value)) if value not in (None, "None", "") else None


def version_figures(client: MlflowClient, model: str, version: str) -> dict[str, float]:
    """A version's test figures, from its training run."""
    run_id = client.get_model_version(registered_name(model), version).run_id
    metrics = client.get_run(run_id).data.metrics if run_id else {}
    return {k: v for k, v in metrics.items() if k.startswith("test_")}


def set_champion(client: MlflowClient, model: str, version: str, *, how: str = audit.BY_HAND, reason: str = "",
                 command: str = "", figures: dict[str, float] | None = None) -> bool:
    """Make `version` champion, and record it in the history rollback walks back and in the
    audit trail (how: the gate or by hand, why, on which figures: the version's test
    figures unless given). False, and nothing recorded, if it already is champion."""
    name = registered_name(model)
    client.get_model_version(name, version)  # raises if it does not exist
    previous = alias_version(client, model, CHAMPION)
    if previous == str(version):
        return False
    client.set_registered_model_alias(name, CHAMPION, version)
    history = _history(client, model) + [str(version)]
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    shown = {**version_figures(client, model, str(version)), **(figures or {})}
    audit.record(client, name, audit.ChampionEvent(audit.PROMOTE, str(version), previous, how, reason, command,
                                                   figures=shown))
    return True


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    challenger_score: float
    champion_score: float | None


# A classic model a challenger may not fall below on the same test customers (given its
# figures): model -> (the figure, the classic's key in ModelReport.btyd, its name).
CLASSIC_FLOOR = {"clv": ("spearman", "bgnbd_gg_spearman", "BG/NBD + Gamma-Gamma")}


def decide_promotion(
    challenger: TrainedModel, champion: TrainedModel | None, test: pd.DataFrame, margin: float | None = None,
    baseline: TrainedModel | None = None, classic: dict[str, float] | None = None,
    horizons: tuple[int, int | None] | None = None,
) -> GateDecision:
    """Champion/challenger on the same latest window: promote if sane (and, given its
    baseline, better than it: a first version too; given the classic models' figures on
    the same customers, not below the one in CLASSIC_FLOOR) and better than the champion
    by margin. horizons: (the challenger's, the champion's) label horizon in days; a
    champion predicting another horizon is never replaced by the gate (what the scores
    mean would change without a word), only by hand."""
    task = challenger.spec.task
    metric, direction = GATE_METRIC[task]
    margin = DEFAULT_MARGIN[metric] if margin is None else margin
    y = test[challenger.spec.label].to_numpy()

    def score(m: TrainedModel, p: np.ndarray) -> float:
        if task == BINARY:
            return binary_metrics(y, p)[metric]
        if task == MULTICLASS:
            return multiclass_metrics(y.astype(str), p, m.classes)[metric]
        return regression_metrics(y, p)[metric]

    predictions = challenger.predict(test)
    if not np.all(np.isfinite(predictions)):
        return GateDecision(False, "challenger predicts NaN or infinite values", float("nan"), None)
    if np.ptp(predictions, axis=0).max() <= 0:
        return GateDecision(False, "challenger predicts the same value for every customer: it ranks nobody "
                            "(too little data to learn from?)", float("nan"), None)
    challenger_score = score(challenger, predictions)
    if task == BINARY:  # sanity holds for the first version too
        slope = challenger.calibrator.slope if challenger.calibrator is not None else 1.0
        if not slope > 0:
            return GateDecision(False, f"calibration slope {slope:.3f} is not positive: it would invert the "
                                "model's ranking (the validation window contradicts the training data)", challenger_score, None)
        # What ships is recalibrated on this window, the latest matured one (a base drifts:
        # a calibration from an older window is off by the scoring date); what that cannot
        # mend is refused.
        recalibrated = calibrated(challenger, test).predict(test)
        ece, bound = expected_calibration_error(y.astype(float), recalibrated), ece_bound(recalibrated)
        if ece > bound:
            return GateDecision(False, f"challenger is badly calibrated even recalibrated on the latest window "
                                f"(ECE {ece:.3f} > {bound:.3f})", challenger_score, None)
    if baseline is not None:
        simple = score(baseline, baseline.predict(test))
        if not direction * (challenger_score - simple) > 0:
            return GateDecision(False, f"{metric} {challenger_score:.4f} is no better than its scikit-learn baseline's "
                                f"{simple:.4f} on the test window: kept as challenger (promote it by hand "
                                "with `clm models promote` if you still want it)", challenger_score, None)
    floor = CLASSIC_FLOOR.get(challenger.spec.name)
    if floor is not None and classic and np.isfinite(classic.get(floor[1], np.nan)):
        figure, key, name = floor
        own = (regression_metrics if task == REGRESSION else binary_metrics)(y, predictions)[figure]
        if not own >= classic[key]:
            return GateDecision(False, f"{figure} {own:.4f} is below {name}'s {classic[key]:.4f} on the same "
                                "customers: kept as challenger", challenger_score, None)
    if champion is None:
        return GateDecision(True, "first version", challenger_score, None)
    if horizons is not None and horizons[1] is not None and horizons[0] != horizons[1]:
        return GateDecision(False, f"its horizon ({horizons[0]} days) is not the champion's ({horizons[1]} days): "
                            "promoting it would change what the scores mean; promote it by hand (`clm models "
                            "promote`) if you mean to", challenger_score, None)
    theirs = score(champion, champion.predict(test))
    better = direction * (challenger_score - theirs) > margin
    verdict = "better" if better else "not better"
    return GateDecision(better, f"{metric} {challenger_score:.4f} vs champion {theirs:.4f}: {verdict} by margin {margin}", challenger_score, theirs)


GATE_TAG, GATE_REASON_TAG = "gate_decision", "gate_reason"
GATE_PASSED, GATE_FAILED = "promote", "keep champion"


def record_gate(passed: bool, reason: str) -> None:
    """The gate's verdict on the active run's new version. Promotion itself waits until
    every model of the training session is trained (`promote_gate_passers`), so that a run
    killed midway has changed no champion."""
    mlflow.set_tags({GATE_TAG: GATE_PASSED if passed else GATE_FAILED, GATE_REASON_TAG: reason})


def gate_reason(client: MlflowClient, model: str, version: str) -> str:
    """What the promotion gate said of a version ("" if it never judged it)."""
    run_id = client.get_model_version(registered_name(model), version).run_id
    return client.get_run(run_id).data.tags.get(GATE_REASON_TAG, "") if run_id else ""


def latest_version(client: MlflowClient, model: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name='{registered_name(model)}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


def awaiting_promotion(client: MlflowClient, model: str) -> tuple[str, str] | None:
    """(version, gate reason) of the model's latest version if its gate said promote and it
    has never been champion: a training session ended, or was killed, before promoting it.
    A version once promoted and then rolled back by hand is not promoted again."""
    name = registered_name(model)
    latest = latest_version(client, model)
    if latest is None:
        return None
    tags = client.get_run(latest.run_id).data.tags if latest.run_id else {}
    if tags.get(GATE_TAG) != GATE_PASSED or alias_version(client, model, CHAMPION) == str(latest.version):
        return None
    if audit.ever_promoted(audit.history(client, name), str(latest.version)):
        return None
    return str(latest.version), tags.get(GATE_REASON_TAG, "")


def promote_gate_passers(client: MlflowClient, models: list[str], command: str) -> dict[str, str]:
    """Promote every model's version awaiting promotion; returns {model: version promoted}."""
    promoted = {}
    for model in models:
        waiting = awaiting_promotion(client, model)
        if waiting is not None and set_champion(client, model, waiting[0], how=audit.BY_GATE, reason=waiting[1],
                                                command=command):
            promoted[model] = waiting[0]
    return promoted


def ece_bound(p: np.ndarray) -> float:
    """The ECE the gate tolerates: MAX_ECE of real miscalibration, plus twice what chance
    alone gives at this sample size (`chance_ece`): a small window is not refused for its noise."""
    return MAX_ECE + 2 * chance_ece(p)


def rollback(client: MlflowClient, model: str, *, reason: str = "", command: str = "") -> str:
    """Make the previous champion champion again (recorded in the audit trail); returns its version."""
    name = registered_name(model)
    history = _history(client, model)
    if len(history) < 2:
        raise ClmError(f"{name} has no previous champion to roll back to (champion history: {history or 'empty'}).")
    previous, current = history[-2], history[-1]
    load_version(client, model, previous)  # one whose files are gone is said now, not by the next batch
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[:-1]))
    audit.record(client, name, audit.ChampionEvent(
        audit.ROLLBACK, previous, current, audit.BY_HAND, reason or f"rolled back from version {current}", command,
        figures=version_figures(client, model, previous)))
    return previous
