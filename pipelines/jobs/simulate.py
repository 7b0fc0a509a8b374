"""The simulate job: a simulated business, with its ground truth, into WORKSPACE/raw."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clm.workspace import Workspace
from pipelines.jobs.reporting import Quiet, Reporter
from simulator.engine import SimulationConfig
from simulator.run import simulate_to_workspace


@dataclass
class Simulated:
    raw_dir: Path
    rows: dict[str, int]  # table -> rows written


def simulate(workspace: Workspace, config: SimulationConfig, replace: bool = False,
             reporter: Reporter | None = None) -> Simulated:
    """Simulate `config` into the workspace; a workspace that holds a business already is
    refused unless `replace` (started over once the new data is complete)."""
    reporter = reporter or Quiet()
    workspace.check_new_business(replace)  # before any work
    with reporter.counting(f"Simulating {config.n_customers:,} customers", config.n_days) as count:
        rows = simulate_to_workspace(config, workspace, lambda done, total: count(done, total), replace)
    return Simulated(workspace.raw_dir, rows)
