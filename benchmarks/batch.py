"""Benchmark: the nightly batch (`clm score`), end to end, against its floor.

1. A trained base: the workspace of benchmarks/policy.py (`clm run -n 100000`, built once if
   missing; its uplift champion decides).
2. Scaled bases of 250,000 and 1,000,000 customers: the trained base's customers (consents),
   contact history (actions) and feature snapshots at the data's end, tiled with fresh ids
   (copy k of customer C is `C-k`), beside its models and its other raw tables. Every
   customer of a copy has its original's features, so the work per customer is the base's.
3. The raw data validated once (`clm validate`, as ingest does), then `clm score --budget B`
   (B = 0.15 per customer, the default of `clm run`) on each, in its own process: wall time by step (from the output's manifest) and peak memory (RSS of the
   process, sampled every 20 ms).
4. The floor: raw LightGBM `predict` of the same models (churn, upsell, stage, CLV and every
   uplift estimator) on the same matrix (prepared beforehand, not timed), in one process.
   Ratio = floor time / batch time (the issue asks >= 0.5).

Goals (issue 12), 2 cores: 1,000,000 customers in under 3 minutes; ratio >= 0.5; peak
memory under 2 GB and flat between 250,000 and 1,000,000.

    .venv/bin/python benchmarks/batch.py [--sizes 250000,1000000] [--base /tmp/clm-bench-policy]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from measure import run_measured  # noqa: E402


def tiled(table: pa.Table, copies: int, rows: int | None = None) -> pa.Table:
    """The table `copies` times over, customer ids made unique (copy k: `id-k`)."""
    parts = []
    for k in range(copies):
        part = table if k == 0 else table.set_column(
            table.schema.get_field_index("customer_id"), "customer_id",
            pa.array([f"{c}-{k:02d}" for c in table.column("customer_id").to_pylist()]))
        if k and "decision_id" in table.column_names:  # a key of its own: unique in each copy
            ids = table.column("decision_id").to_numpy()
            part = part.set_column(part.schema.get_field_index("decision_id"), "decision_id",
                                   pa.array(ids + k * (int(ids.max()) + 1)).cast(table.schema.field("decision_id").type))
        parts.append(part)
    result = pa.concat_tables(parts)
    return result.slice(0, rows) if rows is not None else result


def scaled_base(base: Path, dst: Path, customers: int) -> Path:
    """A workspace of `customers` customers tiled from the trained base (built once)."""
    from clm.workspace import Workspace
    from features.build import build_features
    from features.freshness import definitions_fingerprint, record_snapshots
    from features.snapshots import snapshot_files

    # Tiled again when the feature definitions changed: `clm score` would otherwise find the
    # tiles stale and build the snapshot from the raw tables, where the copies have no events.
    source = Workspace(base)
    definitions = definitions_fingerprint(source)
    marker = dst.with_name(dst.name + ".built")
    if marker.exists() and marker.read_text() == definitions:
        return validated(dst)
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "raw").mkdir(parents=True)
    as_of = source.read_manifest().end
    build_features(source, [as_of])  # the base's snapshot as this code makes it
    n = pq.ParquetFile(source.raw_dir / "customers.parquet").metadata.num_rows
    copies = -(-customers // n)
    people = tiled(pq.read_table(source.raw_dir / "customers.parquet"), copies, customers)
    keep_ids = set(people.column("customer_id").to_pylist())
    for path in source.raw_dir.iterdir():
        if path.name == "customers.parquet":
            pq.write_table(people, dst / "raw" / path.name)
        elif path.name == "actions.parquet":  # the contact history scales with the base
            table = tiled(pq.read_table(path), copies)
            mask = pa.array([c in keep_ids for c in table.column("customer_id").to_pylist()])
            pq.write_table(table.filter(mask), dst / "raw" / path.name)
        else:
            (dst / "raw" / path.name).symlink_to(path)
    shutil.copytree(base / "mlflow", dst / "mlflow")
    ws = Workspace(dst)
    for path in snapshot_files(source, as_of):
        table = tiled(pq.read_table(path), copies)
        mask = pa.array([c in keep_ids for c in table.column("customer_id").to_pylist()])
        table = table.filter(mask).sort_by("customer_id")
        out = dst / "features" / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out, compression="zstd")
    record_snapshots(ws)
    marker.write_text(definitions)
    return validated(dst)


def validated(path: Path) -> Path:
    """Validate the raw data once, as `clm validate` (or ingest) does before nightly runs."""
    from clm.contracts import record_valid, recorded_valid, validate_workspace
    from clm.workspace import Workspace

    ws = Workspace(path)
    if not recorded_valid(ws.raw_dir):
        started = time.perf_counter()
        validate_workspace(ws).raise_if_invalid()
        record_valid(ws.raw_dir)
        print(f"  validated {path} once in {time.perf_counter() - started:.0f} s (as `clm validate` does)")
    return path


def run_batch(workspace: Path, out: Path, budget: float) -> tuple[float, float, dict]:
    """`clm score` in its own process: wall seconds, peak RSS in GB (with children), manifest."""
    clm = ROOT / ".venv" / "bin" / "clm"
    done = run_measured([str(clm), "score", "--out", str(out), "--budget", str(budget), "-w", str(workspace)])
    if done.returncode != 0:
        raise SystemExit(f"clm score failed:\n{done.stderr[-3000:]}")
    return done.wall_s, done.peak_gb, json.loads((out / "_manifest.json").read_text())


def floor_seconds(workspace: Path) -> tuple[float, int]:
    """Raw LightGBM predict of every model the batch applies, on the same (prepared) matrix."""
    from clm.workspace import Workspace
    from features.snapshots import snapshot_chunks
    from serving.scoring import load_champions
    from training import registry
    from training.models import prepare_features

    ws = Workspace(workspace)
    as_of = ws.read_manifest().end
    frame = pd.concat(snapshot_chunks(ws, as_of, 250_000), ignore_index=True)
    champions = load_champions(registry.connect(ws))
    boosters = []
    for model in champions.models.values():
        booster = getattr(model.estimator, "booster_", None)
        if booster is not None:
            boosters.append((booster, prepare_features(frame, model.features, model.categories)))
    uplift = champions.uplift
    if uplift is not None:
        x = prepare_features(frame, uplift.features, uplift.categories)
        for per_action in (*uplift.estimators.values(), uplift.control):
            for estimator in per_action.values():
                booster = getattr(estimator, "booster_", None)
                if booster is not None:
                    boosters.append((booster, x))
    started = time.perf_counter()
    for booster, x in boosters:
        booster.predict(x)
    return time.perf_counter() - started, len(boosters)


def driver_agreement(workspace: Path, rows: int = 20_000) -> list[str]:
    """How often the reasons' top drivers (path contributions, `serving.contributions`) are
    TreeSHAP's (LightGBM's pred_contrib), per driver model, on the first rows of the base."""
    from clm.workspace import Workspace
    from features.snapshots import snapshot_chunks
    from serving.contributions import top_contributions
    from serving.scoring import load_champions
    from training import registry
    from training.models import prepare_matrix

    ws = Workspace(workspace)
    frame = next(iter(snapshot_chunks(ws, ws.read_manifest().end, rows)))
    out = []
    for name, model in load_champions(registry.connect(ws)).models.items():
        booster = getattr(model.estimator, "booster_", None)
        if name not in ("churn", "upsell") or booster is None:
            continue
        x = prepare_matrix(model.inputs(frame), model.input_names, model.categories)
        started = time.perf_counter()
        top_ours, _ = top_contributions(model.estimator, booster, x, 3)  # what the reasons read
        ours_s, started = time.perf_counter() - started, time.perf_counter()
        shap = booster.predict(x, pred_contrib=True)[:, :-1]
        shap_s = time.perf_counter() - started
        top_shap = np.argsort(-shap, axis=1, kind="stable")[:, :3]
        common = np.mean([len(set(a) & set(b)) / 3 for a, b in zip(top_ours, top_shap)])
        out.append(f"{name}: {len(x):,} customers in {ours_s:.2f} s (TreeSHAP {shap_s:.2f} s, {shap_s / ours_s:.0f}x); "
                   f"top driver TreeSHAP's for {np.mean(top_ours[:, 0] == top_shap[:, 0]):.0%}, "
                   f"top three in common {common:.0%}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="250000,1000000")
    parser.add_argument("--base", type=Path, default=Path("/tmp/clm-bench-policy"))
    parser.add_argument("--base-customers", type=int, default=100_000)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/clm-bench-batch"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from policy import build  # benchmarks/policy.py: the trained base

    build(args.base, args.base_customers, None)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        started = time.perf_counter()
        ws = scaled_base(args.base, args.scratch / f"base-{size}", size)
        print(f"{size:,} customers: scaled base ready in {time.perf_counter() - started:.0f} s ({ws})")
        out = args.scratch / f"scores-{size}.parquet"
        wall, peak, manifest = run_batch(ws, out, 0.15 * size)
        floor, models = floor_seconds(ws)
        t = manifest["timings_s"]
        plan = manifest["decisions"] or {"actions": {}}  # None: no uplift champion, no decisions
        core = t["score_s"] + t.get("decide_s", 0.0) + t["explain_write_s"]
        treated = sum(k for a, k in plan["actions"].items() if a != "none")
        rows.append((size, wall, t, core, floor, models, peak, treated, manifest["scored"]))
    print(f"\n{'customers':>10}{'wall s':>8}{'prepare':>9}{'score':>7}{'decide':>8}{'reasons+write':>15}"
          f"{'cust/s':>9}{'floor s':>9}{'floor/batch':>13}{'peak GB':>9}{'treated':>9}")
    for size, wall, t, core, floor, models, peak, treated, scored in rows:
        print(f"{size:>10,}{wall:>8.1f}{t['prepare_s']:>9.1f}{t['score_s']:>7.1f}{t.get('decide_s', 0.0):>8.1f}"
              f"{t['explain_write_s']:>15.1f}{size / wall:>9,.0f}{floor:>9.1f}{floor / wall:>13.2f}{peak:>9.2f}"
              f"{treated:>9,}")
    print(f"(floor: raw LightGBM predict of the {rows[0][5]} boosters the batch applies, on the prepared matrix; "
          "wall: the whole `clm score` process, validation and model loading included)")
    if len(rows) > 1:
        print(f"Peak memory {rows[0][6]:.2f} GB at {rows[0][0]:,} vs {rows[-1][6]:.2f} GB at {rows[-1][0]:,} "
              f"({rows[-1][6] / rows[0][6]:.2f}x for {rows[-1][0] / rows[0][0]:.0f}x the customers).")
    print("Reasons' drivers (path contributions) against TreeSHAP:")
    for line in driver_agreement(args.scratch / f"base-{rows[-1][0]}"):
        print(f"  {line}")
    big = rows[-1]
    print(f"Goals: {big[0]:,} in {big[1]:.0f} s (< 180 s: {'met' if big[1] < 180 else 'NOT met'}); "
          f"floor/batch {big[4] / big[1]:.2f} (>= 0.5: {'met' if big[4] / big[1] >= 0.5 else 'NOT met'}); "
          f"peak {big[6]:.2f} GB (< 2 GB: {'met' if big[6] < 2 else 'NOT met'}).")


if __name__ == "__main__":
    main()
