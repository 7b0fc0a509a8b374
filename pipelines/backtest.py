"""How good were the scores, on the whole base, at a date: what `clm backtest` runs.

As of D: fit and choose each model on data before D only, exactly as `clm train` would
(`training.train.fit_model`, `FittedModel.chosen` and `.shipped`; nothing registered and
no champion moved), score every customer in the model population at D
(`pipelines.score.score_frame`, as `clm score` would), and compare with what those
customers did in the label window [D, D + H) (`training.labels.outcome_labels`, the same
labels the models learn). "clm" is the model `clm train` would ship (the report names
which candidate it is); beside it, on the same customers, every candidate brought up to
date the same way: "lightgbm", "baseline" and, for a transactions-only churn model,
"bgnbd" and "pareto_nbd" (lifetimes' models fitted on the purchases before D, their
probability of no purchase within H, calibrated) and "stack"; and the peers:

- transactions-only workspaces, CLV: BG/NBD + Gamma-Gamma fitted on the purchases before D;
- simulated workspaces: the oracle, the true probability of what happened
  (`training.oracle`), on the rows where one exists, with clm on the same rows.

The report (and its JSON) holds, per target and per model name, roc_auc, pr_auc, ece,
lift and capture in the top decile, a reliability table and the number of customers
(Spearman and MAE for CLV). The figures are logged to MLflow (experiment `clm-backtest`).
"""
from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from clm.contracts import require_valid
from clm.domain import Table
from clm.errors import ClmError
from clm.workspace import Workspace
from pipelines.score import SCALAR_SCORES, features_at, score_frame
from training import btyd, registry
from training import evaluate as ev
from training.btyd_models import FIT_ERRORS
from training.config import TrainConfig
from training.frames import in_id_free_order, model_window
from training.labels import LabelConfig, NotEnoughHistory, outcome_labels
from training.oracle import oracle_probabilities
from training.train import FittedModel, fit_model

EXPERIMENT = "clm-backtest"
TARGETS = ("churn", "upsell", "clv")


def check_targets(targets: tuple[str, ...]) -> None:
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ClmError(f"--targets: unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}.")


@dataclass(frozen=True)
class BacktestConfig:
    as_of: pd.Timestamp
    horizon_days: int = 90
    targets: tuple[str, ...] = TARGETS
    tracking_uri: str | None = None


