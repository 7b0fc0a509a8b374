"""Benchmark: simulate 100,000 customers over two years into a fresh workspace.

Each repeat runs in its own process so that its peak memory (max RSS) is its own.
Prints wall time (simulation + writing Parquet), peak memory and rows per table, then
medians against the targets (< 60 s, < 4 GB).

    .venv/bin/python benchmarks/simulate.py [--customers 100000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 60.0
TARGET_GB = 4.0


def child(customers: int, seed: int, out: Path) -> None:
    import pandas as pd

    from clm.workspace import Workspace
    from simulator.engine import SimulationConfig
    from simulator.run import simulate_to_workspace

    config = SimulationConfig(customers, seed, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC"))
    start = time.perf_counter()
    rows = simulate_to_workspace(config, Workspace(out))
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    print(json.dumps({"seconds": seconds, "peak_gb": peak_gb, "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.child:
        child(args.customers, args.seed, args.child)
        return

    results = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", tmp, "--customers", str(args.customers), "--seed", str(args.seed)],
                capture_output=True, text=True, check=True,
            )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"run {i + 1}: {r['seconds']:.1f} s, peak {r['peak_gb']:.2f} GB", flush=True)

    seconds = statistics.median(r["seconds"] for r in results)
    peak = statistics.median(r["peak_gb"] for r in results)
    print(f"\nclm simulate: {args.customers:,} customers x 2 years (2024-01-01..2025-12-31), {args.repeats} runs")
    print(f"  median wall time  {seconds:6.1f} s   target < {TARGET_SECONDS:.0f} s   ratio {seconds / TARGET_SECONDS:.2f}")
    print(f"  median peak RSS   {peak:6.2f} GB  target < {TARGET_GB:.0f} GB   ratio {peak / TARGET_GB:.2f}")
    print("  rows per table:")
    for table, n in results[0]["rows"].items():
        print(f"    {table:22s} {n:>12,}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
