"""Benchmark: the README's first command after the install, `.venv/bin/clm run` on the
default base (5,000 simulated customers), as a newcomer runs it: from the clone's root, a
fresh workspace each time, its own process.

Prints, per run and as medians over --runs: the wall time, the peak memory (the process
and its children), and where the time goes by the job's own phases (the moment each phase's
header appears in its output: simulate, validate, features, online store, train, policy,
score and decide, report, summary).

Goal (issue 29): under 2 minutes on 2 cores.

    .venv/bin/python benchmarks/first_run.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from measure import run_measured  # noqa: E402  (the same wall time and peak memory as the other benchmarks')

GOAL_S = 120.0
# The phase headers `clm run` prints, in order (pipelines/jobs/run.py).
PHASES = ("1/5 Simulate", "2/5 Validate", "3/5 Features", "4/5 Online store", "5/5 Train", "Policy",
          "Score and decide", "Report", "Summary")


def one_run(workspace: Path) -> tuple[float, float, dict[str, float]]:
    """Wall seconds, peak GB and seconds per phase of one `clm run -w workspace`."""
    seen: dict[str, float] = {}

    def mark(line: str, at: float) -> None:
        for phase in PHASES:
            if phase not in seen and f" {phase} " in line and "─" in line:
                seen[phase] = at

    done = run_measured([".venv/bin/clm", "run", "-w", str(workspace)], {**os.environ, "COLUMNS": "200"}, ROOT, mark)
    if done.returncode != 0:
        raise RuntimeError(f"clm run exited with {done.returncode}:\n{done.stdout[-2000:]}")
    marks = [(p, seen[p]) for p in PHASES if p in seen] + [("end", done.wall_s)]
    phases = {p: marks[i + 1][1] - t for i, (p, t) in enumerate(marks[:-1])}
    return done.wall_s, done.peak_gb, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    walls, peaks, by_phase = [], [], {p: [] for p in PHASES}
    for i in range(args.runs):
        folder = Path(tempfile.mkdtemp(prefix="clm-first-run-"))
        try:
            wall, peak, phases = one_run(folder / "workspace")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        walls.append(wall)
        peaks.append(peak)
        for p, s in phases.items():
            by_phase[p].append(s)
        print(f"run {i + 1}: {wall:.1f} s, peak {peak:.2f} GB; " + ", ".join(f"{p} {s:.1f} s" for p, s in phases.items()))
    median = float(np.median(walls))
    print(f"\n`clm run` (default base, 5,000 customers), median of {args.runs}: {median:.1f} s, peak "
          f"{np.median(peaks):.2f} GB")
    print("Where the time goes (medians): " + ", ".join(f"{p} {np.median(s):.1f} s" for p, s in by_phase.items() if s))
    print(f"Goal (issue 29): under {GOAL_S:.0f} s after the install: {'met' if median < GOAL_S else 'NOT met'} "
          f"({median / GOAL_S:.2f} of the goal)")


if __name__ == "__main__":
    main()
