"""A careful new user's mistakes (issue 22): each case is refused with exit code 2 (or 3),
a message naming the option, file or table and what to do, no traceback, and every
workspace and folder involved byte for byte as it was; or, where clm can mend what it
made itself (a damaged snapshot), mended and said."""
from __future__ import annotations

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
from tests.clirun import child_environment, ingest_args, invoke, lock_held, tree_digest, write_sales


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
                 ["serve", "--port", str(_free_port())]):
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
    shipped = Path(__file__).resolve().parents[2] / "serving" / "catalogue.yaml"
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
                 ["serve", "--port", str(_free_port()), "--catalogue", str(latin)],
                 ["monitor", "--thresholds", str(latin)],
                 ["features", "build", "--engine", "spark", "--spark-conf", str(latin)]):
        result = invoke(*args, "-w", str(ws))
        assert refused(result, str(latin), "is not UTF-8 text: byte 0xe9 at line 3"), (args, result.output)
    assert tree_digest(ws) == before


@pytest.mark.parametrize("value", [".inf", "1.0e+200", ".nan"])
def test_unbounded_catalogue_values_are_named_on_load(value, workspace_copy, tmp_path):
    ws = workspace_copy.root
    before = tree_digest(ws)
    shipped = Path(__file__).resolve().parents[2] / "serving" / "catalogue.yaml"
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    nobody = f"spark://127.0.0.1:{_free_port()}"
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