@dataclass
class BacktestReport:
    """What a backtest found. targets: target -> window_days, train_cutoffs and models ->
    model name -> figures (ROC AUC, PR AUC, ECE, lift and capture, the reliability table; for
    CLV Spearman and MAE); notes: what could not be judged, and why."""

    as_of: str
    horizon_days: int
    business: str
    source: str
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    customers_known: int = 0  # signed up before D
    customers_scored: int = 0  # in the model population at D

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON writes it (`--json`, the MLflow artifact)."""
        return asdict(self)


def binary_report(y: np.ndarray, p: np.ndarray) -> dict[str, object]:
    figures = ev.binary_metrics(y, p)
    keep = ("roc_auc", "pr_auc", "ece", "lift_top_decile", "capture_top_decile", "positive_rate", "log_loss", "brier")
    out: dict[str, object] = {k: figures[k] for k in keep}
    out["customers"] = int(len(y))
    out["reliability"] = ev.reliability_table(y, p).round(6).to_dict(orient="records")
    return out


def regression_report(y: np.ndarray, v: np.ndarray) -> dict[str, object]:
    figures = ev.regression_metrics(y, v)
    return {**{k: figures[k] for k in ("spearman", "mae", "gini", "mean_actual", "mean_predicted")}, "customers": int(len(y))}


def _check_window(as_of: pd.Timestamp, days: int, end: pd.Timestamp, what: str) -> str | None:
    if as_of + pd.Timedelta(days=days) > end:
        last = end - pd.Timedelta(days=days)
        return (f"{what}: the {days}-day outcome window after {as_of:%Y-%m-%d} runs past the data's end "
                f"({end:%Y-%m-%d}); choose --as-of {last:%Y-%m-%d} or earlier")
    return None


def _peers(
    workspace: Workspace, target: str, rows: pd.DataFrame, y: np.ndarray, as_of: pd.Timestamp, days: int,
    contractual: bool, clm_scores: np.ndarray, notes: list[str],
) -> dict[str, dict[str, object]]:
    """BTYD models (transactions only) and the oracle (simulated data), on the same customers."""
    out: dict[str, dict[str, object]] = {}
    if not contractual and target == "clv":
        transactions = workspace.read_table(Table.TRANSACTIONS, columns=["customer_id", "event_time", "amount", "status"])
        try:
            value = btyd.clv_values(transactions, as_of, days).reindex(rows["customer_id"]).fillna(0.0).to_numpy()
        except FIT_ERRORS as err:
            notes.append(f"clv: BG/NBD + Gamma-Gamma not fitted ({type(err).__name__}): left out")
        else:
            if np.isfinite(value).all():
                out["bgnbd_gg"] = regression_report(y, value)
            else:  # Gamma-Gamma on a few repeat buyers can diverge
                notes.append("clv: BG/NBD + Gamma-Gamma gave no finite values: left out")
    if target in ("churn", "upsell"):
        truth = oracle_probabilities(workspace, target, days, rows)
        if truth is not None and not len(truth):
            notes.append(f"{target}: no oracle at {as_of:%Y-%m-%d}: the simulator keeps its truth at month ends, "
                         "so choose a month's first day")
        if truth is not None and len(truth):
            on = rows[["customer_id", "event_timestamp"]].assign(_y=y, _clm=clm_scores).merge(
                truth, on=["customer_id", "event_timestamp"], how="inner")
            if on["_y"].nunique() == 2:
                out["oracle"] = binary_report(on["_y"].to_numpy(), on["truth"].to_numpy())
                out["oracle"]["clm_roc_auc_same_customers"] = ev.binary_metrics(on["_y"].to_numpy(), on["_clm"].to_numpy())["roc_auc"]
    return out


def backtest(
    workspace: Workspace, config: BacktestConfig, progress: Callable[[str], None] | None = None,
) -> BacktestReport:
    """Fit as of D, score the base at D, compare with what happened; see the module's docstring."""
    manifest = require_valid(workspace)
    contractual = manifest.business == "contractual"
    as_of, horizon = config.as_of, config.horizon_days
    refused = _check_window(as_of, horizon, manifest.end, "churn and upsell")
    if refused:
        raise ClmError(f"Cannot backtest as of {as_of:%Y-%m-%d}: {refused}.")
    check_targets(config.targets)

    train_config = TrainConfig(labels=LabelConfig(horizon_days=horizon), as_of=as_of)
    report = BacktestReport(f"{as_of:%Y-%m-%d}", horizon, manifest.business, manifest.source)
    notes, targets = report.notes, report.targets
    fitted: dict[str, FittedModel] = {}
    shared: dict[tuple, pd.DataFrame] = {}
    for target in config.targets:
        if target == "upsell" and not contractual:
            notes.append("upsell: no plans in a transactions-only workspace")
            continue
        try:
            _, days = model_window(workspace, target, train_config, as_of)
        except NotEnoughHistory as err:
            notes.append(f"{target}: {err}")
            continue
        refused = _check_window(as_of, days, manifest.end, target)
        if refused:
            notes.append(refused)
            continue
        if progress:
            progress(f"Fitting {target} as of {as_of:%Y-%m-%d}")
        fitted[target] = fit_model(workspace, target, train_config, contractual, as_of, shared)
    if not fitted:
        raise ClmError(f"Nothing to backtest as of {as_of:%Y-%m-%d}: " + "; ".join(notes))

    if progress:
        progress(f"Scoring the base as of {as_of:%Y-%m-%d}")
    frame, in_population = features_at(workspace, as_of, contractual)
    live = in_id_free_order(frame[in_population])  # sums and ties by position: the same whatever the ids
    report.customers_known = int(len(frame))
    report.customers_scored = int(len(live))
    for target, fit in fitted.items():
        if progress:
            progress(f"Comparing {target} with what happened")
        labels = outcome_labels(workspace, [as_of], LabelConfig(horizon, clv_days=fit.window_days), contractual)
        rows = live[["customer_id"]].assign(event_timestamp=as_of).merge(
            labels[["customer_id", target]], on="customer_id", how="left", validate="one_to_one")
        if rows[target].isna().any():  # the population rule is shared: this cannot happen
            raise ClmError(f"{target}: {int(rows[target].isna().sum())} scored customers have no outcome label.")
        y = rows[target].to_numpy(dtype=float)
        column = SCALAR_SCORES[target]
        chosen = fit.chosen()
        scores = {kind: score_frame({target: fit.shipped(kind)}, live, np.ones(len(live), bool), contractual)[
            column].to_numpy() for kind in fit.candidates}
        scores = {"clm": scores[chosen], **scores}
        make = regression_report if target == "clv" else binary_report
        if target != "clv" and len(np.unique(y)) < 2:
            notes.append(f"{target}: every customer had the same outcome; no ranking to judge")
            continue
        results = {name: make(y, s) for name, s in scores.items()}
        results.update(_peers(workspace, target, rows, y, as_of, fit.window_days, contractual, scores["clm"],
                              notes))
        targets[target] = {"window_days": fit.window_days, "train_cutoffs": fit.split_summary()["train_cutoffs"],
                           "shipped": chosen, "models": results}
    _log(workspace, config, report)
    return report


def flat_metrics(report: BacktestReport) -> dict[str, float]:
    """target_model_figure -> value, for every finite number in the report."""
    out = {}
    for target, block in report.targets.items():
        for name, figures in block["models"].items():
            for key, value in figures.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    out[f"{target}_{name}_{key}"] = float(value)
    return out


def _log(workspace: Workspace, config: BacktestConfig, report: BacktestReport) -> None:
    client = registry.connect(workspace, config.tracking_uri, create=True)
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(
        EXPERIMENT, artifact_location=registry.artifact_location(client, workspace, "backtest"))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"backtest as of {report.as_of}"):
        mlflow.log_params({"as_of": report.as_of, "horizon_days": report.horizon_days,
                           "business": report.business, "customers_scored": report.customers_scored})
        mlflow.log_metrics(flat_metrics(report))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backtest.json"
            path.write_text(json.dumps(report.as_dict(), indent=2))
            mlflow.log_artifact(str(path))
