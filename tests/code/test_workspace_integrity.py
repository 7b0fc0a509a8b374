"""Workspace integrity: a second business, damaged files, concurrent and killed commands,
an unreachable Redis. Each case: the exit code, a message naming the file, table, column
or option, and nothing already in the workspace changed."""
from __future__ import annotations

import gc
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clm.domain import Table
from clm.workspace import Workspace
from pipelines.servers import free_port
from tests.clirun import (
    child_environment,
    ingest_args,
    invoke,
    lock_held,
    tree_digest,
    write_sales,
)


@pytest.fixture
def featured_copy(workspace_copy: Workspace) -> Workspace:
    """A simulated workspace with its feature snapshots built and registered in Feast."""
    assert invoke("features", "build", "-w", str(workspace_copy.root)).exit_code == 0
    assert invoke("features", "apply", "-w", str(workspace_copy.root)).exit_code == 0
    gc.collect()  # closes the in-process store's SQLite connection: its WAL is folded in now, not mid-test
    return workspace_copy


def test_ingest_into_a_workspace_holding_a_business_is_refused(featured_copy, tmp_path):
    ws = featured_copy.root
    before = tree_digest(ws)
    result = invoke(*ingest_args(write_sales(tmp_path / "sales.csv"), ws))
    assert result.exit_code == 2
    assert result.mentions(f"Workspace '{ws}' already holds simulator data (contractual, 2024-01-01")
    assert "raw, features, feature_repo" in result.output and "--replace" in result.output
    assert tree_digest(ws) == before

    refused = invoke("simulate", "-n", "50", "-w", str(ws))  # another simulation is another business too
    assert refused.exit_code == 2 and "--replace" in refused.output and tree_digest(ws) == before


