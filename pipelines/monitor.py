"""`clm monitor`: does clm still work? Drift today, and how the scores and decisions
delivered earlier did once their outcomes matured.

1. **Drift at D** against each champion's reference (`training.drift`: its test window,
   recorded at training): PSI per feature (and a chi-square p-value for categorical ones),
   PSI of its score, and PSI of the stage mix (the stage rules at D against the stage
   champion's test window). Today's rows are the model population at D, read from the
   feature snapshot chunk by chunk (memory stays flat).
2. **Delivered scores, matured**: every batch output in WORKSPACE/scores/ whose as-of date
   plus the horizon is by D and by the data's end; its churn and upsell probabilities
   against what happened (ROC AUC, ECE, lift in the top decile): a time series.
3. **Uplift and policy, matured**: at the latest decision dates with logged decisions and a
   matured outcome window (`pipelines.offpolicy`), clm's policy value per decision
   estimated off-policy (DR, with its interval; the truth on simulated data), and the
   realised uplift (treated minus control, inverse-propensity weighted) by decile of the
   uplift champion's predicted value. Dates the uplift model learned from are marked.

Thresholds (`pipelines/monitor.yaml`, or --thresholds FILE) turn figures into flags; any
flag makes `clm monitor` exit with code 4 so that a scheduler can alert.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clm.contracts import require_valid
from clm.errors import ClmError
from clm.files import read_yaml_mapping
from clm.stages import current_stage
from clm.workspace import Workspace
from decisions.catalogue import Catalogue, load_catalogue
from decisions.population import in_population
from features.build import build_features
from features.snapshots import snapshot_chunks
from pipelines.offpolicy import (
    HORIZON_DAYS,
    LoggedEvidence,
    clm_targets,
    estimate,
    logged_evidence,
)
from pipelines.outputs import damaged_outputs, delivered_outputs, scores_dir
from training import drift, registry
from training import evaluate as ev
from training.frames import row_hashes
from training.labels import LabelConfig, candidate_cutoffs, outcome_labels
from training.models import TrainedModel

DEFAULT_THRESHOLDS = Path(__file__).with_name("monitor.yaml")
SCORED_MODELS = ("churn", "upsell", "stage", "clv")
BINARY_SCORES = {"churn": "churn_probability", "upsell": "upsell_probability"}
CHUNK_ROWS = 100_000
FLAG_EXIT_CODE = 4


class Thresholds(BaseModel):
    """When a figure is flagged. PSI: 0.1 moderate, 0.25 a real shift (the usual reading)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `.nan` would never flag
    feature_psi: float = Field(0.25, gt=0, description="a feature's PSI above this flags, if it is one of the "
                                                       "model's top_features")
    top_features: int = Field(10, ge=1, le=10_000, description="the features, by importance, whose drift flags; the others' "
                                                    "PSI is shown only (their drift moves the score little, and "
                                                    "score drift is watched itself)")
    score_psi: float = Field(0.25, gt=0, description="a model's score PSI above this flags")
    stage_mix_psi: float = Field(0.1, gt=0, description="the stage mix's PSI above this flags")
    max_auc_drop: float = Field(0.05, ge=0, description="matured AUC this far below the champion's test AUC flags")
    max_ece: float = Field(0.05, gt=0, description="matured ECE above this (or above the noise of a small "
                                                   "window, whichever is larger) flags")
    min_policy_value: float = Field(0.0, description="clm's off-policy value per decision (DR, upper end of its "
                                                     "interval) below this flags")
    periods: int = Field(3, ge=1, le=1000, description="how many matured decision dates to evaluate the policy at")


def load_thresholds(path: Path | None) -> Thresholds:
    source = path or DEFAULT_THRESHOLDS
    data = read_yaml_mapping(source, "Thresholds file", "threshold names and values (see pipelines/monitor.yaml)")
    try:
        return Thresholds.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in err.errors())
        raise ClmError(f"Thresholds file {source}: {problems}.") from None


@dataclass
class Champion:
    model: str
    version: str
    trained: TrainedModel
    reference: dict[str, Any]  # the JSON recorded at training (training.drift)
    test_figures: dict[str, float]
    judged_at: pd.Timestamp | None = None  # the test window's cutoff: the reference's date


