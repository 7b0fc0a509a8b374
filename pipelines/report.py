"""`clm report`: the lifecycle report for the business, as figures (`lifecycle_report`);
`pipelines.report_page` turns them into one self-contained HTML file.

Everything is read off what clm already keeps: the feature snapshots (the stage rules at
each month start, NPS answers), the raw customers table (signup month and acquisition
channel), the CLV champion, the nightly batch in WORKSPACE/scores/ (who is at risk, what
clm recommends, the plan's value and the value finder) and the MLflow registry (model
cards).

Definitions:
- stage: the stage rules (`clm.stages`) at a date; the period is the month before D;
- churn rate of a stage: of the customers in that stage at the period's start, the share
  in stage `churned` at its end (for a transactions-only business churned means lapsed by
  the rules: an estimate, not a cancellation);
- NPS: % promoters (9-10) minus % detractors (0-6) among customers whose latest answer is
  at most a year old;
- retained k months after signup: not churned (contractual), or neither dormant nor
  churned (transactions only), at the k-th month start after signup.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from clm.contracts import require_valid
from clm.domain import STAGES, Table
from clm.stages import STAGE_FEATURES, current_stage
from clm.workspace import Workspace
from decisions.population import POPULATION_FEATURES, in_population
from features.build import build_features, snapshot_dates
from features.snapshots import snapshot_chunks
from pipelines.outputs import damaged_outputs, delivered_outputs, read_manifest
from training import audit, registry
from training.models import TrainedModel, feature_importance

CHURNED, DORMANT = "churned", "dormant"
NEW_CUSTOMER = "(not yet a customer)"
AT_RISK_ROWS = 25
COHORT_MONTHS = 12
CHUNK_ROWS = 100_000
STAGE_COLUMNS = ["customer_id", "stage", "last_nps", "days_since_last_nps", "clv"]


@dataclass
class ModelCard:
    model: str
    version: str
    kind: str  # lightgbm or baseline (or the uplift learner)
    as_of: str
    window: dict[str, str]  # train, valid and test cutoffs
    figures: dict[str, float]  # test figures
    truth: dict[str, float]  # oracle or true-effect figures (simulated data)
    features: int
    importance: list[tuple[str, float]]  # top features by share of gain
    promoted: str  # the audit trail's latest event, in words
    horizon_days: int | None = None  # the label window: churn/upsell/stage horizon, CLV's days of value


@dataclass
class LifecycleReport:
    as_of: pd.Timestamp
    previous: pd.Timestamp  # the start of the period (one month before as_of)
    contractual: bool
    kpis: pd.DataFrame
    flow: pd.DataFrame  # customers by stage at the period's start (rows) and end (columns)
    cohorts_by_month: pd.DataFrame  # retention share: signup month x months since signup
    cohorts_by_channel: pd.DataFrame  # retention share: acquisition channel x months since signup
    at_risk: pd.DataFrame
    plan: dict[str, Any] | None
    scored_at: str | None
    models: list[ModelCard]
    notes: list[str] = field(default_factory=list)


def stages_at(workspace: Workspace, when: pd.Timestamp, contractual: bool,
              clv_model: TrainedModel | None = None) -> pd.DataFrame:
    """Every customer known at `when`: stage, latest NPS answer and its age, and the CLV
    champion's value (population only; NaN elsewhere or without a champion)."""
    build_features(workspace, [when], raw_checked=True)
    return _read_stages(workspace, when, contractual, clv_model)


def _read_stages(workspace: Workspace, when: pd.Timestamp, contractual: bool,
                 clv_model: TrainedModel | None = None) -> pd.DataFrame:
    """stages_at from snapshots already built."""
    parts = []
    # Only what the stage rules, the population rule and the NPS read, unless CLV is scored.
    columns = None if clv_model is not None else {*STAGE_FEATURES, *POPULATION_FEATURES, "last_nps"}
    for chunk in snapshot_chunks(workspace, when, CHUNK_ROWS, columns):
        part = pd.DataFrame({"customer_id": chunk["customer_id"].to_numpy(),
                             "stage": current_stage(chunk, contractual).to_numpy()})
        for column in ("last_nps", "days_since_last_nps"):
            part[column] = chunk[column].to_numpy(dtype=float) if column in chunk else np.nan
        part["clv"] = np.nan
        if clv_model is not None:
            live = in_population(chunk, contractual)
            if live.any():
                part.loc[live, "clv"] = clv_model.predict(chunk[live])
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=STAGE_COLUMNS)


