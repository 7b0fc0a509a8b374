"""A careful new user's mistakes (issue 22): each case is refused with exit code 2 (or 3),
a message naming the option, file or table and what to do, no traceback, and every
workspace and folder involved byte for byte as it was; or, where clm can mend what it
made itself (a damaged snapshot), mended and said."""
from __future__ import annotations

import gc
import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clm.domain import Table
from clm.workspace import MARKER_NAME, Workspace
from decisions.catalogue import DEFAULT_CATALOGUE
from pipelines.servers import free_port
from tests.clirun import (
    child_environment,
    ingest_args,
    invoke,
    lock_held,
    tree_digest,
    write_sales,
)


def refused(result, *named: str) -> bool:
    """Exit code 2, each of `named` in the message, no traceback."""
    return result.exit_code == 2 and all(result.mentions(n) for n in named) and "Traceback" not in result.output


def a_project(root: Path) -> Path:
    """A folder that is not a workspace but holds folders named as clm's are (a clone of
    this repository has `features/`): what `--replace` once deleted."""
    root.mkdir()
    (root / "features").mkdir()
    (root / "features" / "__init__.py").write_text("# the project's own package\n")
    (root / "scores").mkdir()
    (root / "scores" / "q3.csv").write_text("kept\n")
    (root / "raw").mkdir()
    (root / "raw" / "notes.txt").write_text("mine\n")
    (root / "README.md").write_text("# a project\n")
    return root


# ------------------------------------------------------------------ data loss
def test_replace_never_removes_a_folder_clm_did_not_make(tmp_path, monkeypatch):
    project = a_project(tmp_path / "project")
    before = tree_digest(project)
    sales = write_sales(tmp_path / "sales.csv")
    for args in (["simulate", "-n", "100", "--replace", "-w", str(project)],
                 ["run", "-n", "100", "--replace", "-w", str(project)],
                 ingest_args(sales, project, "--replace"),
                 ["features", "build", "-w", str(project)]):
        result = invoke(*args)
        assert refused(result, f"'{project}' is not a clm workspace", "features/"), (args, result.output)
        assert tree_digest(project) == before, args

    # From inside the project, the ways a script names "here" by mistake.
    monkeypatch.chdir(project)
    assert refused(invoke("simulate", "-n", "100", "--replace", "-w", ""), "--workspace is empty")
    assert refused(invoke("simulate", "-n", "100", "--replace", "-w", "."), "'.' is not a clm workspace")
    assert refused(invoke("simulate", "-n", "100", "--replace", env={"CLM_WORKSPACE": ""}),
                   "$CLM_WORKSPACE is set but empty")
    assert refused(invoke("models", "list", "-w", ""), "--workspace is empty")
    assert tree_digest(project) == before and not (project / MARKER_NAME).exists()


def test_clm_takes_a_new_or_empty_folder_and_marks_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("simulate", "-n", "50", "--end", "2024-02-29", "-w", str(empty)).exit_code == 0
    assert (empty / MARKER_NAME).is_file()
    # Marked, it is clm's: --replace starts it over, and leaves the user's own file beside it.
    (empty / "notes.txt").write_text("mine")
    result = invoke("simulate", "-n", "60", "--end", "2024-02-29", "--replace", "-w", str(empty))
    assert result.exit_code == 0, result.output
    assert len(Workspace(empty).read_table(Table.CUSTOMERS)) == 60 and (empty / "notes.txt").read_text() == "mine"