def test_replace_starts_the_workspace_over(featured_copy, tmp_path):
    ws = featured_copy.root
    result = invoke(*ingest_args(write_sales(tmp_path / "sales.csv"), ws, "--replace"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ws.iterdir() if not p.name.startswith(".")) == ["raw"]  # features, Feast gone
    manifest = Workspace(ws).read_manifest()
    assert manifest.source == "ingest" and manifest.business == "non_contractual"
    assert sorted(Workspace(ws).read_table(Table.CUSTOMERS).customer_id) == ["c1", "c2"]
    assert invoke("validate", "-w", str(ws)).exit_code == 0

    # The ingested business is not a simulation: `clm run` never simulates over it, not even with --replace.
    before = tree_digest(ws)
    refused = invoke("run", "-n", "50", "--replace", "-w", str(ws))
    assert refused.exit_code == 2 and "holds ingested data (ingest data (non_contractual" in refused.output
    assert "never simulates over it" in refused.output
    assert tree_digest(ws) == before


def test_a_failed_replacement_keeps_the_old_business(featured_copy, tmp_path):
    ws = featured_copy.root
    before = tree_digest(ws)
    broken = tmp_path / "broken.csv"
    broken.write_text("customer,date,total\nc1,2024-05-01,-3\n")  # a negative amount
    result = invoke(*ingest_args(broken, ws, "--replace"))
    assert result.exit_code in (2, 3) and "total" in result.output
    assert tree_digest(ws) == before


def test_a_truncated_raw_table_is_reported_as_broken(featured_copy):
    ws = featured_copy.root
    usage = Workspace(ws).table_path(Table.USAGE)
    usage.write_bytes(usage.read_bytes()[: usage.stat().st_size // 2])
    before = tree_digest(ws)
    for command in (["validate"], ["features", "build"], ["train", "--models", "churn"],
                    ["score", "--out", str(ws.parent / "s.parquet")]):
        result = invoke(*command, "-w", str(ws))
        assert result.exit_code == 3, (command, result.output)
        assert "usage: unreadable Parquet file usage.parquet (damaged or truncated" in result.output, command
        assert "Traceback" not in result.output
    assert tree_digest(ws) == before and not (ws.parent / "s.parquet").exists()


def test_a_truncated_manifest_is_a_clear_error(featured_copy):
    ws = featured_copy.root
    manifest = Workspace(ws).manifest_path
    manifest.write_text(manifest.read_text()[:40])
    before = tree_digest(ws)
    for command in (["validate"], ["features", "build"], ["train"], ["score", "--out", str(ws.parent / "s.parquet")],
                    ["backtest", "--as-of", "2024-03-01"]):
        result = invoke(*command, "-w", str(ws))
        assert result.exit_code == 2, (command, result.output)
        assert result.mentions(f"manifest {manifest} is damaged") and "--replace" in result.output, command
    assert tree_digest(ws) == before




def test_redis_down_leaves_the_feature_store_as_it_was(featured_copy):
    ws = featured_copy.root
    before = tree_digest(ws)
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = invoke("features", "apply", "--online-store", "redis", "--redis-url", url, "-w", str(ws))
    assert result.exit_code == 2 and f"Cannot reach Redis at {url}" in result.output and "--redis-url" in result.output
    assert tree_digest(ws) == before
    # The workspace still works with its embedded online store.
    assert invoke("features", "materialize", "-w", str(ws)).exit_code == 0

    bad = invoke("features", "apply", "--online-store", "redis", "--redis-url", "localhost:sixty", "-w", str(ws))
    assert bad.exit_code == 2 and "--redis-url 'localhost:sixty' is not host:port" in bad.output


def test_a_second_writer_is_refused_while_the_first_runs_and_free_once_it_is_killed(featured_copy):
    ws = featured_copy.root
    with lock_held(ws, "clm train") as holder:
        before = tree_digest(ws)
        sales = write_sales(ws.parent / "sales.csv")
        for command in (["train", "--models", "churn", "-w", str(ws)], ["features", "build", "-w", str(ws)],
                        ["score", "--out", str(ws.parent / "s.parquet"), "-w", str(ws)],
                        ingest_args(sales, ws, "--replace")):
            result = invoke(*command)
            assert result.exit_code == 2, (command, result.output)
            assert result.mentions(f"Workspace '{ws}' is busy: `clm train` (pid {holder.pid}")
        assert tree_digest(ws) == before
    # Killed (SIGKILL): the lock went with the process.
    assert invoke("features", "build", "-w", str(ws)).exit_code == 0
    # Reading is never locked out.
    assert invoke("validate", "-w", str(ws)).exit_code == 0


START_A_RUN_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    import mlflow
    from clm.workspace import Workspace
    from training import registry
    ws = Workspace.at(sys.argv[1])
    client = registry.connect(ws, create=True)  # as training does
    mlflow.set_experiment(experiment_id=registry.experiment(client, ws, "churn"))
    run = mlflow.start_run(tags=registry.run_owner_tags(ws))
    print(run.info.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` during training
""")


def test_a_killed_training_run_is_marked_failed_by_the_next(tmp_path):
    import mlflow

    from training import registry

    ws = Workspace(tmp_path / "ws")
    died = subprocess.run([sys.executable, "-c", START_A_RUN_AND_DIE, str(ws.root)], capture_output=True, text=True,
                          env=child_environment())
    assert died.returncode == -signal.SIGKILL
    abandoned = died.stdout.strip()
    client = registry.connect(ws)
    assert client.get_run(abandoned).info.status == "RUNNING"
    mlflow.set_experiment(experiment_id=registry.experiment(client, ws, "churn"))
    with mlflow.start_run(tags=registry.run_owner_tags(ws)) as alive:  # this process: alive, left alone
        assert registry.fail_abandoned_runs(client, ws) == [abandoned]
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    run = client.get_run(abandoned)
    assert run.info.status == "FAILED" and "ended before the run finished" in run.data.tags["clm.failure"]
    assert registry.fail_abandoned_runs(client, ws) == []  # once


def test_sigterm_ends_a_command_cleanly(tmp_path):
    """`kill` during a simulation: no staging folder left, no raw data half-written, lock free."""
    ws = tmp_path / "ws"
    clm = Path(sys.executable).parent / "clm"
    proc = subprocess.Popen([str(clm), "simulate", "-n", "20000", "-w", str(ws)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # wait until it holds the workspace
        if (ws / ".clm.lock").exists() and (ws / ".clm.lock").read_text():
            break
        if proc.poll() is not None:
            pytest.fail(f"clm simulate ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "Traceback" not in proc.stderr.read()
    assert not Workspace(ws).has_raw() and not list(ws.glob(".raw-*"))
    assert invoke("simulate", "-n", "20", "--end", "2024-02-29", "-w", str(ws)).exit_code == 0


SIGTERM_DURING_AN_IMPORT = textwrap.dedent("""
    import os, signal, sys, time
    from pipelines.cli.common import exit_cleanly_on_sigterm
    exit_cleanly_on_sigterm()
    sys.path.insert(0, sys.argv[1])
    import swallowing  # kills itself while imported, and swallows what that raises, as numpy's init can
    time.sleep(5)
    print("went on")
""")

SWALLOWING_MODULE = textwrap.dedent("""
    import os, signal, time
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs here
    except BaseException:
        pass
""")


def test_a_sigterm_during_an_import_still_ends_the_command(tmp_path):
    (tmp_path / "swallowing.py").write_text(SWALLOWING_MODULE)
    ended = subprocess.run([sys.executable, "-c", SIGTERM_DURING_AN_IMPORT, str(tmp_path)], capture_output=True,
                           text=True, env=child_environment(), timeout=60)
    assert ended.returncode == 128 + signal.SIGTERM, ended.stderr
    assert "went on" not in ended.stdout and "Traceback" not in ended.stderr


SIGTERM_TWICE = textwrap.dedent("""
    import os, signal, time
    from pipelines.cli.common import exit_cleanly_on_sigterm
    exit_cleanly_on_sigterm()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    finally:
        print("cleanup started", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # `kill` again, impatient
        time.sleep(0.3)
        print("cleanup done", flush=True)
""")


def test_a_second_sigterm_does_not_cut_the_cleanup_short():
    ended = subprocess.run([sys.executable, "-c", SIGTERM_TWICE], capture_output=True, text=True,
                           env=child_environment(), timeout=60)
    assert ended.returncode == 128 + signal.SIGTERM, ended.stderr
    assert ended.stdout.split() == ["cleanup", "started", "cleanup", "done"]


SIGTERM_DURING_THE_SWAP = textwrap.dedent("""
    import os, signal, time
    from clm.workspace import interrupts_held
    from pipelines.cli.common import exit_cleanly_on_sigterm
    exit_cleanly_on_sigterm()
    with interrupts_held():  # as raw/ is swapped for the new data
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        print("swapped", flush=True)
    time.sleep(5)
    print("went on")
""")


def test_a_sigterm_during_the_swap_of_raw_data_waits_for_its_end():
    ended = subprocess.run([sys.executable, "-c", SIGTERM_DURING_THE_SWAP], capture_output=True, text=True,
                           env=child_environment(), timeout=60)
    assert ended.returncode == 128 + signal.SIGTERM, ended.stderr
    assert ended.stdout.split() == ["swapped"]


@pytest.mark.parametrize("group", ["features", "models"])
def test_a_command_group_alone_shows_its_help(group):
    result = invoke(group)
    assert result.exit_code == 0 and "Usage: clm" in result.output and "Commands" in result.output


def test_ingest_alone_shows_its_help_with_every_table():
    result = invoke("ingest")
    assert result.exit_code == 0 and "Usage: clm ingest" in result.output and "--mapping" in result.output
    for table in ("customers", "subscriptions", "transactions", "usage", "tickets", "nps", "consents", "campaigns"):
        assert table in result.output, table
