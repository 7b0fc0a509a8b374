"""Simulate a business into a workspace: the entry point `clm simulate` calls."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import pandas as pd

from clm.workspace import RawManifest, Workspace, write_manifest
from simulator.engine import Simulation, SimulationConfig
from simulator.tables import SIMULATED_TABLES, write_all


def simulate_to_workspace(
    config: SimulationConfig,
    workspace: Workspace,
    progress: Callable[[int, int], None] | None = None,
    replace: bool = False,
) -> dict[str, int]:
    """Run the simulation and write WORKSPACE/raw atomically; returns rows per table.

    A workspace already holding a business is refused unless replace, which starts it over
    (see `Workspace.writing_raw`)."""
    workspace.check_new_business(replace)  # before the simulation: say it at once
    output = Simulation(config).run(progress)
    end_exclusive = config.end + pd.Timedelta(days=1)
    with workspace.writing_raw(replace) as staging:
        rows = write_all(output, staging)
        write_manifest(
            staging,
            RawManifest(
                source="simulator",
                business="contractual",
                data_start=config.start.isoformat(),
                data_end=end_exclusive.isoformat(),
                tables=[t.value for t in SIMULATED_TABLES],
                details={
                    "customers": config.n_customers,
                    "seed": config.seed,
                    "params": _jsonable(asdict(config.params)),
                    "rows": rows,
                },
            ),
        )
    return rows


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