def nps(scores: pd.Series) -> float:
    """% promoters (9-10) minus % detractors (0-6); NaN without answers."""
    answered = scores.dropna()
    if answered.empty:
        return float("nan")
    return float(100 * ((answered >= 9).mean() - (answered <= 6).mean()))


def churn_counts(start: pd.DataFrame, end: pd.DataFrame) -> pd.DataFrame:
    """Per stage at the period's start: the share of its customers churned at the end
    (`mean`) and how many customers that share is of (`size`)."""
    joined = start[["customer_id", "stage"]].merge(end[["customer_id", "stage"]], on="customer_id",
                                                   suffixes=("", "_end"))
    joined = joined[joined.stage != CHURNED]
    return joined.assign(churned=joined.stage_end == CHURNED).groupby("stage").churned.agg(["mean", "size"])


def stage_kpis(now: pd.DataFrame, before: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """KPIs per stage at the period's end and start: customers, churn rate over the period
    that ends there and the customers it is a share of (`churn_base`: the stage's customers
    at that period's start), NPS and the answers it is of (`nps_answers`), mean CLV."""
    def figures(frame: pd.DataFrame, churned: pd.DataFrame) -> pd.DataFrame:
        recent = frame[frame.days_since_last_nps <= 365]
        return pd.DataFrame({
            "customers": frame.groupby("stage").size(),
            "churn_rate": churned["mean"],
            "churn_base": churned["size"],
            "nps": recent.groupby("stage").last_nps.apply(nps),
            "nps_answers": recent.groupby("stage").last_nps.count(),
            "clv": frame.groupby("stage").clv.mean(),
        }).reindex(list(STAGES))

    end, start = figures(now, churn_counts(before, now)), figures(before, churn_counts(earlier, before))
    out = end.join(start, rsuffix="_before")
    for counted in ("customers", "customers_before"):
        out[counted] = out[counted].fillna(0).astype(int)
    for counted in ("churn_base", "churn_base_before", "nps_answers", "nps_answers_before"):
        out[counted] = out[counted].astype("Int64")  # none (a churned stage has no churn rate): left empty
    order = ["customers", "customers_before", "churn_rate", "churn_base", "churn_rate_before", "churn_base_before",
             "nps", "nps_answers", "nps_before", "nps_answers_before", "clv", "clv_before"]
    return out[order].rename_axis("stage").reset_index()


def stage_flow(before: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """Customers by stage at the period's start (rows; new ones as NEW_CUSTOMER) and end."""
    joined = now[["customer_id", "stage"]].merge(before[["customer_id", "stage"]], on="customer_id", how="left",
                                                 suffixes=("", "_before"))
    joined["stage_before"] = joined["stage_before"].fillna(NEW_CUSTOMER)
    flow = pd.crosstab(joined.stage_before, joined.stage)
    rows = [s for s in (*STAGES, NEW_CUSTOMER) if s in flow.index]
    return flow.reindex(index=rows, columns=[s for s in STAGES if s in flow.columns], fill_value=0)


def retention_cohorts(workspace: Workspace, as_of: pd.Timestamp, contractual: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Retention share k months after signup (k = 0..COHORT_MONTHS), by signup month and by
    acquisition channel, from the stage rules at every month start up to as_of."""
    customers = workspace.read_table(Table.CUSTOMERS, columns=["customer_id", "signup_time", "acquisition_channel"])
    signup = customers.set_index("customer_id")
    month = signup.signup_time.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M")
    lost = {CHURNED} if contractual else {CHURNED, DORMANT}
    rows = []
    dates = [d for d in snapshot_dates(workspace.read_manifest(), "monthly") if d <= as_of]
    build_features(workspace, dates, raw_checked=True)  # once for every date (usually all built)
    for when in dates:
        known = _read_stages(workspace, when, contractual)
        cohort = month.reindex(known.customer_id.to_numpy())
        since = (pd.Period(when.tz_localize(None), "M") - cohort).map(lambda d: d.n if pd.notna(d) else -1).to_numpy()
        rows.append(pd.DataFrame({
            "signup_month": cohort.astype(str).to_numpy(), "months": since,
            "channel": signup.acquisition_channel.reindex(known.customer_id.to_numpy()).fillna("(unknown)").to_numpy(),
            "retained": ~known.stage.isin(lost).to_numpy(),
        }))
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["signup_month", "months", "channel", "retained"])
    frame = frame[(frame.months >= 1) & (frame.months <= COHORT_MONTHS)]

    def table(by: str) -> pd.DataFrame:
        if frame.empty:
            return pd.DataFrame()
        shares = frame.pivot_table(index=by, columns="months", values="retained", aggfunc="mean")
        shares.columns = [f"m{int(c)}" for c in shares.columns]
        return shares.reset_index()

    return table("signup_month"), table("channel")


def latest_batch(workspace: Workspace, as_of: pd.Timestamp) -> tuple[pd.Timestamp, Path] | None:
    """(date, path) of the latest batch output at or before as_of in WORKSPACE/scores/, or None."""
    found = [(d, p) for d, p in delivered_outputs(workspace).items() if d <= as_of]
    return max(found) if found else None


def at_risk(scores: pd.DataFrame, rows: int = AT_RISK_ROWS) -> pd.DataFrame:
    """The customers with the most value at risk (churn probability x CLV), with clm's
    recommendation and its first reason."""
    live = scores[scores.churn_probability.notna()].copy()
    live["value_at_risk"] = live.churn_probability * live.clv.fillna(0)
    top = live.nlargest(rows, "value_at_risk")
    first_reason = top.reasons.map(_first_reason) if "reasons" in top else ""
    return pd.DataFrame({
        "customer_id": top.customer_id, "stage": top.stage, "churn_probability": top.churn_probability,
        "clv": top.clv, "value_at_risk": top.value_at_risk, "recommended": top.action.fillna("none"),
        "expected_value": top.action_value, "why": first_reason,
    }).reset_index(drop=True)


def _first_reason(reasons: object) -> str:
    try:
        found = json.loads(str(reasons))
    except ValueError:
        return ""
    return str(found[0]) if isinstance(found, list) and found else ""


def model_cards(client: MlflowClient) -> list[ModelCard]:

    cards = []
    for model in ("churn", "upsell", "stage", "clv", "uplift"):
        version = registry.alias_version(client, model, registry.CHAMPION)
        if version is None:
            continue
        name = registry.registered_name(model)
        run_id = client.get_model_version(name, version).run_id
        assert run_id is not None  # clm registers every version from its training run
        run = client.get_run(run_id)
        params, metrics = run.data.params, run.data.metrics
        trained = registry.load_version(client, model, version)
        importance = feature_importance(trained) if hasattr(trained, "estimator") else None
        events = audit.history(client, name)
        last = events[-1] if events else None
        cards.append(ModelCard(
            model, version, params.get("registered", params.get("learner", "")), params.get("as_of", ""),
            {k: params[k] for k in ("train_cutoffs", "valid_cutoff", "test_cutoff", "split") if k in params},
            {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")},
            {k: v for k, v in metrics.items() if k.startswith(("oracle_", "truth_"))},
            int(float(params.get("features", 0))), list((importance or {}).items())[:10],
            f"{last.event} {last.at[:10]} by {last.by} ({last.how}): {last.reason}" if last else "",
            int(float(params["horizon_days"])) if params.get("horizon_days") else None,
        ))
    return cards


def lifecycle_report(workspace: Workspace, as_of: pd.Timestamp, tracking_uri: str | None = None) -> LifecycleReport:

    manifest = require_valid(workspace)
    contractual = manifest.business == "contractual"
    client = registry.connect(workspace, tracking_uri) if registry.has_store(workspace, tracking_uri) else None
    notes = []
    clv_model = registry.load_champion(client, "clv") if client is not None else None
    if clv_model is None:
        notes.append("No CLV champion: CLV per stage is left empty (run `clm train`).")
    previous, earlier = as_of - pd.DateOffset(months=1), as_of - pd.DateOffset(months=2)
    now = stages_at(workspace, as_of, contractual, clv_model)
    before = stages_at(workspace, previous, contractual, clv_model)
    kpis = stage_kpis(now, before, stages_at(workspace, earlier, contractual))
    notes.append("CAC is not shown: the customers table has no acquisition cost.")
    by_month, by_channel = retention_cohorts(workspace, as_of, contractual)
    batch = latest_batch(workspace, as_of)
    notes.extend(damaged_outputs(workspace))
    plan, scored_at, risky = None, None, pd.DataFrame()
    if batch is None:
        notes.append(f"No nightly batch at or before {as_of:%Y-%m-%d} in WORKSPACE/scores/: run `clm retrain` or "
                     "`clm score` for the at-risk list and the plan.")
    else:
        scored_at = f"{batch[0]:%Y-%m-%d}"
        risky = at_risk(pd.read_parquet(batch[1]))
        plan = (read_manifest(batch[1]) or {}).get("decisions")
    return LifecycleReport(as_of, previous, contractual, kpis, stage_flow(before, now), by_month, by_channel, risky,
                           plan, scored_at, model_cards(client) if client is not None else [], notes)