REFERENCE_SAMPLE = 200_000  # rows enough for decile edges and shares


def load_champions(client: MlflowClient, workspace: Workspace, contractual: bool,
                   models: tuple[str, ...] = SCORED_MODELS) -> tuple[list[Champion], list[str]]:
    """Each model's champion with its reference: the one recorded at training, or, for a
    champion trained before clm recorded them, one computed from the feature snapshot of
    its test cutoff (the same rows: a test holds the two equal) and recorded in its run
    for next time (said in a note)."""
    found, notes = [], []
    for model in models:
        version = registry.alias_version(client, model, registry.CHAMPION)
        if version is None:
            continue
        trained = registry.load_version(client, model, version)
        run_id = client.get_model_version(registry.registered_name(model), version).run_id
        assert run_id is not None  # clm registers every version from its training run
        run = client.get_run(run_id)
        try:
            reference = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{drift.REFERENCE_ARTIFACT}")
        except Exception:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
            cutoff = pd.Timestamp(run.data.params["test_cutoff"], tz="UTC")
            rows = reference_rows(workspace, cutoff, contractual)
            if model == "stage":  # the stage mix is the stage model's to watch, as at training
                rows = rows.assign(current_stage=current_stage(rows, contractual).to_numpy())
            reference = drift.model_reference(trained, rows)
            client.log_dict(run.info.run_id, reference, drift.REFERENCE_ARTIFACT)
            notes.append(f"{registry.registered_name(model)} v{version} had no recorded reference (trained by an "
                         f"earlier clm): computed from the snapshot of its test cutoff, {cutoff:%Y-%m-%d}, and "
                         "recorded.")
        cutoff_text = run.data.params.get("test_cutoff")
        judged_at = pd.Timestamp(cutoff_text, tz="UTC") if cutoff_text else None
        found.append(Champion(model, version, trained, reference, registry.version_figures(client, model, version),
                              judged_at))
    if not found:
        raise ClmError("No champion model to monitor: run `clm train` (or `clm run`) first.")
    return found, notes


def check_after_reference(champions: list[Champion], as_of: pd.Timestamp) -> None:
    """Drift is measured after the window each champion was judged on (its reference): an
    earlier --as-of would flag what is only the past, so it is refused, with the first
    date that means something."""
    early = [(c, c.judged_at) for c in champions if c.judged_at is not None and as_of < c.judged_at]
    if early:
        first = max(judged_at for _, judged_at in early)
        which = ", ".join(f"{registry.registered_name(c.model)} v{c.version} on {judged_at:%Y-%m-%d}"
                          for c, judged_at in early)
        raise ClmError(f"--as-of {as_of:%Y-%m-%d} is before the window the champions were judged on ({which}): drift "
                       f"compares later data with that window. Choose --as-of {first:%Y-%m-%d} or later.")


def reference_rows(workspace: Workspace, cutoff: pd.Timestamp, contractual: bool) -> pd.DataFrame:
    """The model population at a cutoff with its features (on a larger base, a sample of
    REFERENCE_SAMPLE rows: those with the smallest `row_hashes`, the same whatever the ids)."""
    build_features(workspace, [cutoff], raw_checked=True)
    rows = pd.concat([chunk[in_population(chunk, contractual)] for chunk in
                      snapshot_chunks(workspace, cutoff, CHUNK_ROWS)], ignore_index=True)
    if len(rows) > REFERENCE_SAMPLE:
        kept = np.argpartition(row_hashes(rows), REFERENCE_SAMPLE)[:REFERENCE_SAMPLE]
        rows = rows.take(np.sort(kept)).reset_index(drop=True)
    return rows


@dataclass
class DriftCounts:
    """Today's counts in each reference's bins, summed over chunks."""

    features: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (model, feature)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    stage_mix: np.ndarray | None = None
    rows: int = 0


def _accumulate(into: dict[Any, np.ndarray], key: object, counts: np.ndarray) -> None:
    into[key] = into[key] + counts if key in into else counts


