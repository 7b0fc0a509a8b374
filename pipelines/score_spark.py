"""The nightly batch on Spark (`clm score --engine spark`): the same scores and decisions as
`pipelines.score`, from the same functions, with the heavy work spread over executors.

1. Features: each group's snapshot at the date, read by Spark and joined on customer_id
   (every group holds the same customers), with the consents of the raw customers table.
2. Pass 1, on the executors (`mapInPandas`): `serving.scoring.score_rows` on each Arrow
   batch: scores, who is in the population, the funnel's inputs and the uplift effects.
   The champion models travel pickled inside the function and are unpickled once per
   Python worker, not once per batch (the workers' functions: `pipelines.spark_tasks`).
3. The selection, on the driver: the budget and the daily capacities are shared by the
   whole base, so a customer's decision depends on everyone else's value per unit of cost.
   The population's funnel inputs (the funnel's columns and two effects per action) are
   read back in customer_id order and `pipelines.decisions.plan_batch` runs on them,
   exactly as in the local batch: the
   multiple-choice knapsack's greedy takes hull increments in falling value per unit of
   cost over the whole base (one global threshold, the LP's dual price of the budget), with
   capacities priced by their own multipliers (`serving.allocation`). So a customer's
   decision is the same however the base is partitioned, and the same as the local
   engine's. The plan per customer (`pipelines.decisions.plan_frame`: eight numbers) is
   written as Parquet.
4. Pass 2, on the executors: scores, features and plan joined on customer_id;
   `pipelines.decisions.with_decisions` per batch adds the decision columns and the reasons
   (the drivers' contributions are computed where the features are).
5. The output (OUTPUT_COLUMNS, sorted by customer_id) is written by Spark into the same
   hidden temporary folder as the local batch's, the decision log filled from it, the
   manifest written and the folder renamed in.

The driver holds the population's funnel inputs for the selection: its peak memory is
recorded in the manifest (`driver_peak_gb`) and measured by `benchmarks/spark_engine.py`
(figures in the README's Spark section).
"""
from __future__ import annotations

import pickle
import resource
import shutil
import time
from pathlib import Path
from typing import (
    Any,  # PySpark's sessions and frames: an optional dependency, imported lazily
)

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from clm.domain import Table
from clm.workspace import Workspace
from decisions import log as decision_log
from decisions.catalogue import Catalogue
from decisions.log import DEFAULT_EXPLORATION
from features.snapshots import snapshot_files
from pipelines.decisions import OUTPUT_COLUMNS, log_rows, plan_batch, plan_frame
from pipelines.score import ScoreResult, catalogue_note, finish, kept_output, prepare, temporary_folder
from pipelines.spark_tasks import (
    DECIDED,
    LIVE,
    decide_batches,
    effect_columns,
    pass1_columns,
    schema,
    score_batches,
)
from serving.scoring import (
    CONSENT_COLUMNS,
    FUNNEL_COLUMNS,
    SCORE_COLUMNS,
    Scored,
    consents_of,
    load_decision_data,
)

LOG_COLUMNS = ("customer_id", "action", "action_value", "propensity", "explored", "reasons")


def _driver_peak_gb() -> float:
    """Peak memory of this (the driver's) Python process so far: Spark's JVM and workers are
    other processes."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)  # KB on Linux


def read_features(spark: Any, workspace: Workspace, as_of: pd.Timestamp, partitions: int | None) -> Any:
    """Every group's snapshot at as_of joined on customer_id, with the consents."""
    from pyspark.sql import functions as F

    frames = [spark.read.parquet(str(p.resolve())) for p in snapshot_files(workspace, as_of)]
    features = frames[0]
    for other in frames[1:]:
        features = features.join(other.drop("event_timestamp"), "customer_id", "inner")
    if workspace.table_path(Table.CUSTOMERS).exists():  # the consents the local batch reads (`consents_of`)
        consents = consents_of(workspace).reset_index()[["customer_id", *CONSENT_COLUMNS]]  # every change known
        features = features.join(spark.createDataFrame(consents), "customer_id", "left")
    else:
        features = features.select("*", *(F.lit(False).alias(c) for c in CONSENT_COLUMNS))
    return features.repartition(partitions, "customer_id") if partitions else features


