"""A trained workspace through three `clm retrain` runs (killed midway, then to the end,
then again), and what each left: shared by the retrain and monitor tests (session fixture
`retrained` in conftest)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from clm.workspace import Workspace
from tests.clirun import child_environment, run_clm, tree_digest
from tests.conftest import copy_trained
from training import registry

MODELS = ("churn", "upsell", "stage", "clv", "uplift")
RETRAIN_AS_OF = "2025-09-01"  # not the date `clm run` trained at: every model trains


def _champions(ws: Workspace) -> dict[str, str | None]:
    client = registry.connect(ws)
    return {m: registry.alias_version(client, m, registry.CHAMPION) for m in MODELS}


def _versions(db: Path, name: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM model_versions WHERE name = ?", (name,)).fetchone()[0]


def _kill_once_churn_is_registered(ws: Workspace) -> None:
    """Start `clm retrain` and kill it (SIGKILL) as soon as its new churn version is in the
    registry: the gate has judged it, the other models are still training."""
    clm = Path(sys.executable).parent / "clm"
    db = ws.root / "mlflow" / "mlflow.db"
    before = _versions(db, "clm-churn")
    proc = subprocess.Popen([str(clm), "retrain", "--as-of", RETRAIN_AS_OF, "-w", str(ws.root)],
                            env=child_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while _versions(db, "clm-churn") == before:
            assert proc.poll() is None, "retrain ended before it registered a churn version"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def retrain_three_times(main_job, folder: Path) -> dict:  # type: ignore[type-arg]
    """A trained workspace through three retrains: killed midway, then to the end, then again."""
    ws = copy_trained(main_job, folder / "ws")
    seen = {"before": _champions(ws), "ws": ws}
    _kill_once_churn_is_registered(ws)
    seen["after_kill"] = _champions(ws)
    seen["served_after_kill"] = registry.champion_versions(registry.connect(ws))  # what the API and the batch load
    seen["scores_after_kill"] = (ws.root / "scores" / f"{RETRAIN_AS_OF}.parquet").exists()
    seen["second"] = run_clm("retrain", "--as-of", RETRAIN_AS_OF, "-w", str(ws.root))
    seen["after_second"] = _champions(ws)
    seen["scores_digest"] = tree_digest(ws.root / "scores")
    seen["third"] = run_clm("retrain", "--as-of", RETRAIN_AS_OF, "-w", str(ws.root))
    seen["after_third"] = _champions(ws)
    return seen


