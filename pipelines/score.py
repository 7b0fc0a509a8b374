"""The nightly batch: score and decide for every customer at a date (`clm score`).

Every customer known at the as-of date (signed up before it) gets a row, with the stage
the rules give them then. Churn, upsell and CLV scores, the predicted stage, and a
decision are given to the customers in the model population at that date (the rule the
models were trained on, `decisions.population`):

- non-contractual (transactions only): everyone with a paid purchase before the date,
  however long ago; churn there is an estimate, so lapsed customers are still scored;
- contractual: customers whose contract is live. A cancelled customer keeps null
  churn/upsell/CLV scores (the contract has ended) and the predicted stage `churned`.

A column is null where its model has no champion for the workspace. How it runs, with
flat memory whatever the size of the base:

1. the features come from the offline store's snapshot files at the date (built first if
   missing), read `chunk_rows` customers at a time; each chunk is scored
   (`serving.scoring.score_rows`, the function the API calls) and its scores written to
   a temporary part;
2. with an uplift champion, the decision funnel runs once over the whole population, so
   that the budget and the daily capacities are allocated across the base
   (`pipelines.decisions.plan_batch`), then exploration;
3. each chunk again: its decisions, with reasons for those who get an action, are added
   to its scores and the part is written; the decisions go to the decision log.

The output is a Parquet dataset (a folder of `part-*.parquet` files) with `_manifest.json`
inside (models and versions, counts, timings, input fingerprint). It is built in a hidden
temporary folder beside the target and renamed in only when complete: a run killed at any
point leaves the previous output (or none) and can simply be run again; the same as-of
gives the same rows. `pipelines.score_spark` runs the same steps on Spark (`--engine
spark`), from the same functions (`prepare`, `with_decisions`, `finish`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clm.contracts import require_valid
from clm.domain import Table
from clm.errors import ClmError
from clm.files import write_text_atomically
from clm.output_paths import JSON_SIGNATURE
from clm.workspace import Workspace
from decisions import log as decision_log
from decisions.catalogue import Catalogue, load_catalogue
from decisions.journal import JournalUnavailable
from decisions.log import DEFAULT_EXPLORATION
from decisions.population import population
from features.build import build_features
from features.snapshots import (
    read_snapshot,
    snapshot_chunks,
    snapshot_files,
    snapshot_parts,
    snapshot_rows,
)
from features.store import apply as apply_features
from features.store import historical_features
from pipelines.decisions import (
    OUTPUT_COLUMNS,
    log_rows,
    plan_batch,
    plan_frame,
    with_decisions,
)
from pipelines.outputs import (
    MANIFEST_NAME,
    is_batch_output,
    is_whole_batch,
    read_manifest,
    scores_dir,
)
from serving.scoring import (
    SCALAR_SCORES,
    Champions,
    Scored,
    load_champions,
    load_decision_data,
    score_frame,
    score_rows,
)
from training import registry

__all__ = ["SCALAR_SCORES", "score_frame", "features_at", "score"]

CHUNK_ROWS = 100_000
Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass
class ScoreResult:
    path: Path
    as_of: pd.Timestamp
    customers: int
    scored: int  # customers in the model population, who got scores
    models: dict[str, str | None]  # model -> champion version used
    decisions: dict[str, Any] | None = None  # BatchPlan.summary(), with an uplift champion
    timings: dict[str, float] = field(default_factory=dict)
    kept: bool = False  # keep_current: the output already held these inputs' scores and was left as it was
    note: str = ""  # what the user should know about the decisions (`catalogue_note`)


def catalogue_note(catalogue: Catalogue, champions: Champions) -> str:
    """The actions the uplift champion learned that the catalogue leaves out (never
    recommended), said; empty when it names them all."""
    learned = champions.uplift.actions if champions.uplift is not None else []
    missing = [a for a in learned if a not in catalogue.contact_ids]
    if not missing:
        return ""
    if len(missing) == len(learned):
        return (f"the uplift champion learned {', '.join(learned)} and the catalogue names none of them, so no action "
                "can be recommended: pass the business's catalogue with --catalogue FILE")
    return f"the catalogue leaves out {', '.join(missing)}, which the uplift champion learned: never recommended"


def features_at(workspace: Workspace, as_of: pd.Timestamp, contractual: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Every group's features for every customer known at as_of, by Feast's point-in-time
    retrieval, and a mask of the rows in the model population then (backtests and policy
    evaluation; the batch reads the same snapshots in chunks)."""
    build_features(workspace, [as_of], raw_checked=True)
    apply_features(workspace)
    customers = read_snapshot(workspace, "profile", as_of)[["customer_id"]]
    frame = historical_features(workspace, customers.assign(event_timestamp=as_of), "churn")  # every group
    frame = frame.sort_values("customer_id").reset_index(drop=True)
    live = set(population(workspace, [as_of], contractual)["customer_id"])
    return frame, frame["customer_id"].isin(live).to_numpy()