def count_today(workspace: Workspace, as_of: pd.Timestamp, champions: list[Champion], contractual: bool,
                chunk_rows: int = CHUNK_ROWS) -> DriftCounts:
    counts = DriftCounts()
    stage_profile = next((drift.profile_from_dict(c.reference["stage_mix"]) for c in champions
                          if "stage_mix" in c.reference), None)
    profiles = {c.model: {name: drift.profile_from_dict(p) for name, p in c.reference["features"].items()}
                for c in champions}
    score_profiles = {c.model: drift.profile_from_dict(c.reference["score"]) for c in champions}
    for chunk in snapshot_chunks(workspace, as_of, chunk_rows):
        live = chunk[in_population(chunk, contractual)].reset_index(drop=True)
        if live.empty:
            continue
        counts.rows += len(live)
        empty = pd.Series(np.nan, index=live.index)
        for champion in champions:
            for name, profile in profiles[champion.model].items():
                _accumulate(counts.features, (champion.model, name), profile.count(live[name] if name in live else empty))
            values, _ = drift.model_score(champion.trained, live)
            _accumulate(counts.scores, champion.model, score_profiles[champion.model].count(values))
        if stage_profile is not None:
            stages = stage_profile.count(current_stage(live, contractual))
            counts.stage_mix = stages if counts.stage_mix is None else counts.stage_mix + stages
    return counts


def drift_table(champions: list[Champion], counts: DriftCounts, thresholds: Thresholds) -> pd.DataFrame:
    """One row per (model, what): PSI, chi-square p-value (categories), flagged."""
    rows = []
    for champion in champions:
        importance = champion.reference.get("importance") or {}
        ranked = list(importance)[: thresholds.top_features]  # largest share first
        for name, data in champion.reference["features"].items():
            profile = drift.profile_from_dict(data)
            got = counts.features.get((champion.model, name))
            if got is None:
                continue
            row = _drift_row(champion, "feature", name, profile, got, thresholds.feature_psi)
            row["importance"] = importance.get(name)
            row["flagged"] = row["flagged"] and (not importance or name in ranked)
            rows.append(row)
        profile = drift.profile_from_dict(champion.reference["score"])
        if champion.model in counts.scores:
            rows.append(_drift_row(champion, "score", champion.model, profile, counts.scores[champion.model],
                                   thresholds.score_psi))
        if "stage_mix" in champion.reference and counts.stage_mix is not None:
            profile = drift.profile_from_dict(champion.reference["stage_mix"])
            rows.append(_drift_row(champion, "stage mix", "stage", profile, counts.stage_mix, thresholds.stage_mix_psi))
    columns = ["model", "version", "kind", "variable", "psi", "p_value", "importance", "threshold", "flagged"]
    return pd.DataFrame(rows, columns=columns).sort_values(["flagged", "psi"], ascending=[False, False],
                                                           ignore_index=True)


def _drift_row(champion: Champion, kind: str, name: str, profile: drift.Profile, counts: np.ndarray,
               threshold: float) -> dict[str, object]:
    value = profile.psi(counts)
    return {"model": champion.model, "version": champion.version, "kind": kind, "variable": name, "psi": value,
            "p_value": profile.p_value(counts), "importance": None, "threshold": threshold,
            "flagged": bool(value > threshold)}


