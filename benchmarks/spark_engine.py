"""Benchmark: the local engine against the Spark engine, side by side in one run.

1. Features: `clm features build --as-of D` on a simulated base (benchmarks/policy.py's,
   100,000 customers by default, built once), in two fresh workspaces over the same raw
   files, once per engine, each in its own process.
2. Scoring: `clm score --budget B` (B = 0.15 per customer, `clm run`'s default) on a base of
   1,000,000 customers tiled from the trained one (benchmarks/batch.py's `scaled_base`),
   local, then `--engine spark`, each in its own process; the two outputs' decisions must
   agree.
3. Extrapolation to a cluster, from the Spark run's own timings: the executors' work
   (pass 1: scores; pass 2: decisions and reasons) is spread over partitions, so its
   core-seconds per customer, measured here on local[2], give the per-core throughput;
   the driver's work (preparing, and the selection over the whole base) does not spread
   and grows with the base. Time on N executors of C cores for M customers ~ Spark's start
   + driver seconds x M/1M + executor core-seconds x M/1M / (N x C). Assumes the cluster's
   cores are as fast as these and the shuffle's cost grows with the data, not the executors.

Wall time and peak memory (RSS of the process and every child: Spark's JVM and Python
workers included) are measured per command (benchmarks/measure.py).

    .venv/bin/python benchmarks/spark_engine.py [--score-customers 1000000] [--base /tmp/bench100k]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from measure import Measured, run_measured  # noqa: E402

CLM = str(ROOT / ".venv" / "bin" / "clm")
ENGINES = ("local", "spark")


def clm(args: list[str]) -> Measured:
    done = run_measured([CLM, *args])
    if done.returncode != 0:
        raise SystemExit(f"clm {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


def engine_args(engine: str, master: str) -> list[str]:
    return [] if engine == "local" else ["--engine", "spark", "--spark-master", master]


def fresh_raw_copy(base: Path, dst: Path) -> Path:
    """A workspace holding only the base's raw files (linked), validated once (as ingest does)."""
    from batch import validated

    shutil.rmtree(dst, ignore_errors=True)
    (dst / "raw").mkdir(parents=True)
    for path in (base / "raw").iterdir():
        (dst / "raw" / path.name).symlink_to(path.resolve())
    return validated(dst)


def features(base: Path, scratch: Path, as_of: str, master: str) -> dict[str, tuple[Measured, int]]:
    from clm.workspace import Workspace
    from features.snapshots import snapshot_path, snapshot_rows

    results = {}
    for engine in ENGINES:
        ws = fresh_raw_copy(base, scratch / f"features-{engine}")
        done = clm(["features", "build", "--as-of", as_of, "-w", str(ws), *engine_args(engine, master)])
        customers = snapshot_rows(snapshot_path(Workspace(ws), "profile", pd.Timestamp(as_of, tz="UTC")))
        results[engine] = (done, customers)
        print(f"  features, {engine}: {done.wall_s:.1f} s, peak {done.peak_gb:.2f} GB")
    return results


def scoring(base: Path, scratch: Path, customers: int, master: str) -> dict[str, tuple[Measured, dict]]:
    from batch import scaled_base

    ws = scaled_base(base, scratch / f"base-{customers}", customers)
    results = {}
    for engine in ENGINES:
        out = scratch / f"scores-{engine}-{customers}.parquet"
        done = clm(["score", "--out", str(out), "--budget", str(0.15 * customers), "-w", str(ws),
                    *engine_args(engine, master)])
        results[engine] = (done, json.loads((out / "_manifest.json").read_text()))
        print(f"  scoring, {engine}: {done.wall_s:.1f} s, peak {done.peak_gb:.2f} GB")
    local, spark = (results[e][1]["decisions"] for e in ENGINES)
    if local is None or spark is None:  # no uplift champion: scores only
        if local is not spark:
            raise SystemExit(f"The engines disagree:\n local {local}\n spark {spark}")
        print("  no decisions (no uplift champion): scores only")
        return results
    if local["actions"] != spark["actions"] or abs(local["expected_value"] - spark["expected_value"]) > 1e-6 * abs(
            local["expected_value"]):
        raise SystemExit(f"The engines disagree:\n local {local}\n spark {spark}")
    print("  the two outputs' decisions agree (action counts, expected value)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("/tmp/bench100k"))
    parser.add_argument("--base-customers", type=int, default=100_000)
    parser.add_argument("--score-customers", type=int, default=1_000_000)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--cores", type=int, default=2, help="cores of --spark-master (local[2]: 2)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/clm-bench-spark"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from policy import build  # benchmarks/policy.py: the trained base

    build(args.base, args.base_customers, None)
    from clm.workspace import Workspace

    as_of = f"{Workspace(args.base).read_manifest().end:%Y-%m-%d}"
    args.scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"Features at {as_of} on the {args.base_customers:,}-customer base:")
    built = features(args.base, args.scratch, as_of, args.spark_master)
    print(f"Scoring {args.score_customers:,} customers:")
    scored = scoring(args.base, args.scratch, args.score_customers, args.spark_master)

    print(f"\n{'step':<34}{'engine':<8}{'wall s':>8}{'customers/s':>13}{'peak GB':>9}")
    for engine in ENGINES:
        done, customers = built[engine]
        print(f"{'features (8 groups, one date)':<34}{engine:<8}{done.wall_s:>8.1f}{customers / done.wall_s:>13,.0f}"
              f"{done.peak_gb:>9.2f}")
    for engine in ENGINES:
        done, manifest = scored[engine]
        print(f"{'score and decide':<34}{engine:<8}{done.wall_s:>8.1f}{args.score_customers / done.wall_s:>13,.0f}"
              f"{done.peak_gb:>9.2f}")
    ratios = {step: built["spark"][0].wall_s / built["local"][0].wall_s if step == "features"
              else scored["spark"][0].wall_s / scored["local"][0].wall_s for step in ("features", "score")}
    print(f"Spark / local wall time on this {args.cores}-core machine: features {ratios['features']:.2f}, "
          f"scoring {ratios['score']:.2f}")

    t = scored["spark"][1]["timings_s"]
    millions = args.score_customers / 1e6
    executor_core_s = (t["score_s"] + t["explain_write_s"]) * args.cores / millions  # per million customers
    driver_s = (t["prepare_s"] + t["decide_s"]) / millions
    startup = scored["spark"][0].wall_s - t["total_s"]
    print(f"\nMeasured on {args.spark_master}: executors {executor_core_s:,.0f} core-seconds per million customers "
          f"({1e6 / executor_core_s:,.0f} customers/s per core); driver {driver_s:.1f} s per million "
          f"(preparing and the selection); Spark's start and the process {startup:.0f} s; the driver's Python "
          f"process peaked at {scored['spark'][1]['driver_peak_gb']:.2f} GB.")
    print(f"Extrapolated (executors of 4 cores):\n{'customers':>12}" + "".join(f"{f'{n} exec':>10}" for n in (1, 4, 16, 64)))
    for size in (10_000_000, 50_000_000):
        m = size / 1e6
        row = [startup + driver_s * m + executor_core_s * m / (n * 4) for n in (1, 4, 16, 64)]
        print(f"{size:>12,}" + "".join(f"{s / 60:>9.1f}m" for s in row))
    print(f"(the driver's share, {driver_s:.1f} s per million customers, bounds the speed-up; "
          f"whole benchmark {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