# ------------------------------------------------------------------ output paths
def check_output_path(workspace: Workspace, out: Path) -> None:
    """Refuse an output path holding something other than an earlier batch output (or, in
    the workspace's own scores/ folder, anything clm left there, e.g. a damaged batch):
    only that is replaced. (The CLI checks a user's --out further first: clm.output_paths.)"""
    in_scores = out.parent.resolve() == scores_dir(workspace).resolve()
    if (out.exists() or out.is_symlink()) and not is_batch_output(out) and not in_scores:
        raise ClmError(f"--out {out} already holds something that is not an earlier `clm score` output: clm "
                       f"replaces only its own output. Name a new path, e.g. {out.parent / 'scores.parquet'}.")


def write_json(report: dict[str, object], path: Path) -> None:
    """A JSON report, signed as clm's (its first key: a later run may replace it), written
    beside the target and renamed in."""
    key, value = JSON_SIGNATURE
    write_text_atomically(path, json.dumps({key: value, **report}, indent=2))


def temporary_folder(out: Path) -> Path:
    """A fresh hidden folder beside out; leftovers of killed runs are removed first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    return tmp


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished folder to out; an earlier output is moved aside first and then
    removed (a reader sees the old output or the new one, never a mix)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists() or out.is_symlink():
        out.rename(old)
    tmp.rename(out)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def fingerprint(paths: list[Path], settings: dict[str, object]) -> str:
    """SHA-256 of the input files' bytes (a snapshot folder's part files) and the run's settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in (part for p in paths for part in snapshot_parts(p)):
        h.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def consent_sources(workspace: Workspace) -> list[object]:
    """What the batch's consents are read from (the customers and consents tables' files, the
    consent changes sent to the API): a change, a withdrawal above all, makes a new output
    where the same inputs would keep the old one (`keep_current`)."""
    files = [workspace.table_path(t) for t in (Table.CUSTOMERS, Table.CONSENTS)]
    stamps = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.exists()]
    try:
        sent = decision_log.journal(workspace).last_consent()
    except JournalUnavailable:
        sent = -1
    return [*stamps, sent]


# ------------------------------------------------------------------ the batch
@dataclass
class BatchInputs:
    """What one batch run reads, gathered before any output is written (both engines)."""

    workspace: Workspace
    as_of: pd.Timestamp
    out: Path
    contractual: bool
    champions: Champions
    catalogue: Catalogue
    budget: float | None
    exploration: float
    customers: int
    fingerprint: str
    started: float

    def manifest(self, scored: int, summary: dict[str, Any] | None, timings: Mapping[str, float],
                 layout: Mapping[str, object]) -> str:
        """The output's _manifest.json; layout: how the output was cut (chunks or partitions)."""
        return json.dumps({
            "as_of": f"{self.as_of:%Y-%m-%d}", "workspace": str(self.workspace.root), "models": self.champions.versions,
            "customers": self.customers, "scored": scored, **layout,
            "decisions": summary, "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "input_fingerprint": self.fingerprint,
            "columns": list(OUTPUT_COLUMNS),
        }, indent=2)


def prepare(workspace: Workspace, as_of: pd.Timestamp, out: Path, tracking_uri: str | None,
            catalogue: Catalogue | None, budget: float | None, exploration: float, spark: Any = None) -> BatchInputs:
    """Check the output path, the raw data and the champions; build the date's snapshots if
    missing (on Spark when given); fingerprint the inputs."""
    started = time.perf_counter()
    check_output_path(workspace, out)
    manifest = require_valid(workspace)
    client = registry.connect(workspace, tracking_uri)
    registry.require_champions(workspace, client)
    champions = load_champions(client)
    catalogue = catalogue or load_catalogue()
    build_features(workspace, [as_of], raw_checked=True, spark=spark)
    files = snapshot_files(workspace, as_of)
    inputs = fingerprint(files, {"as_of": str(as_of), "models": champions.versions,
                                 "catalogue": catalogue.model_dump(mode="json"), "budget": budget,
                                 "exploration": exploration, "consents": consent_sources(workspace)})
    return BatchInputs(workspace, as_of, out, manifest.business == "contractual", champions, catalogue, budget,
                       exploration, snapshot_rows(files[0]), inputs, started)