def test_a_workspace_of_an_earlier_clm_is_still_clms(workspace_copy):
    """A workspace made before the marker existed (its raw data's manifest says it is clm's)."""
    ws = workspace_copy.root
    (ws / MARKER_NAME).unlink()
    result = invoke("simulate", "-n", "40", "--end", "2024-02-29", "--replace", "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert (ws / MARKER_NAME).is_file() and len(Workspace(ws).read_table(Table.CUSTOMERS)) == 40


def test_an_output_inside_a_workspace_is_refused(workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    for args in (["score", "--out", str(ws / "raw")],
                 ["score", "--out", str(ws)],
                 ["score", "--out", str(ws / "features" / "s.parquet")],
                 ["report", "--out", str(ws / "raw" / "_manifest.json")],
                 ["backtest", "--as-of", "2024-03-01", "--json", str(ws / "mlflow" / "b.json")],
                 ["monitor", "--html", str(ws / "features" / "m.html")],
                 ["evaluate-policy", "--json", str(ws / "raw" / "p.json")]):
        result = invoke(*args, "-w", str(ws))
        assert refused(result, "where clm keeps its own data", str(ws)), (args, result.output)
        assert tree_digest(ws) == before, args


def test_score_replaces_only_an_earlier_score_output(workspace_copy, tmp_path):
    ws = workspace_copy.root
    theirs = tmp_path / "theirs.parquet"  # a folder of the user's that happens to hold a _manifest.json
    theirs.mkdir()
    (theirs / "_manifest.json").write_text('{"source": "another tool"}')
    (theirs / "part-0.parquet").write_bytes(b"their data")
    a_file = tmp_path / "scores.parquet"
    a_file.write_bytes(b"a file of theirs")
    before = {**tree_digest(tmp_path / "theirs.parquet"), "file": a_file.read_bytes()}
    assert refused(invoke("score", "--out", str(theirs), "-w", str(ws)), f"--out {theirs}", "no earlier `clm score`")
    assert refused(invoke("score", "--out", str(a_file), "-w", str(ws)), f"--out {a_file} is a file")
    assert {**tree_digest(theirs), "file": a_file.read_bytes()} == before


# ------------------------------------------------------------------ silent wrong results
def test_placeholder_dates_are_refused_or_left_out_and_counted(tmp_path):
    export = write_sales(tmp_path / "sales.csv", "c1,2024-05-01,10\nc2,1900-01-01,4\nc3,1970-01-01,5\nc1,2024-06-02,7\n")
    ws = tmp_path / "ws"
    result = invoke(*ingest_args(export, ws))
    assert refused(result, "date before 1990-01-01 in column 'date'", "row 3: '1900-01-01'", "row 4: '1970-01-01'",
                   "--skip-bad-rows", "--earliest-date")
    assert not ws.exists()
    result = invoke(*ingest_args(export, ws, "--skip-bad-rows"))
    assert result.exit_code == 0 and result.mentions("Skipped 2 row(s): date before 1990-01-01")
    manifest = Workspace(ws).read_manifest()
    assert manifest.data_start[:10] == "2024-05-01"  # not a century back
    assert sorted(Workspace(ws).read_table(Table.CUSTOMERS).customer_id) == ["c1"]


DATE_COMMANDS = [
    ["features", "build", "--as-of"], ["features", "materialize", "--as-of"], ["train", "--as-of"],
    ["score", "--out", "OUT", "--as-of"], ["retrain", "--as-of"], ["monitor", "--as-of"], ["report", "--as-of"],
    ["evaluate-policy", "--as-of"], ["backtest", "--as-of"], ["simulate", "--start"], ["simulate", "--end"],
]


@pytest.mark.parametrize("command", DATE_COMMANDS, ids=lambda c: " ".join(c[:-1]).replace(" OUT", "") + " " + c[-1])
def test_every_date_option_takes_a_day_written_yyyy_mm_dd(command, workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    option = command[-1]
    args = [str(tmp_path / "s.parquet") if a == "OUT" else a for a in command]
    for value, says in (("01/03/2024", "reads as 2024-01-03 or 2024-03-01"), ("13/03/2024", "write 2024-03-13"),
                        ("2024-03-01T12:00", "write 2024-03-01"), ("2024-3-1", "YYYY-MM-DD"),
                        ("0202-03-01", "outside the days clm handles")):
        result = invoke(*args, value, "-w", str(ws))
        assert refused(result, f"{option}", says), (command, value, result.output)
    assert tree_digest(ws) == before and not (tmp_path / "s.parquet").exists()


def test_commands_that_read_create_nothing(workspace_copy, tmp_path):
    nowhere = tmp_path / "nowhere"
    for args in (["models", "list"], ["models", "history", "churn"], ["validate"], ["report"],
                 ["monitor"], ["score", "--out", str(tmp_path / "s.parquet")], ["features", "materialize"],
                 ["serve", "--port", str(free_port())]):
        result = invoke(*args, "-w", str(nowhere))
        assert result.exit_code == 2 and "Traceback" not in result.output, (args, result.output)
        assert not nowhere.exists(), args
    assert not (tmp_path / "s.parquet").exists()

    ws = workspace_copy.root  # raw data, nothing trained
    assert invoke("validate", "-w", str(ws)).exit_code == 0  # recorded valid (a record any reader may write)
    before = tree_digest(ws)
    result = invoke("models", "list", "-w", str(ws))
    assert result.exit_code == 0 and result.mentions("No registered models") and "clm train" in result.output
    assert refused(invoke("score", "--out", str(tmp_path / "s.parquet"), "-w", str(ws)), "clm train")
    assert refused(invoke("models", "history", "churn", "-w", str(ws)), "No models in workspace", "clm train")
    assert tree_digest(ws) == before and not (ws / "features").exists() and not (ws / "mlflow").exists()
    # ... so a later simulation there is no "second business".
    assert invoke("simulate", "-n", "30", "--end", "2024-02-29", "-w", str(nowhere)).exit_code == 0


@pytest.fixture
def featured(workspace_copy) -> Path:
    """The small simulated workspace with its snapshots built and registered in Feast."""
    ws = workspace_copy.root
    assert invoke("features", "build", "-w", str(ws)).exit_code == 0
    assert invoke("features", "apply", "-w", str(ws)).exit_code == 0
    gc.collect()  # closes the in-process store's SQLite connection: its WAL is folded in now, not mid-test
    return ws


def test_a_damaged_snapshot_is_made_again_and_said(featured):
    ws = featured
    snapshot = ws / "features" / "rfm" / "2024-03-01.parquet"
    expected = pq.read_table(snapshot)
    snapshot.write_bytes(snapshot.read_bytes()[: snapshot.stat().st_size // 2])  # a full disk, a killed copy
    result = invoke("features", "materialize", "-w", str(ws))  # reads without building: says it
    assert refused(result, str(snapshot), "damaged", "clm features build")
    result = invoke("features", "build", "-w", str(ws))
    assert result.exit_code == 0 and result.mentions("1 damaged snapshot file(s)") and "made again" in result.output
    assert pq.read_table(snapshot).equals(expected)

    (ws / "features" / "_build.json").write_text('{"raw": "0a1b')  # cut short: every snapshot is made again
    result = invoke("features", "build", "-w", str(ws))
    assert result.exit_code == 0 and result.mentions("0 already built"), result.output
    assert pq.read_table(snapshot).equals(expected)


def test_the_report_says_a_damaged_batch_instead_of_no_batch(trained_copy, tmp_path):
    ws = trained_copy.root
    batch = next((ws / "scores").glob("*.parquet"))
    (batch / "_manifest.json").write_text('{"as_of": "20')
    out = tmp_path / "report.html"
    result = invoke("report", "--out", str(out), "-w", str(ws))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert f"{batch} is not a finished nightly batch" in page and "clm retrain" in page


def test_a_catalogue_key_given_twice_and_thresholds_that_never_flag_are_refused(workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    shipped = DEFAULT_CATALOGUE
    twice = tmp_path / "twice.yaml"
    twice.write_text(shipped.read_text() + "\nvalue:\n  keep_months: 6\n")  # the shipped one has a value: block
    line = shipped.read_text().count("\n") + 2
    for args in (["score", "--out", str(tmp_path / "s.parquet")], ["evaluate-policy"], ["retrain"]):
        result = invoke(*args, "--catalogue", str(twice), "-w", str(ws))
        assert refused(result, str(twice), "the key 'value' is given twice", f"and {line}"), (args, result.output)
    nan = tmp_path / "nan.yaml"
    nan.write_text("feature_psi: .nan\nscore_psi: 0.25\n")
    assert refused(invoke("monitor", "--thresholds", str(nan), "-w", str(ws)), str(nan), "feature_psi", "finite")
    assert tree_digest(ws) == before


def test_monitor_before_the_champions_window_is_refused(trained_copy):
    ws = trained_copy.root
    before = tree_digest(ws)
    result = invoke("monitor", "--as-of", "2024-03-01", "-w", str(ws))
    assert refused(result, "--as-of 2024-03-01 is before the window the champions were judged on", "clm-churn v",
                   "Choose --as-of 2025-")
    assert tree_digest(ws) == before


class _Predicts:
    """A CLV challenger that predicts given values (the gate reads spec and predict)."""

    def __init__(self, values):
        from training.models import SPECS

        self.spec, self.values, self.calibrator = SPECS["clv"], values, None

    def predict(self, frame):
        return self.values


def test_the_gate_keeps_a_clv_model_below_bgnbd_gamma_gamma_back():
    import numpy as np

    from training.registry import decide_promotion

    test = pd.DataFrame({"clv": [10.0, 20.0, 30.0, 40.0, 50.0]})
    backwards = _Predicts(np.array([50.0, 40.0, 30.0, 20.0, 10.0]))  # Spearman -1 by construction
    decision = decide_promotion(backwards, None, test, classic={"bgnbd_gg_spearman": 0.634})
    assert not decision.promote and "spearman -1.0000 is below BG/NBD + Gamma-Gamma's 0.6340" in decision.reason
    in_order = _Predicts(np.array([11.0, 19.0, 33.0, 38.0, 52.0]))  # Spearman 1
    assert decide_promotion(in_order, None, test, classic={"bgnbd_gg_spearman": 0.634}).promote
    assert decide_promotion(backwards, None, test, classic={}).promote  # no classic fitted: the usual gate


# ------------------------------------------------------------------ tracebacks
def test_out_of_bound_numbers_are_refused(workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    for args in (["backtest", "--as-of", "2024-03-01", "--horizon-days", "999999999"],
                 ["train", "--horizon-days", "999999999"], ["monitor", "--horizon-days", "999999999"],
                 ["retrain", "--horizon-days", "999999999"], ["train", "--horizon-days", "6"]):
        assert refused(invoke(*args, "-w", str(ws)), "--horizon-days", "out of bounds", "from 7 to 3,653"), args
    assert refused(invoke("simulate", "--seed", "-1", "-w", str(tmp_path / "new")), "--seed -1 is out of bounds")
    assert refused(invoke("simulate", "-n", "1000000000000", "-w", str(tmp_path / "new")), "--customers")
    assert refused(invoke("simulate", "--start", "2024-01-01", "--end", "2199-01-01", "-w", str(tmp_path / "new")),
                   "simulated period")
    assert refused(invoke("score", "--out", str(tmp_path / "s.parquet"), "--budget", "inf", "-w", str(ws)), "--budget")
    assert refused(invoke("score", "--out", str(tmp_path / "s.parquet"), "--exploration", "nan", "-w", str(ws)),
                   "--exploration")
    assert tree_digest(ws) == before and not (tmp_path / "new").exists()


def test_files_that_are_not_utf8_are_named(workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("contact_policy:\n  max_contacts: 2\n# caf\xe9\n".encode("latin-1"))
    for args in (["score", "--out", str(tmp_path / "s.parquet"), "--catalogue", str(latin)],
                 ["evaluate-policy", "--catalogue", str(latin)], ["retrain", "--catalogue", str(latin)],
                 ["serve", "--port", str(free_port()), "--catalogue", str(latin)],
                 ["monitor", "--thresholds", str(latin)],
                 ["features", "build", "--engine", "spark", "--spark-conf", str(latin)]):
        result = invoke(*args, "-w", str(ws))
        assert refused(result, str(latin), "is not UTF-8 text: byte 0xe9 at line 3"), (args, result.output)
    assert tree_digest(ws) == before


@pytest.mark.parametrize("value", [".inf", "1.0e+200", ".nan"])
def test_unbounded_catalogue_values_are_named_on_load(value, workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    shipped = DEFAULT_CATALOGUE
    catalogue = tmp_path / "catalogue.yaml"
    text = shipped.read_text()
    assert "  keep_months: 12" in text
    catalogue.write_text(text.replace("  keep_months: 12", f"  keep_months: {value}"))
    for args in (["score", "--out", str(tmp_path / "s.parquet")], ["evaluate-policy"]):
        result = invoke(*args, "--catalogue", str(catalogue), "-w", str(ws))
        assert refused(result, str(catalogue), "value.keep_months"), (args, result.output)
    assert tree_digest(ws) == before


def unwritable(tmp_path: Path) -> Path:
    """A folder that takes no new file, for root too (who ignores permission bits)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_outputs_are_checked_before_any_work(workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    locked = unwritable(tmp_path)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    cases = [(["backtest", "--as-of", "2024-03-01", "--json", str(folder)], f"--json {folder}: it is a folder"),
             (["backtest", "--as-of", "2024-03-01", "--json", str(locked / "b.json")], "does not take new files"),
             (["report", "--out", str(locked / "r.html")], "does not take new files"),
             (["report", "--out", str(folder)], "it is a folder"),
             (["monitor", "--html", str(locked / "m.html")], "does not take new files"),
             (["score", "--out", str(locked / "s.parquet")], "does not take new files"),
             (["evaluate-policy", "--json", str(locked / "p.json")], "does not take new files"),
             (["evaluate-policy", "--json", str(tmp_path / "x.txt" / "p.json")], "x.txt is a file")]
    (tmp_path / "x.txt").write_text("a file")
    for args, says in cases:
        result = invoke(*args, "-w", str(ws))
        assert refused(result, says), (args, result.output)
    assert tree_digest(ws) == before and not any(folder.iterdir())


def test_a_damaged_model_store_is_a_clear_error(trained_copy, tmp_path):
    ws = trained_copy.root
    db = ws / "mlflow" / "mlflow.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    before = tree_digest(ws)
    for args in (["models", "list"], ["models", "history", "churn"], ["score", "--out", str(tmp_path / "s.parquet")],
                 ["report", "--out", str(tmp_path / "r.html")], ["monitor"], ["train", "--models", "churn"]):
        result = invoke(*args, "-w", str(ws))
        assert refused(result, f"The MLflow store {db} is damaged", "clm train"), (args, result.output)
    assert tree_digest(ws) == before


def test_tracking_uris_that_are_paths_or_nonsense_are_named(trained_copy):
    ws = trained_copy.root
    before = tree_digest(ws)
    path = str(ws / "mlflow" / "mlflow.db")
    assert refused(invoke("models", "list", "--tracking-uri", path, "-w", str(ws)),
                   f"--tracking-uri '{path}' is a path", f"sqlite:///{path}")
    assert refused(invoke("models", "list", "--tracking-uri", "not a uri", "-w", str(ws)),
                   "--tracking-uri 'not a uri' is not an MLflow tracking URI")
    # Common for MLflow users: a folder in the environment. A real process reads it at start.
    clm = Path(sys.executable).parent / "clm"
    done = subprocess.run([str(clm), "models", "list", "-w", str(ws)], capture_output=True, text=True, cwd=ws.parent,
                          env={**child_environment(), "MLFLOW_TRACKING_URI": "./mlruns"})
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2 and "$MLFLOW_TRACKING_URI './mlruns' is a path" in said and "unset it" in said, said
    assert "Traceback" not in said
    assert tree_digest(ws) == before




def test_serve_on_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", "--port", str(port), "-w", str(tmp_path / "ws"))
    assert refused(result, f"Cannot listen on 127.0.0.1:{port}", "--port")
    assert not (tmp_path / "ws").exists()


def test_iso_dates_with_a_12_hour_time_are_read_as_written(tmp_path):
    export = write_sales(tmp_path / "sales.csv", "c1,2024-05-03 02:15 PM,10\nc2,2024-05-13 11:05 AM,4\n")
    ws = tmp_path / "ws"
    assert invoke(*ingest_args(export, ws)).exit_code == 0
    times = Workspace(ws).read_table(Table.TRANSACTIONS).sort_values("customer_id").event_time
    assert times.tolist() == [pd.Timestamp("2024-05-03 14:15", tz="UTC"), pd.Timestamp("2024-05-13 11:05", tz="UTC")]


def test_an_empty_export_is_named(tmp_path):
    for name, data in (("empty.csv", b""), ("empty.csv.gz", gzip.compress(b""))):
        export = tmp_path / name
        export.write_bytes(data)
        result = invoke(*ingest_args(export, tmp_path / "ws"))
        assert refused(result, str(export), "empty"), result.output
    assert not (tmp_path / "ws").exists()


def test_models_are_named_as_models_list_prints_them(trained_copy):
    ws = trained_copy.root
    listed = invoke("models", "list", "-w", str(ws))
    assert listed.exit_code == 0 and "clm-churn" in listed.output
    history = invoke("models", "history", "clm-churn", "-w", str(ws))
    assert history.exit_code == 0 and "clm-churn: champion changes" in history.output, history.output
    assert refused(invoke("models", "history", "churm", "-w", str(ws)),
                   "'churm' is not a clm model", "churn, upsell, stage, clv, uplift")
    assert refused(invoke("train", "--models", "churn,clv2", "-w", str(ws)), "'clv2' is not a clm model")


def test_a_bad_spark_master_is_named_before_spark_starts(workspace_copy):
    ws = workspace_copy.root
    before = tree_digest(ws)
    for master in ("foo", "local[x]", "spark:/head:7077"):
        result = invoke("features", "build", "--engine", "spark", "--spark-master", master, "-w", str(ws))
        assert refused(result, f"--spark-master '{master}' is not a Spark master URL", "local[*]"), result.output
    # Well formed, but nothing listens there: said at once, not after a minute of Java logs.
    nobody = f"spark://127.0.0.1:{free_port()}"
    result = invoke("features", "build", "--engine", "spark", "--spark-master", nobody, "-w", str(ws))
    assert refused(result, f"Cannot reach the Spark master {nobody}", "Connection refused"), result.output
    assert tree_digest(ws) == before


def test_a_spark_failure_says_its_java_cause():
    from pipelines.spark import root_cause

    trace = ("An error occurred while calling None.org.apache.spark.sql.classic.SparkSession.\n"
             ": org.apache.spark.SparkException: Exception thrown in awaitResult:\n\tat org.apache.spark.util...\n"
             "Caused by: java.io.IOException: Failed to connect to /10.0.0.9:7077\n\tat io.netty...\n"
             "Caused by: java.net.ConnectException: Connection refused\n\tat sun.nio...")
    assert root_cause(RuntimeError(trace)) == "java.net.ConnectException: Connection refused"
    assert root_cause(RuntimeError("Java gateway process exited")) == "Java gateway process exited"


SECOND_RETRAIN = textwrap.dedent("""
    import json, sys
    from tests.clirun import invoke
    result = invoke("retrain", "-w", sys.argv[1])
    heavy = sorted(m for m in ("feast", "mlflow", "lightgbm", "duckdb") if m in sys.modules)
    print(json.dumps({"exit_code": result.exit_code, "heavy": heavy, "output": result.output}))
""")


def test_a_second_retrain_is_refused_before_anything_heavy_is_loaded(workspace_copy):
    ws = workspace_copy.root
    with lock_held(ws, "clm retrain"):
        root = Path(__file__).resolve().parents[2]
        second = subprocess.run([sys.executable, "-c", SECOND_RETRAIN, str(ws)], capture_output=True, text=True,
                                cwd=root, env=child_environment())
    assert second.returncode == 0, second.stderr
    said = json.loads(second.stdout.strip().splitlines()[-1])
    assert said["exit_code"] == 2 and "is busy: `clm retrain`" in said["output"], said
    assert said["heavy"] == [], f"loaded before the refusal: {said['heavy']}"


# ------------------------------------------------------------------ a second probe (issue 22, again)
def test_replace_stops_at_files_of_yours_in_the_workspaces_folders(workspace_copy, tmp_path):
    ws = workspace_copy.root
    (ws / "raw" / "README.txt").write_text("how I made this\n")
    (ws / "scores").mkdir()
    (ws / "scores" / "q3.csv").write_text("mine\n")
    before = tree_digest(ws)
    result = invoke("simulate", "-n", "40", "--end", "2024-02-29", "--replace", "-w", str(ws))
    assert refused(result, "holds files clm did not make in its own folders", "raw/README.txt", "scores/q3.csv",
                   "Move them out")
    assert tree_digest(ws) == before


def test_a_rebuild_of_every_snapshot_keeps_files_of_yours(featured):
    ws = featured
    (ws / "features" / "NOTES.txt").write_text("mine\n")
    (ws / "features" / "_build.json").unlink()  # unknown origin: every snapshot is made again
    result = invoke("features", "build", "-w", str(ws))
    assert result.exit_code == 0 and result.mentions("0 already built"), result.output
    assert (ws / "features" / "NOTES.txt").read_text() == "mine\n"


def test_a_workspace_folder_that_is_a_file_or_a_link_is_refused(workspace_copy, tmp_path):
    ws = workspace_copy.root
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.csv").write_text("theirs\n")
    (ws / "features").symlink_to(elsewhere)
    before = {**tree_digest(elsewhere)}
    result = invoke("features", "build", "-w", str(ws))
    assert refused(result, f"{ws / 'features'} is a symbolic link, not a folder clm made")
    (ws / "features").unlink()
    (ws / "features").write_text("a file\n")
    result = invoke("score", "--out", str(tmp_path / "s.parquet"), "-w", str(ws))
    assert refused(result, f"{ws / 'features'} is a file, not a folder clm made")
    assert tree_digest(elsewhere) == before and (ws / "features").read_text() == "a file\n"


def test_a_workspace_inside_another_workspaces_folders_is_refused(workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    result = invoke(*ingest_args(write_sales(tmp_path / "sales.csv"), ws / "scores" / "shop"))
    assert refused(result, "would lie inside workspace", "its folder scores/")
    assert tree_digest(ws) == before


def test_run_starts_over_only_the_same_simulation(workspace_copy):
    ws = workspace_copy.root  # 300 customers, seed 11, 2024-01-01 to 2024-04-30
    before = tree_digest(ws)
    result = invoke("run", "-n", "50", "--end", "2024-04-30", "-w", str(ws))
    assert refused(result, "already holds simulator data", "--replace")
    assert tree_digest(ws) == before


def test_an_existing_file_is_replaced_only_if_clm_wrote_it(workspace_copy, tmp_path):
    from clm.output_paths import HTML_SIGNATURE, written_by_clm

    ws = workspace_copy.root
    theirs = tmp_path / "data.csv"
    theirs.write_text("a,b\n1,2\n")
    for args in (["report", "--out", str(theirs)], ["monitor", "--html", str(theirs)],
                 ["backtest", "--as-of", "2024-03-01", "--json", str(theirs)],
                 ["evaluate-policy", "--json", str(theirs)]):
        assert refused(invoke(*args, "-w", str(ws)), f"{theirs} already exists and is not a page or report clm wrote")
    assert theirs.read_text() == "a,b\n1,2\n"
    assert refused(invoke("report", "--out", f"{tmp_path}/new/", "-w", str(ws)), "names a folder")
    page = tmp_path / "old-report.html"
    page.write_text(f"<!DOCTYPE html>\n<html><head>{HTML_SIGNATURE}<title>x</title></head></html>")
    assert written_by_clm(page) and not written_by_clm(theirs)


def test_a_sqlite_tracking_uri_creates_nothing_where_it_should_not(workspace_copy, tmp_path):
    ws = workspace_copy.root
    missing = tmp_path / "no-such-folder" / "mlflow.db"
    for args in (["models", "list"], ["train", "--models", "churn"]):
        result = invoke(*args, "--tracking-uri", f"sqlite:///{missing}", "-w", str(ws))
        assert refused(result, "names a file in a folder that does not exist"), result.output
    absent = tmp_path / "absent.db"
    assert refused(invoke("models", "list", "--tracking-uri", f"sqlite:///{absent}", "-w", str(ws)),
                   f"No MLflow store at {absent}")
    assert not missing.parent.exists() and not absent.exists()


@pytest.mark.parametrize("edit, named", [
    ({"business": "banana"}, "business 'banana' is not one of contractual, non_contractual"),
    ({"data_end": "2024-05-01"}, "data_end '2024-05-01' is not an ISO time in UTC"),
    ({"data_end": "2023-01-01T00:00:00+00:00"}, "is not after data_start"),
])
def test_a_manifest_edited_by_hand_is_named(edit, named, featured, tmp_path):
    ws = featured
    manifest = Workspace(ws).manifest_path
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **edit}))
    before = tree_digest(ws)
    for args in (["validate"], ["score", "--out", str(tmp_path / "s.parquet")], ["features", "build"]):
        assert refused(invoke(*args, "-w", str(ws)), f"manifest {manifest} is damaged", named), args
    assert tree_digest(ws) == before  # the snapshots among it


def test_paths_no_file_system_takes_are_named(workspace_copy, tmp_path):
    ws = workspace_copy.root
    long = "y" * 300
    cases = [(["validate", "-w", str(tmp_path / long)], "--workspace"),
             (["score", "--out", str(tmp_path / long), "-w", str(ws)], "--out"),
             (["report", "--out", str(tmp_path / long), "-w", str(ws)], "--out"),
             (["score", "--out", str(tmp_path / "s.parquet"), "--catalogue", str(tmp_path / long), "-w", str(ws)],
              "Catalogue"),
             (ingest_args(tmp_path / f"{long}.csv", tmp_path / "new"), "The export")]
    for args, what in cases:
        assert refused(invoke(*args), what, "bytes; a file or folder name may have at most 255"), args


def test_encodings_and_amounts_are_read_as_said_or_refused(tmp_path):
    export = write_sales(tmp_path / "sales.csv")
    assert refused(invoke(*ingest_args(export, tmp_path / "a", "--encoding", "utf-16")),
                   "cannot be read as utf-16 text", "--encoding")
    dots = write_sales(tmp_path / "dots.csv", "c1,2024-05-01,1.5\nc2,2024-05-03,2000.25\n")
    result = invoke(*ingest_args(dots, tmp_path / "b", "--decimal", ","))  # '.' groups no thousands here
    assert refused(result, "amount that is not a number in column 'total' (decimal mark ',')", "'1.5'", "'2000.25'")
    grouped = tmp_path / "grouped.csv"
    grouped.write_text('customer,date,total\nc1,2024-05-01,"1,234.56"\nc2,2024-05-03,"2,000.00"\n')
    assert invoke(*ingest_args(grouped, tmp_path / "c")).exit_code == 0
    amounts = Workspace(tmp_path / "c").read_table(Table.TRANSACTIONS).sort_values("customer_id").amount
    assert amounts.tolist() == [1234.56, 2000.0]
    assert refused(invoke(*ingest_args(grouped, tmp_path / "d", "--decimal", ",")), "'1,234.56'")
    assert not any((tmp_path / name).exists() for name in ("a", "b", "d"))


def test_headers_and_ids_that_cannot_be_read_right_are_refused(tmp_path):
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("customer,date,total,customer\nc1,2024-05-01,10,x\n")
    assert refused(invoke(*ingest_args(repeated, tmp_path / "a")), "names 'customer' more than once")
    newline = tmp_path / "newline.csv"
    newline.write_text('customer,date,total\n"c\n1",2024-05-01,10\n')
    assert refused(invoke(*ingest_args(newline, tmp_path / "b")), "customer id with a line break")
    header = tmp_path / "header.csv"
    header.write_text("customer,date,total\n")
    assert refused(invoke(*ingest_args(header, tmp_path / "c")), f"{header} has a header and no rows")
    floats = tmp_path / "floats.parquet"
    pd.DataFrame({"customer": [213.0, 7.0], "date": pd.to_datetime(["2024-05-01", "2024-05-02"], utc=True),
                  "total": [1.0, 2.0]}).to_parquet(floats)
    assert invoke(*ingest_args(floats, tmp_path / "d")).exit_code == 0
    assert sorted(Workspace(tmp_path / "d").read_table(Table.CUSTOMERS).customer_id) == ["213", "7"]


def test_promote_takes_a_version_number_and_only_a_loadable_version(trained_copy):
    from training import registry

    ws = trained_copy.root
    client = registry.connect(trained_copy)
    champion = registry.alias_version(client, "churn", registry.CHAMPION)
    same = invoke("models", "promote", "churn", f"0{champion}", "-w", str(ws))
    assert same.exit_code == 0 and f"version {champion} is already champion" in same.output
    assert refused(invoke("models", "promote", "churn", "abc", "-w", str(ws)), "VERSION 'abc' is not a version")
    challenger = registry.alias_version(client, "churn", registry.CHALLENGER)
    version = next(v.version for v in client.search_model_versions("name='clm-churn'") if v.version != champion)
    source = client.get_model_version("clm-churn", version).source
    model_id = source.rstrip("/").split("/")[-1]
    for pickle in (ws / "mlflow" / "artifacts" / "churn" / "models").glob(f"{model_id}/**/python_model.pkl"):
        pickle.unlink()
    assert refused(invoke("models", "promote", "churn", str(version), "-w", str(ws)),
                   f"clm-churn version {version} cannot be loaded")
    assert registry.alias_version(client, "churn", registry.CHAMPION) == champion and challenger is not None


def test_the_gate_keeps_a_champion_of_another_horizon():
    import numpy as np

    from training.models import SPECS, TrainedModel
    from training.registry import decide_promotion

    class Churn(TrainedModel):  # a model whose score is a column of the frame
        def raw_scores(self, frame):
            return frame[self.features[0]].to_numpy()

    test = pd.DataFrame({"churn": [0, 0, 1, 1] * 25, "perfect": np.array([0.05, 0.06, 0.95, 0.94] * 25),
                         "worse": np.array([0.3, 0.6, 0.4, 0.7] * 25)})
    perfect = Churn(SPECS["churn"], ["perfect"], {}, None)
    worse = Churn(SPECS["churn"], ["worse"], {}, None)
    decision = decide_promotion(perfect, worse, test, horizons=(30, 90))
    assert not decision.promote and "its horizon (30 days) is not the champion's (90 days)" in decision.reason
    assert decide_promotion(perfect, worse, test, horizons=(90, 90)).promote


def test_small_option_mistakes_are_named(workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    assert refused(invoke("features", "apply", "--redis-url", "localhost:1", "-w", str(ws)),
                   "--redis-url applies to a Redis online store")
    assert refused(invoke("serve", "--workers", "0", "-w", str(ws)), "--workers 0 is out of bounds", "e.g. 2")
    shipped = DEFAULT_CATALOGUE
    catalogue = tmp_path / "c.yaml"
    text = shipped.read_text()
    assert "      stages: [onboarding, engaged, at_risk, dormant]\n" in text
    catalogue.write_text(text.replace("      stages: [onboarding, engaged, at_risk, dormant]\n",
                                      "      stages: [onboarding, engaged, at_risk, dormant]\n"
                                      "      churn_probability: {min: 2}\n", 1))
    assert refused(invoke("score", "--out", str(tmp_path / "s.parquet"), "--catalogue", str(catalogue), "-w", str(ws)),
                   "churn_probability bounds must lie between 0 and 1")
    assert tree_digest(ws) == before


def test_what_the_machine_refuses_is_said_in_a_sentence(workspace_copy, monkeypatch):
    import errno

    import pipelines.jobs.validate

    def full_disk(raw_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(raw_dir / "_validated.json"))

    monkeypatch.setattr(pipelines.jobs.validate, "record_valid", full_disk)
    result = invoke("validate", "-w", str(workspace_copy.root))
    assert refused(result, f"clm cannot use {workspace_copy.root / 'raw' / '_validated.json'}: No space left on device")


def test_a_removed_current_folder_is_said(tmp_path):
    clm = Path(sys.executable).parent / "clm"
    script = f"mkdir gone && cd gone && rmdir ../gone && {clm} models list -w {tmp_path / 'ws'}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, env=child_environment())
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2 and "current folder no longer exists" in said and "Traceback" not in said, said


def test_a_settled_model_store_is_not_written_by_reading_it(trained_copy):
    from training import registry

    registry.connect(trained_copy)  # rebased to this copy on the first visit
    db = trained_copy.root / "mlflow" / "mlflow.db"
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    assert registry.rebase_artifacts(trained_copy) == 0
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before  # a read-only store stays readable