# ---------------------------------------------------------------- delivered scores
def matured_performance(workspace: Workspace, as_of: pd.Timestamp, horizon_days: int, contractual: bool,
                        champions: list[Champion], thresholds: Thresholds) -> pd.DataFrame:
    """Per delivered batch whose outcome window has matured by as_of (and the data's end):
    each binary score's ROC AUC, ECE and top-decile lift against what happened."""
    end = min(as_of, workspace.read_manifest().end)
    horizon = pd.Timedelta(days=horizon_days)
    test_auc = {c.model: c.test_figures.get("test_roc_auc") for c in champions}
    rows = []
    for date, path in delivered_outputs(workspace).items():
        if date + horizon > end:
            continue
        scores = pd.read_parquet(path, columns=["customer_id", *BINARY_SCORES.values()])
        labels = outcome_labels(workspace, [date], LabelConfig(horizon_days=horizon_days), contractual)
        joined = scores.merge(labels, on="customer_id", how="inner")
        for model, column in BINARY_SCORES.items():
            known = joined[joined[column].notna() & joined[model].notna()]
            y = known[model].to_numpy(dtype=float)
            if len(known) < 2 or len(np.unique(y)) < 2:
                continue
            p = known[column].to_numpy(dtype=float)
            figures = ev.binary_metrics(y, p)
            ece_limit = max(thresholds.max_ece, registry.ece_bound(p))
            reference = test_auc.get(model)
            auc_low = reference is not None and figures["roc_auc"] < reference - thresholds.max_auc_drop
            rows.append({
                "scored_at": f"{date:%Y-%m-%d}", "model": model, "customers": len(known),
                "positive_rate": figures["positive_rate"], "roc_auc": figures["roc_auc"],
                "champion_test_auc": reference, "ece": figures["ece"], "ece_limit": ece_limit,
                "lift_top_decile": figures["lift_top_decile"],
                "flagged": bool(auc_low or figures["ece"] > ece_limit),
            })
    columns = ["scored_at", "model", "customers", "positive_rate", "roc_auc", "champion_test_auc", "ece",
               "ece_limit", "lift_top_decile", "flagged"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- uplift and policy
def policy_over_time(workspace: Workspace, as_of: pd.Timestamp, tracking_uri: str | None,
                     thresholds: Thresholds, catalogue: Catalogue | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(policy value per matured decision date, realised uplift by predicted decile at the
    latest one, a note when there is nothing to evaluate)."""
    catalogue = catalogue or load_catalogue()
    manifest = workspace.read_manifest()
    cutoffs = candidate_cutoffs(manifest, min(as_of, manifest.end), HORIZON_DAYS)[-thresholds.periods:]
    rows, deciles, notes = [], pd.DataFrame(), []
    for cutoff in cutoffs:
        try:
            evidence = logged_evidence(workspace, catalogue, cutoff, tracking_uri, HORIZON_DAYS)
        except ClmError as err:  # no uplift champion, or no decisions logged that day
            notes.append(f"{cutoff:%Y-%m-%d}: {err}")
            continue
        targets = clm_targets(evidence, catalogue)
        report = estimate(evidence, targets)
        dr = report.estimates["dr"]
        fitted = evidence.uplift.fitted_through
        learned = fitted is not None and cutoff <= fitted
        rows.append({
            "decided_at": f"{cutoff:%Y-%m-%d}", "decisions": report.decisions,
            "dr_value_per_decision": dr.value, "dr_low": dr.low, "dr_high": dr.high,
            "snips_value_per_decision": report.estimates["snips"].value,
            "true_value_per_decision": report.truth, "uplift_learned_from_it": learned,
            "flagged": bool(not learned and dr.high < thresholds.min_policy_value),
        })
        deciles = realised_uplift_by_decile(evidence, targets)
    columns = ["decided_at", "decisions", "dr_value_per_decision", "dr_low", "dr_high", "snips_value_per_decision",
               "true_value_per_decision", "uplift_learned_from_it", "flagged"]
    return pd.DataFrame(rows, columns=columns), deciles, "; ".join(notes)


def realised_uplift_by_decile(evidence: LoggedEvidence, targets: np.ndarray) -> pd.DataFrame:
    """Deciles of the predicted incremental value of clm's chosen action (10 = highest);
    in each, the realised value of the customers the logged policy contacted minus that of
    those it left alone, each weighted by the inverse of the propensity of what was done."""
    n = np.arange(len(evidence.rows))
    target_at = np.array([evidence.actions.index(a) for a in targets])
    predicted = evidence.q[n, target_at] - evidence.q[:, 0]
    taken = evidence.rows["action"].to_numpy().astype(str)
    treated = taken != evidence.actions[0]
    weight = 1.0 / np.clip(evidence.rows["propensity"].to_numpy(dtype=float), 1e-3, 1.0)
    decile = pd.qcut(pd.Series(predicted).rank(method="first"), 10, labels=False).to_numpy() + 1
    rows = []
    for d in range(1, 11):
        inside = decile == d
        t, c = inside & treated, inside & ~treated

        def mean(mask: np.ndarray) -> float:
            return float(np.average(evidence.reward[mask], weights=weight[mask])) if mask.any() else float("nan")

        rows.append({"decile": d, "predicted_value": float(predicted[inside].mean()), "treated": int(t.sum()),
                     "control": int(c.sum()), "realised_uplift": mean(t) - mean(c)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the whole check
@dataclass
class MonitorReport:
    as_of: pd.Timestamp
    rows: int
    drift: pd.DataFrame
    performance: pd.DataFrame
    policy: pd.DataFrame
    uplift_deciles: pd.DataFrame
    notes: list[str]
    thresholds: Thresholds

    @property
    def flags(self) -> list[str]:
        """Each flag in words."""
        flagged = self.drift[self.drift.flagged]
        out = [f"{kind} {variable}: PSI {part.psi.max():.3f} > {part.threshold.iloc[0]} ({', '.join(part.model)})"
               for (kind, variable), part in flagged.groupby(["kind", "variable"], sort=False)]
        out += [f"{r.model} scored {r.scored_at}: ROC AUC {r.roc_auc:.3f} (champion's test {r.champion_test_auc:.3f}), "
                f"ECE {r.ece:.3f} (limit {r.ece_limit:.3f})" for r in self.performance.itertuples() if r.flagged]
        out += [f"policy decided {r.decided_at}: DR value per decision {r.dr_value_per_decision:.2f} "
                f"(interval up to {r.dr_high:.2f}) below {self.thresholds.min_policy_value}"
                for r in self.policy.itertuples() if r.flagged]
        return out

    def metrics(self) -> dict[str, float]:
        """Figures for MLflow."""
        out: dict[str, float] = {"flags": float(len(self.flags)), "rows": float(self.rows)}
        for (model, kind), part in self.drift.groupby(["model", "kind"]):
            key = kind.replace(" ", "_")
            out[f"{model}_{key}_psi_max"] = float(part.psi.max())
        for r in self.performance.itertuples():
            out[f"{r.model}_auc_{r.scored_at}"] = float(r.roc_auc)
        for r in self.policy.itertuples():
            out[f"policy_dr_{r.decided_at}"] = float(r.dr_value_per_decision)
        return out


def monitor(workspace: Workspace, as_of: pd.Timestamp, thresholds: Thresholds, tracking_uri: str | None = None,
            horizon_days: int = 90, chunk_rows: int = CHUNK_ROWS, catalogue: Catalogue | None = None) -> MonitorReport:

    manifest = require_valid(workspace)
    contractual = manifest.business == "contractual"
    client = registry.connect(workspace, tracking_uri)
    champions, notes = load_champions(client, workspace, contractual)
    check_after_reference(champions, as_of)
    build_features(workspace, [as_of], raw_checked=True)
    counts = count_today(workspace, as_of, champions, contractual, chunk_rows)
    performance = matured_performance(workspace, as_of, horizon_days, contractual, champions, thresholds)
    notes.extend(damaged_outputs(workspace))
    if performance.empty:
        notes.append(f"No delivered scores in {scores_dir(workspace)} have a matured {horizon_days}-day outcome "
                     f"window by {as_of:%Y-%m-%d}: `clm score` (or `clm retrain`) writes them there.")
    policy, deciles, note = policy_over_time(workspace, as_of, tracking_uri, thresholds, catalogue)
    if note:
        notes.append(f"Policy: {note}")
    return MonitorReport(as_of, counts.rows, drift_table(champions, counts, thresholds), performance, policy,
                         deciles, notes, thresholds)


def log_to_mlflow(workspace: Workspace, report: MonitorReport, tracking_uri: str | None, html: Path | None) -> str:
    """One run in the experiment `clm-monitor`: the figures, the tables, the page; its id."""
    client = registry.connect(workspace, tracking_uri)
    found = client.get_experiment_by_name("clm-monitor")
    experiment = found.experiment_id if found else client.create_experiment(
        "clm-monitor", artifact_location=registry.artifact_location(client, workspace, "clm-monitor"))
    with mlflow.start_run(experiment_id=experiment, run_name=f"monitor as of {report.as_of:%Y-%m-%d}") as run:
        mlflow.log_params({"as_of": f"{report.as_of:%Y-%m-%d}", **report.thresholds.model_dump()})
        mlflow.log_metrics({k: v for k, v in report.metrics().items() if np.isfinite(v)})
        mlflow.set_tags({"flags": str(len(report.flags)), **registry.run_owner_tags(workspace)})
        mlflow.log_table(report.drift, "drift.json")
        if html is not None:
            mlflow.log_artifact(str(html))
        return run.info.run_id
