"""Train, evaluate, log and register the models: what `clm train` runs.

For each model: cutoffs whose label window ends by as_of (time travel: nothing after
as_of is used), a time split with gaps, features from Feast's point-in-time retrieval,
the candidates (LightGBM, its baseline and, for a transactions-only churn model, BG/NBD,
Pareto/NBD, their stack and the blend of all: `training.candidates`), the one chosen on the latest window,
test figures (and the oracle's on simulated data), plots and the model in MLflow, the
chosen one brought up to date as the new version (`challenger`), and the promotion gate.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import mlflow
import numpy as np
import pandas as pd

from clm.contracts import require_valid
from clm.domain import STAGES, Table
from clm.errors import ClmError
from clm.workspace import Workspace
from features.build import build_features
from features.feast_repo import MODEL_GROUPS
from features.store import apply as apply_features
from training import btyd, drift, plots, registry
from training import candidates as cand
from training import evaluate as ev
from training.btyd_models import BTYD_KINDS
from training.config import (
    INPUTS_TAG,
    ModelReport,
    TrainConfig,
    data_fingerprint,
    training_inputs,
)
from training.frames import KEYS, feature_names, model_window, prepare_frames, split_parts
from training.labels import NotEnoughExamples, NotEnoughHistory, Split
from training.models import (
    BINARY,
    MULTICLASS,
    SPECS,
    ModelSpec,
    TrainedModel,
    calibrated,
    fit_baseline,
    fit_lightgbm,
)
from training.names import MODEL_NAMES
from training.oracle import oracle_probabilities
from training.train_uplift import train_uplift

MODELS = MODEL_NAMES
# Models whose label looks H days ahead (--horizon-days): a champion is replaced by the
# gate only with a model of the same horizon. (CLV's window follows the history's length.)
HORIZON_MODELS = ("churn", "upsell", "stage")


def _oracle(workspace: Workspace, model: TrainedModel, test: pd.DataFrame, horizon: int) -> dict[str, float]:
    """The simulator's oracle on the test rows where it is the probability of what
    happened (`training.oracle`), and the model on those same rows (simulated data only)."""
    label = model.spec.label
    truth = oracle_probabilities(workspace, label, horizon, test)
    if truth is None:
        return {}
    rows = test.merge(truth, on=KEYS, how="inner")
    if rows[label].nunique() < 2:
        return {}
    y = rows[label].to_numpy()
    figures = ev.binary_metrics(y, rows["truth"].to_numpy())
    figures["model_roc_auc"] = ev.binary_metrics(y, model.predict(rows))["roc_auc"]
    figures["rows"] = float(len(rows))
    return figures


def _up_to_date(client: mlflow.tracking.MlflowClient, model: str, inputs: str) -> ModelReport | None:
    """A report for a model whose latest version was trained on these inputs, else None."""
    latest = registry.latest_version(client, model)
    # clm's versions are logged from runs (registry.log_model): run_id is set.
    if latest is None or client.get_run(cast(str, latest.run_id)).data.tags.get(INPUTS_TAG) != inputs:
        return None
    return ModelReport(model, False, f"up to date: version {latest.version} was trained on these data and settings",
                       version=str(latest.version), up_to_date=True)


@dataclass
class FittedModel:
    """A model fitted as of a date, with everything its evaluation needs."""

    model: str
    lgbm: TrainedModel
    baseline: TrainedModel
    features: list[str]
    parts: dict[str, pd.DataFrame]  # train, valid, test rows with features and labels
    split: Split
    window_days: int  # label window: the horizon, or CLV's (possibly shortened) window
    # Every candidate by kind (lightgbm, baseline, and for a transactions-only churn model
    # bgnbd, pareto_nbd, stack, blend), calibrated on the validation window: what the test judges.
    candidates: dict[str, TrainedModel] = field(default_factory=dict)
    btyd: cand.BtydCandidates = field(default_factory=cand.BtydCandidates)

    def __post_init__(self) -> None:
        self.candidates = {"lightgbm": self.lgbm, "baseline": self.baseline, **self.candidates}

    def registered(self, kind: str) -> TrainedModel:
        """The candidate of that kind, as judged on the test window."""
        return self.candidates[kind]

    def chosen(self) -> str:
        """The kind that ships (`training.candidates.choose`, on the test window: the latest)."""
        return cand.choose(self.candidates, self.parts["test"], registry.ece_bound)

    def shipped(self, kind: str) -> TrainedModel:
        """The candidate of that kind brought up to date: what is registered."""
        return cand.shipped(self.candidates[kind], self.parts, self.btyd.at_as_of)

    def split_summary(self) -> dict[str, object]:
        s = self.split
        return {
            "label_days": self.window_days,
            "train_cutoffs": f"{s.train[0]:%Y-%m-%d}..{s.train[-1]:%Y-%m-%d} ({len(s.train)})",
            "valid_cutoff": f"{s.valid:%Y-%m-%d}", "test_cutoff": f"{s.test:%Y-%m-%d}",
            "rows": {k: len(v) for k, v in self.parts.items()},
            "gaps": "every training and validation label window ends by the next part's cutoff",
        }


def fit_model(
    workspace: Workspace, model: str, config: TrainConfig, contractual: bool, as_of: pd.Timestamp,
    shared: dict[tuple, pd.DataFrame] | None = None,
) -> FittedModel:
    """LightGBM and its baseline for one model, fitted on data before as_of only.
    Raises NotEnoughHistory when the history allows no honest split."""
    split, window = model_window(workspace, model, config, as_of)
    if model == "clv":
        config = replace(config, labels=replace(config.labels, clv_days=window))
    build_features(workspace, split.all, raw_checked=True)
    apply_features(workspace)
    frame = prepare_frames(workspace, model, split, config, contractual, shared)
    parts = split_parts(frame, split)
    spec = SPECS[model]
    check_enough_examples(spec, parts)
    # A column with no value at all (e.g. segment in a transactions-only export) teaches nothing.
    features = [f for f in feature_names(frame) if parts["train"][f].notna().any()]
    lgbm = fit_lightgbm(spec, parts["train"], parts["valid"], features)
    base = calibrated(fit_baseline(spec, parts["train"], features), parts["valid"])
    btyd_found = cand.BtydCandidates()
    if model == "churn" and not contractual:
        transactions = workspace.read_table(Table.TRANSACTIONS, columns=["customer_id", "event_time", "amount", "status"])
        cutoffs = {"train": split.train, "valid": [split.valid], "test": [split.test]}
        btyd_found = cand.btyd_candidates(transactions, parts, features, cutoffs, as_of, window, lgbm)
    found = cand.with_blend({"lightgbm": lgbm, "baseline": base, **btyd_found.judged}, parts["valid"],
                            btyd_found.on_valid)
    return FittedModel(model, lgbm, base, features, parts, split, window, found, btyd_found)


MIN_TRAIN_EXAMPLES = 20  # of each outcome of a binary label, or rows of a regression target


def check_enough_examples(spec: ModelSpec, parts: dict[str, pd.DataFrame]) -> None:
    """Enough examples to learn and to judge: a binary label needs MIN_TRAIN_EXAMPLES of each
    outcome in training and both outcomes in the validation (calibration) and test windows;
    the stage model two stages in training; CLV MIN_TRAIN_EXAMPLES rows and a label that varies.
    Raises NotEnoughExamples saying what was found and what would help."""
    label, train = spec.label, parts["train"]
    advice = "More customers or a longer history would help."
    if spec.task == BINARY:
        positives, negatives = int(train[label].sum()), int((1 - train[label]).sum())
        if min(positives, negatives) < MIN_TRAIN_EXAMPLES:
            raise NotEnoughExamples(
                f"the training windows hold {positives:,} customer(s) with {label} and {negatives:,} without: "
                f"at least {MIN_TRAIN_EXAMPLES} of each are needed. {advice}")
        for part in ("valid", "test"):
            if parts[part][label].nunique() < 2:
                raise NotEnoughExamples(
                    f"the {part} window ({len(parts[part]):,} customers) holds only one outcome of {label}, so "
                    f"the model cannot be {'calibrated' if part == 'valid' else 'judged'}. {advice}")
    elif spec.task == MULTICLASS:
        if train[label].nunique() < 2:
            raise NotEnoughExamples(f"every training example has the same {label}: nothing to tell apart. {advice}")
    elif len(train) < MIN_TRAIN_EXAMPLES or train[label].nunique() < 2:
        raise NotEnoughExamples(
            f"the training windows hold {len(train):,} row(s) with {train[label].nunique()} distinct {label} "
            f"value(s): at least {MIN_TRAIN_EXAMPLES} varied rows are needed. {advice}")


def train_model(
    workspace: Workspace, model: str, config: TrainConfig, contractual: bool, as_of: pd.Timestamp,
    client: mlflow.tracking.MlflowClient, shared: dict[tuple, pd.DataFrame] | None = None,
) -> ModelReport:
    if model == "upsell" and not contractual:
        return ModelReport(model, False, "no plans in a transactions-only workspace: upsell is not trained",
                           applies=False)
    try:
        fitted = fit_model(workspace, model, config, contractual, as_of, shared)
    except (NotEnoughHistory, NotEnoughExamples) as err:
        return ModelReport(model, False, str(err))
    parts, window = fitted.parts, fitted.window_days
    btyd_note = "; ".join(fitted.btyd.notes)
    kind = fitted.chosen()
    candidate = fitted.registered(kind)
    report = ModelReport(model, True, metrics=cand.figures(candidate, parts["test"]),
                         baseline=cand.figures(fitted.baseline, parts["test"]), registered_kind=kind,
                         candidates={k: cand.figures(m, parts["test"]) for k, m in fitted.candidates.items()})
    if candidate.spec.task == BINARY:
        report.oracle = _oracle(workspace, candidate, parts["test"], window)
        # The ECE the gate tolerates on a window of this size (MAX_ECE beyond chance), beside test_ece.
        report.metrics["ece_bound"] = registry.ece_bound(candidate.predict(parts["test"]))
    if not contractual and model == "churn":
        report.btyd = {f"{k}_roc_auc": report.candidates[k]["roc_auc"] for k in BTYD_KINDS if k in report.candidates}
    if not contractual and model == "clv":
        transactions = workspace.read_table(Table.TRANSACTIONS, columns=["customer_id", "event_time", "amount", "status"])
        report.btyd, btyd_note = btyd.clv_comparison(transactions, parts["test"], fitted.split.test, window)
    if model == "stage":
        test = parts["test"]
        report.metrics["stays_the_same_macro_f1"] = ev.stays_the_same_f1(
            test.stage.to_numpy(), test.current_stage.to_numpy(), list(STAGES)
        )
    report.split = fitted.split_summary()
    notes = [btyd_note] if btyd_note else []
    if model == "clv" and window < config.labels.clv_days:
        notes.append(f"CLV over {window} days: the history is too short for a {config.labels.clv_days}-day "
                     "window without overlap")
    if notes:
        report.split["note"] = "; ".join(notes)

    _log_and_register(workspace, client, fitted, report, config, as_of)
    return report


def _log_and_register(
    workspace: Workspace, client: mlflow.tracking.MlflowClient, fitted: FittedModel, report: ModelReport,
    config: TrainConfig, as_of: pd.Timestamp,
) -> None:
    """One MLflow run: parameters, lineage, figures, plots, the model as `challenger`, and
    the promotion gate's decision (the report records version and outcome)."""
    lgbm, features, parts, window = fitted.lgbm, fitted.features, fitted.parts, fitted.window_days
    model, spec = report.model, lgbm.spec
    candidate = fitted.registered(report.registered_kind)  # as judged on the test window
    ready = fitted.shipped(report.registered_kind)  # brought up to date: what is registered
    mlflow.set_experiment(experiment_id=registry.experiment(client, workspace, model))
    with mlflow.start_run(run_name=f"{model} as of {as_of:%Y-%m-%d}"):
        mlflow.log_params({
            "task": spec.task, "horizon_days": window, "num_leaves": spec.num_leaves,
            "learning_rate": spec.learning_rate, "trees": getattr(lgbm.estimator, "best_iteration_", None),
            "as_of": f"{as_of:%Y-%m-%d}", "features": len(features), "registered": report.registered_kind,
            **{k: str(v) for k, v in report.split.items()},
        })
        mlflow.set_tags({
            "feature_service": f"{model}_features", "feature_groups": ",".join(MODEL_GROUPS[model]),
            "data_fingerprint": data_fingerprint(workspace), INPUTS_TAG: training_inputs(workspace, config, as_of),
            **registry.run_owner_tags(workspace),
        })
        mlflow.log_metrics({f"test_{k}": v for k, v in report.metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({f"baseline_{k}": v for k, v in report.baseline.items() if np.isfinite(v)})
        mlflow.log_metrics({f"oracle_{k}": v for k, v in report.oracle.items() if np.isfinite(v)})
        mlflow.log_metrics({f"btyd_{k}": v for k, v in report.btyd.items() if np.isfinite(v)})
        mlflow.log_metrics({f"candidate_{kind}_{k}": v for kind, found in report.candidates.items()
                            for k, v in found.items() if np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            for path in plots.model_plots(candidate, parts["test"], Path(tmp)):
                mlflow.log_artifact(str(path), artifact_path="plots")
        # What `clm monitor` measures drift against: the test window the model was judged on.
        mlflow.log_dict(drift.model_reference(ready, parts["test"]), drift.REFERENCE_ARTIFACT)
        report.version = registry.log_model(ready, parts["test"][ready.features].head(5), model)
        name = registry.registered_name(model)
        client.set_registered_model_alias(name, registry.CHALLENGER, report.version)
        decision = registry.decide_promotion(
            candidate, registry.load_champion(client, model), parts["test"], config.margin,
            # No baseline to beat here: the baseline (and, on transactions, BG/NBD and
            # Pareto/NBD) were candidates, and `choose` shipped none significantly worse than any.
            classic=report.btyd,
            horizons=(window, registry.champion_horizon(client, model)) if model in HORIZON_MODELS else None,
        )
        registry.record_gate(decision.promote, decision.reason)
        report.note = decision.reason


def train(
    workspace: Workspace, config: TrainConfig, progress: Callable[[str], None] | None = None
) -> list[ModelReport]:
    manifest = require_valid(workspace)
    unknown = [m for m in config.models if m not in MODELS]
    if unknown:
        raise ClmError(f"Unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}.")
    as_of = config.as_of or manifest.end
    if as_of > manifest.end:
        raise ClmError(f"--as-of {as_of:%Y-%m-%d} is after the data's end ({manifest.data_end[:10]}).")
    contractual = manifest.business == "contractual"
    client = registry.connect(workspace, config.tracking_uri, create=True)
    registry.fail_abandoned_runs(client, workspace)
    inputs = training_inputs(workspace, config, as_of)
    reports: list[ModelReport] = []
    shared: dict[tuple, pd.DataFrame] = {}
    for model in config.models:
        if progress:
            progress(model)
        kept = _up_to_date(client, model, inputs) if config.skip_up_to_date else None
        if kept is not None:
            reports.append(kept)
        elif model == "uplift":
            reports.append(train_uplift(workspace, config, contractual, as_of, client, shared))
        else:
            reports.append(train_model(workspace, model, config, contractual, as_of, client, shared))
    # Champions change only now, every model trained: a session killed before this line
    # has promoted nothing, and the next one promotes what this one's gates passed.
    promoted = registry.promote_gate_passers(client, list(config.models), config.command)
    for report in reports:
        report.promoted = promoted.get(report.model) == report.version and report.version is not None
    return reports
