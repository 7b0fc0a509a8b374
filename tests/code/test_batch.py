"""The nightly batch (`clm score`): a Parquet dataset with a manifest, the same rows on a
rerun, and nothing partial when a run is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from decisions.log import read_decisions
from decisions.population import population
from tests.clirun import child_environment, invoke, tree_digest
from training import registry

pytestmark = pytest.mark.slow


def _parts(out: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(out).items() if k.startswith("part-")}


def _kill_midway(args: list[str], out: Path) -> None:
    """Start `clm score ARGS`, and kill it (SIGKILL: no clean-up runs) once it has written
    part of its output into its temporary folder."""
    clm = Path(sys.executable).parent / "clm"
    proc = subprocess.Popen([str(clm), *args], env=child_environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any(len(list(tmp.glob("part-*"))) >= 2 for tmp in out.parent.glob(f".{out.name}.tmp-*")):
        assert proc.poll() is None, "the run ended before it could be killed midway"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_the_batch_is_atomic_idempotent_and_survives_a_kill(trained_copy, tmp_path):
    ws = trained_copy.root
    out = tmp_path / "scores.parquet"
    args = ["score", "--out", str(out), "--chunk-rows", "100", "--budget", "300", "-w", str(ws)]

    _kill_midway(args, out)  # the first run is killed: no output at all
    assert not out.exists()

    done = invoke(*args)
    assert done.exit_code == 0, done.output
    assert done.mentions("Scored") and done.mentions(f"Wrote {out}")
    first, parts = pd.read_parquet(out), _parts(out)
    manifest = json.loads((out / "_manifest.json").read_text())
    client = registry.connect(trained_copy)
    assert manifest["models"] == {m: registry.alias_version(client, m, registry.CHAMPION)
                                  for m in ("churn", "upsell", "stage", "clv", "uplift")}
    assert manifest["customers"] == len(first) == 2000 and manifest["chunks"] == 20 == len(parts)
    live = population(trained_copy, [first.as_of.iloc[0]], contractual=True)  # live contracts, by the SQL rule
    assert manifest["scored"] == len(live) == first.stage_probabilities.notna().sum() == first.action.notna().sum()
    assert len(manifest["input_fingerprint"]) == 64 and manifest["timings_s"]["total_s"] > 0
    assert manifest["decisions"]["spent"] <= 300 and first.action_cost.sum() == pytest.approx(manifest["decisions"]["spent"])
    assert {json.dumps(json.loads(v), sort_keys=True) for v in first.model_versions} == {
        json.dumps(manifest["models"], sort_keys=True)}

    _kill_midway(args, out)  # a rerun is killed: the earlier output stays, byte for byte
    assert _parts(out) == parts

    again = invoke(*args)  # and a rerun gives the same rows, the same files, one log per date
    assert again.exit_code == 0, again.output
    assert _parts(out) == parts and pd.read_parquet(out).equals(first)
    assert not list(tmp_path.glob(".scores.parquet.*"))  # no leftovers of the killed runs
    log = read_decisions(trained_copy)
    assert len(log) == first.action.notna().sum() and log.decision_id.is_unique
    assert not [p for p in (ws / "decisions").iterdir() if ".tmp" in p.name]
