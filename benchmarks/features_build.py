"""Benchmark: build every monthly feature snapshot of a simulated base.

Simulates N customers over two years (not timed), then times `build_features` over all
its 24 monthly snapshots, in a child process so that its peak memory (max RSS) is its
own. DuckDB runs with a 3 GB memory limit and spills beyond it.

    .venv/bin/python benchmarks/features_build.py [--customers 100000] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(workspace: Path) -> None:
    from clm.workspace import Workspace
    from features.build import build_features
    from features.snapshots import features_dir

    ws = Workspace(workspace)
    shutil.rmtree(features_dir(ws), ignore_errors=True)
    start = time.perf_counter()
    result = build_features(ws)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"seconds": seconds, "peak_gb": peak, "dates": len(result.built_dates), "rows": result.rows,
                      "groups": result.groups}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    import pandas as pd

    from clm.workspace import Workspace
    from simulator.engine import SimulationConfig
    from simulator.run import simulate_to_workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        print(f"simulating {args.customers:,} customers (not timed) ...", flush=True)
        simulate_to_workspace(
            SimulationConfig(args.customers, 1, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC")), ws
        )
        runs = []
        for i in range(args.repeats):
            proc = subprocess.run([sys.executable, __file__, "--child", str(ws.root)], capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"run {i + 1}: {runs[-1]['seconds']:.1f} s, peak {runs[-1]['peak_gb']:.2f} GB", flush=True)
    r = runs[0]
    print(f"\nFeature build: {args.customers:,} customers x {r['dates']} monthly snapshots, {len(r['groups'])} groups "
          f"({', '.join(r['groups'])}), {r['rows']:,} rows")
    print(f"  median wall time {statistics.median(x['seconds'] for x in runs):.1f} s, "
          f"median peak RSS {statistics.median(x['peak_gb'] for x in runs):.2f} GB "
          f"({r['rows'] / statistics.median(x['seconds'] for x in runs):,.0f} rows/s)")


if __name__ == "__main__":
    main()