def kept_output(inputs: BatchInputs) -> ScoreResult | None:
    """The output already at `out`, if it was made from the same inputs."""
    earlier = read_manifest(inputs.out) if is_whole_batch(inputs.out) else None
    if earlier is None or earlier.get("input_fingerprint") != inputs.fingerprint:
        return None
    return ScoreResult(inputs.out, inputs.as_of, int(earlier["customers"]), int(earlier["scored"]), inputs.champions.versions,
                       earlier.get("decisions"), dict(earlier.get("timings_s", {})), kept=True)


def finish(inputs: BatchInputs, tmp: Path, manifest: str, log: decision_log.BatchLog | None) -> None:
    """Commit the decision log and swap the finished output in."""
    (tmp / MANIFEST_NAME).write_text(manifest)
    if log is not None:
        log.commit()  # the log replaces the date's earlier batch (idempotent), just before the output
    _swap_in(tmp, inputs.out)


def score(workspace: Workspace, as_of: pd.Timestamp, out: Path, tracking_uri: str | None = None,
          catalogue: Catalogue | None = None, budget: float | None = None,
          exploration: float = DEFAULT_EXPLORATION, chunk_rows: int = CHUNK_ROWS,
          progress: Progress | None = None, keep_current: bool = False) -> ScoreResult:
    """Score and decide for every customer known at as_of into `out` (see the module's
    docstring). keep_current: if `out` already holds the output of the same inputs (snapshot
    files, champion versions, catalogue, budget, exploration), leave it and return its figures."""
    inputs = prepare(workspace, as_of, out, tracking_uri, catalogue, budget, exploration)
    if keep_current and (kept := kept_output(inputs)) is not None:
        return kept
    champions, catalogue, contractual = inputs.champions, inputs.catalogue, inputs.contractual
    say = progress or (lambda step, done, total: None)
    chunks = max(1, -(-inputs.customers // chunk_rows))
    data = load_decision_data(workspace, as_of, catalogue.lookback_days, real=True)
    timings = {"prepare_s": time.perf_counter() - inputs.started}

    tmp = temporary_folder(out)
    log: decision_log.BatchLog | None = None
    try:
        # 1. scores, chunk by chunk
        t0, parts = time.perf_counter(), []
        for k, chunk in enumerate(snapshot_chunks(workspace, as_of, chunk_rows)):
            scored = score_rows(champions, chunk, contractual, data.consents, catalogue.contact_ids)
            scored.scores.assign(as_of=as_of).to_parquet(tmp / f"scores-{k:05d}.parquet", index=False)
            scored.scores = pd.DataFrame()  # written; only the funnel's columns stay in memory
            parts.append(scored)
            say("Scoring", k + 1, chunks)
        timings["score_s"] = time.perf_counter() - t0
        scored_count = int(sum(p.live.sum() for p in parts))  # in the model population
        # 2. the decisions, across the whole base
        t0 = time.perf_counter()
        everyone = Scored.concat(parts)
        offsets = np.cumsum([0, *(int(p.decided.sum()) for p in parts)])
        plan = plan_batch(catalogue, everyone, data, as_of, budget, exploration)
        timings["decide_s"] = time.perf_counter() - t0
        del everyone, parts
        # 3. decisions and reasons added per chunk, and the decision log
        t0 = time.perf_counter()
        log = decision_log.BatchLog(workspace, as_of) if plan is not None else None
        planned = plan_frame(plan) if plan is not None else None
        actions = plan.decided.actions if plan is not None else []
        for k, chunk in enumerate(snapshot_chunks(workspace, as_of, chunk_rows)):
            scores_path = tmp / f"scores-{k:05d}.parquet"
            chunk_plan = planned.iloc[offsets[k]:offsets[k + 1]] if planned is not None else None
            part = with_decisions(pd.read_parquet(scores_path), chunk, chunk_plan, actions, catalogue, champions, contractual)
            if log is not None:
                log.add(log_rows(part))
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp / f"part-{k:05d}.parquet")
            scores_path.unlink()
            say("Deciding" if plan is not None else "Writing", k + 1, chunks)
        timings["explain_write_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - inputs.started
        summary = plan.summary() if plan is not None else None
        finish(inputs, tmp, inputs.manifest(scored_count, summary, timings, {"chunks": chunks, "chunk_rows": chunk_rows}),
               log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if log is not None:
            log.discard()
        raise
    return ScoreResult(out, inputs.as_of, inputs.customers, scored_count, champions.versions, summary, timings,
                       note=catalogue_note(catalogue, champions))