def funnel_inputs(pass1: Path, with_effects: bool, actions: list[str]) -> Scored:
    """The funnel inputs of the customers decided for, from pass 1's output, in customer_id
    order (the local batch's order); with_effects: an uplift champion gave effects, one
    column per catalogue contact action (`actions`)."""
    columns = [c for c in FUNNEL_COLUMNS if c not in CONSENT_COLUMNS] + list(CONSENT_COLUMNS)
    named = effect_columns(actions)
    effects = [*named["churn"], *named["upgrade"]]
    table = ds.dataset(str(pass1), format="parquet").to_table(
        columns=[*dict.fromkeys(columns), LIVE, *effects], filter=ds.field(DECIDED))
    frame = table.to_pandas().sort_values("customer_id", kind="stable").reset_index(drop=True)
    change = {kind: frame[list(named[kind])].to_numpy(float) for kind in named}
    funnel = frame[columns]
    return Scored(pd.DataFrame(), frame[LIVE].to_numpy(dtype=bool), np.ones(len(frame), dtype=bool), funnel,
                  change["churn"] if with_effects else None, change["upgrade"] if with_effects else None)


def score_on_spark(spark: Any, workspace: Workspace, as_of: pd.Timestamp, out: Path, tracking_uri: str | None = None,
                   catalogue: Catalogue | None = None, budget: float | None = None,
                   exploration: float = DEFAULT_EXPLORATION, partitions: int | None = None,
                   keep_current: bool = False) -> ScoreResult:
    """`pipelines.score.score` on Spark (see the module's docstring); partitions: how many
    partitions the base is cut into (default: Spark's)."""
    inputs = prepare(workspace, as_of, out, tracking_uri, catalogue, budget, exploration, spark=spark)
    if keep_current and (kept := kept_output(inputs)) is not None:
        return kept
    contractual, catalogue = inputs.contractual, inputs.catalogue
    timings = {"prepare_s": time.perf_counter() - inputs.started}
    blob = pickle.dumps(inputs.champions)
    features = read_features(spark, workspace, as_of, partitions)
    feature_columns = [c for c in features.columns if c not in CONSENT_COLUMNS]
    tmp = temporary_folder(out)
    pass1, plan_dir, written = tmp / "_pass1", tmp / "_plan", tmp / "_output"
    log: decision_log.BatchLog | None = None
    try:
        # 1. scores and funnel inputs, on the executors
        t0 = time.perf_counter()
        features.mapInPandas(score_batches(blob, contractual, catalogue.contact_ids),
                             schema(pass1_columns(catalogue.contact_ids))).write.parquet(str(pass1))
        timings["score_s"] = time.perf_counter() - t0
        # 2. the selection across the whole base, on the driver
        t0 = time.perf_counter()
        everyone = funnel_inputs(pass1, inputs.champions.uplift is not None, catalogue.contact_ids)
        ids, scored_count = everyone.funnel["customer_id"].to_numpy(), int(everyone.live.sum())
        data = load_decision_data(workspace, as_of, catalogue.lookback_days, real=True)
        plan = plan_batch(catalogue, everyone, data, as_of, inputs.budget, inputs.exploration)
        del everyone
        if plan is not None:
            plan_dir.mkdir()
            plan_frame(plan).assign(customer_id=ids).to_parquet(plan_dir / "part-0.parquet", index=False)
        timings["decide_s"] = time.perf_counter() - t0
        # 3. decisions and reasons, on the executors; the output sorted by customer_id
        t0 = time.perf_counter()
        joined = (spark.read.parquet(str(pass1)).select(*SCORE_COLUMNS)
                  .join(features.drop(*CONSENT_COLUMNS), "customer_id"))
        if plan is not None:
            joined = joined.join(spark.read.parquet(str(plan_dir)), "customer_id", "left")
        actions = plan.decided.actions if plan is not None else []
        decided = joined.mapInPandas(
            decide_batches(blob, contractual, catalogue, actions, feature_columns, as_of, plan is not None),
            schema(OUTPUT_COLUMNS))
        decided.orderBy("customer_id").write.parquet(str(written))
        log = decision_log.BatchLog(workspace, as_of) if plan is not None else None
        for k, part in enumerate(sorted(written.glob("part-*.parquet"))):
            if log is not None:
                log.add(log_rows(pq.read_table(part, columns=list(LOG_COLUMNS)).to_pandas()))
            part.rename(tmp / f"part-{k:05d}.parquet")
        for scratch in (pass1, plan_dir, written):
            shutil.rmtree(scratch, ignore_errors=True)
        timings["explain_write_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - inputs.started
        summary = plan.summary() if plan is not None else None
        layout = {"engine": "spark", "partitions": partitions, "driver_peak_gb": _driver_peak_gb()}
        finish(inputs, tmp, inputs.manifest(scored_count, summary, timings, layout), log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if log is not None:
            log.discard()
        raise
    return ScoreResult(out, inputs.as_of, inputs.customers, scored_count, inputs.champions.versions, summary, timings,
                       note=catalogue_note(catalogue, inputs.champions))
