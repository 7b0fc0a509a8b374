"""Fuzzing the command line as a careful new user who makes mistakes would (issue 22):

- every command, with one option given a wrong value (a date written another way, a
  number out of bounds, a file that is missing, not UTF-8, not YAML, a key twice, an
  output path inside a workspace or where nothing can be written, a tracking URI that is
  a path, ...) and the others right: refused with exit code 2 and a message naming the
  option or the value, before any work, leaving the trained workspace as it was and
  creating nothing;
- a trained workspace with one of its files damaged (truncated, emptied, overwritten,
  removed), then a command: no traceback; refused with the damaged file (or its table,
  group or model) named and the workspace as it was, or done (clm made the file again, or
  did not need it).

Hypothesis draws the cases (derandomised: the same cases every run, and CI's). Each
damaged-file case runs a real command on a copy of a trained workspace (about 2 s): CI
runs 14 of them; `CLM_FUZZ_DAMAGES=200 pytest tests/code/test_cli_fuzz.py` runs more.
"""
from __future__ import annotations

import gc
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from decisions.catalogue import DEFAULT_CATALOGUE
from pipelines.servers import free_port
from tests.clirun import invoke, tree_digest
from tests.conftest import copy_trained

pytestmark = pytest.mark.slow


def stat_digest(root: Path) -> dict[str, tuple[int, int]]:
    """Each file's size and modification time: any write shows (cheaper than hashing)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".clm.lock"}


# ------------------------------------------------------------------ wrong option values
@dataclass(frozen=True)
class Files:
    """Files and folders the wrong values point at (made once per test)."""

    root: Path
    ws: Path  # the trained workspace

    def path(self, name: str) -> str:
        return str(self.root / name)


def make_files(root: Path, ws: Path) -> Files:
    shipped = DEFAULT_CATALOGUE
    text = shipped.read_text()

    def changed(old: str, new: str) -> bytes:
        assert old in text, old  # the shipped catalogue still says it: the change is a real one
        return text.replace(old, new, 1).encode()

    files = {
        "latin.yaml": "contact_policy:\n  max_contacts: 2\n# caf\xe9\n".encode("latin-1"),
        "twice.yaml": (text + "\ncontact_policy:\n  max_contacts: 1\n  window_days: 7\n").encode(),
        "list.yaml": b"- a\n- b\n",
        "broken.yaml": b"contact_policy: [unclosed\n",
        "inf.yaml": changed("  keep_months: 12", "  keep_months: .inf"),
        "huge.yaml": changed("  keep_months: 12", "  keep_months: 1.0e+200"),
        "negative-cost.yaml": changed("unit_cost: 2.0", "unit_cost: -3"),
        "probability.yaml": changed("      stages: [onboarding, engaged, at_risk, dormant]\n",
                                    "      stages: [onboarding, engaged, at_risk, dormant]\n"
                                    "      churn_probability: {max: 1.5}\n"),
        "nan-thresholds.yaml": b"feature_psi: .nan\n",
        "bad-thresholds.yaml": b"feature_psi: -1\ntop_features: 0\n",
        "unknown-thresholds.yaml": b"feature_psy: 0.2\n",
        "bad.conf": b"spark.executor.memory\n",
        "latin.conf": "spark.app.name caf\xe9\n".encode("latin-1"),
        "a-file.txt": b"not a folder\n",
        "empty.csv": b"",
        "header.csv": b"customer,date,total\n",
        "repeated.csv": b"customer,date,total,customer\nc1,2024-05-01,10,x\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "a-folder").mkdir()
    theirs = root / "theirs.parquet"  # a folder of someone else's with a _manifest.json
    theirs.mkdir()
    (theirs / "_manifest.json").write_text('{"rows": 3}')
    (root / "sales.csv").write_text("customer,date,total\nc1,2024-05-01,10\nc2,2024-05-03,4.5\n")
    project = root / "project"  # not a workspace
    (project / "features").mkdir(parents=True)
    (project / "features" / "__init__.py").write_text("")
    return Files(root, ws)


DAYS = ["", " ", "yesterday", "01/06/2025", "13/06/2025", "2025-06-01T12:00", "2025-02-30", "2025-6-1", "0001-01-01",
        "9999-12-31", "20250601"]
AS_OF = [*DAYS, "2031-01-01", "2023-01-01"]  # outside the data
HORIZONS = ["-1", "0", "6", "3654", "999999999", "x", "", "1e3"]
MONEY = ["-1", "nan", "inf", "-inf", "1e13", "x", ""]
SHARES = ["-0.1", "1.5", "nan", "inf", "x"]
COUNTS = ["0", "-5", "x", "2000000000"]
URIS = ["not a uri", "relative/mlflow.db", "file:///tmp/mlruns", "./mlruns", "ftp://host/x", "mlruns", "",
        "sqlite:////nonexistent-clm-folder/mlflow.db"]
LONG = "y" * 300  # a name no file system takes
CATALOGUES = ["missing.yaml", "a-folder", "latin.yaml", "twice.yaml", "list.yaml", "broken.yaml", "inf.yaml",
              "huge.yaml", "negative-cost.yaml", "empty.csv", "probability.yaml", LONG]
THRESHOLDS = ["missing.yaml", "a-folder", "latin.yaml", "list.yaml", "broken.yaml", "nan-thresholds.yaml",
              "bad-thresholds.yaml", "unknown-thresholds.yaml"]
OUT_FILES = ["a-folder", "WS/raw/x.json", "WS", "WS/mlflow/x.html", "a-file.txt/x.json", "/sys/x.json", "a-file.txt",
             "new-folder/", LONG]
OUT_DATASETS = ["a-folder", "theirs.parquet", "a-file.txt", "WS/raw", "WS/scores/x.parquet", "WS",
                "a-file.txt/s.parquet", "/sys/s.parquet", LONG]
WORKSPACES = ["", "a-file.txt", "project", "WS/scores/inner", LONG]

# What each option may wrongly be. "FILE:" values name a file made by make_files.
WRONG = {
    "--as-of": AS_OF, "--horizon-days": HORIZONS, "--budget": MONEY, "--exploration": SHARES,
    "--chunk-rows": COUNTS, "--tracking-uri": URIS, "--catalogue": [f"FILE:{c}" for c in CATALOGUES],
    "--thresholds": [f"FILE:{t}" for t in THRESHOLDS], "--json": [f"FILE:{o}" for o in OUT_FILES],
    "--html": [f"FILE:{o}" for o in OUT_FILES], "--out": [f"FILE:{o}" for o in OUT_DATASETS],
    "--report-out": [f"FILE:{o}" for o in OUT_FILES], "-w": [f"FILE:{w}" for w in WORKSPACES],
    "--models": ["", ",", "foo", "churn,foo", "clm-foo"], "--targets": ["", " , ", "foo"],
    "--engine": ["dask", "", "SPARK"], "--frequency": ["daily", ""], "--online-store": ["mongo", ""],
    "--redis-url": ["localhost:1", "x:y"],
    "--spark-master": ["foo", "local[x]", "spark:/h:7077"], "--spark-conf": ["FILE:bad.conf", "FILE:latin.conf",
                                                                             "FILE:missing.conf"],
    "--partitions": ["0", "-1", "x"], "--seed": ["-1", "x"], "--customers": ["0", "-3", "100000000000", "x"],
    "--start": DAYS, "--end": DAYS, "--port": ["0", "-1", "65536", "x"], "--workers": ["0", "x"],
    "--reload-seconds": ["0", "-1", "nan"], "--earliest-date": DAYS, "--decimal": ["x", ""],
    "--sep": ["|", "x"], "--encoding": ["klingon", "utf-16", "utf-32"], "MODEL": ["foo", "", "clm-"],
    "VERSION": ["abc", "999", "", "0", "-1"],
    "FILE": ["FILE:missing.csv", "FILE:a-folder", "FILE:empty.csv", "FILE:header.csv", "FILE:repeated.csv",
             f"FILE:{LONG}"],
}

# Each command with right values for its options ("NEW": a new workspace path, "OUT": a
# new output path, "FILE:" as above); one of `fuzzed` gets a wrong value.
COMMANDS = {
    "simulate": (["simulate"], {"-n": "60", "--end": "2024-02-29", "-w": "NEW"},
                 ["--customers", "--seed", "--start", "--end", "-w"]),
    "ingest": (["ingest", "transactions"], {"FILE": "FILE:sales.csv", "--customer-col": "customer", "--date-col": "date",
                                            "--amount-col": "total", "-w": "NEW"},
               ["FILE", "--decimal", "--sep", "--encoding", "--earliest-date", "-w"]),
    "validate": (["validate"], {"-w": "WS"}, ["-w"]),
    "features build": (["features", "build"], {"-w": "WS"},
                       ["--as-of", "--frequency", "--engine", "--spark-master", "--spark-conf", "-w"]),
    "features apply": (["features", "apply"], {"-w": "WS"}, ["--online-store", "--redis-url", "-w"]),
    "features materialize": (["features", "materialize"], {"-w": "WS"}, ["--as-of", "-w"]),
    "train": (["train"], {"--models": "churn", "-w": "WS"},
              ["--models", "--horizon-days", "--as-of", "--tracking-uri", "-w"]),
    "models list": (["models", "list"], {"-w": "WS"}, ["--tracking-uri", "-w"]),
    "models history": (["models", "history"], {"MODEL": "churn", "-w": "WS"}, ["MODEL", "--tracking-uri", "-w"]),
    "models promote": (["models", "promote"], {"MODEL": "churn", "VERSION": "1", "-w": "WS"},
                       ["MODEL", "VERSION", "--tracking-uri", "-w"]),
    "models rollback": (["models", "rollback"], {"MODEL": "churn", "-w": "WS"}, ["MODEL", "--tracking-uri", "-w"]),
    "score": (["score"], {"--out": "OUT", "-w": "WS"},
              ["--out", "--as-of", "--budget", "--catalogue", "--exploration", "--chunk-rows", "--engine",
               "--spark-master", "--spark-conf", "--partitions", "--tracking-uri", "-w"]),
    "retrain": (["retrain"], {"-w": "WS"},
                ["--as-of", "--horizon-days", "--budget", "--catalogue", "--engine", "--spark-master", "--spark-conf",
                 "--tracking-uri", "-w"]),
    "monitor": (["monitor"], {"-w": "WS"}, ["--as-of", "--html", "--thresholds", "--horizon-days", "--tracking-uri",
                                           "-w"]),
    "report": (["report"], {"--report-out": "OUT", "-w": "WS"}, ["--as-of", "--report-out", "--tracking-uri", "-w"]),
    "evaluate-policy": (["evaluate-policy"], {"-w": "WS"},
                        ["--as-of", "--budget", "--catalogue", "--json", "--tracking-uri", "-w"]),
    "backtest": (["backtest"], {"--as-of": "2025-06-01", "-w": "WS"},
                 ["--as-of", "--horizon-days", "--targets", "--json", "--tracking-uri", "-w"]),
    "serve": (["serve"], {"--port": "FREE", "-w": "WS"},
              ["--port", "--workers", "--reload-seconds", "--catalogue", "--tracking-uri", "-w"]),
}


def resolve(value: str, files: Files, new: Path, out: Path, port: int) -> str:
    if value.startswith("FILE:"):
        name = value.removeprefix("FILE:")
        if name.startswith("/"):
            return name
        if name == "WS" or name.startswith("WS/"):
            return str(files.ws / name.removeprefix("WS").lstrip("/"))
        return files.path(name) + ("/" if name.endswith("/") else "") if name else ""
    return {"NEW": str(new), "WS": str(files.ws), "OUT": str(out), "FREE": str(port)}.get(value, value)


def command_line(name: str, wrong_option: str, wrong_value: str, files: Files, new: Path, out: Path,
                 port: int) -> list[str]:
    words, right, _ = COMMANDS[name]
    values = {**right, wrong_option: wrong_value}
    args = list(words)
    for option in ("FILE", "MODEL", "VERSION"):  # positional arguments first
        if option in values:
            args.append(resolve(values.pop(option), files, new, out, port))
    for option, value in values.items():
        flag = "--out" if option == "--report-out" else option
        args += [flag, resolve(value, files, new, out, port)]
    if wrong_option in ("--spark-master", "--spark-conf", "--partitions") and "--engine" not in values:
        args += ["--engine", "spark"]  # so that the wrong value is the only mistake
    if wrong_option == "--online-store" or name == "features apply":
        args += [] if "--online-store" in values else ["--online-store", "sqlite"]
    return args


@st.composite
def mistakes(draw: st.DrawFn) -> tuple[str, str, str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    option = draw(st.sampled_from(COMMANDS[name][2]))
    return name, option, draw(st.sampled_from(WRONG[option]))


@pytest.fixture(scope="module")
def fuzz_ground(main_job, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-options")
    ws = copy_trained(main_job, root / "trained")
    return make_files(root, ws.root)


@settings(max_examples=int(os.environ.get("CLM_FUZZ_OPTIONS", "100")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=mistakes())
def test_a_wrong_option_value_is_refused_before_any_work(case, fuzz_ground):
    name, option, value = case
    files = fuzz_ground
    before = stat_digest(files.root)
    with tempfile.TemporaryDirectory() as tmp:
        new, out = Path(tmp) / "new-ws", Path(tmp) / "out.parquet"
        args = command_line(name, option, value, files, new, out, free_port())
        with mock.patch("os.execve", side_effect=AssertionError("`clm serve` started a server")):
            result = invoke(*args)
        event(f"{name} {option}")
        shown = resolve(value, files, new, out, 0)
        assert result.exit_code == 2, (args, result.exit_code, result.output)  # 1 would be an uncaught exception
        assert "Traceback" not in result.output
        flag = {"--report-out": "--out", "-w": "--workspace", "FILE": "", "MODEL": "model", "VERSION": "version"}.get(
            option, option)
        named = ((flag and flag in result.output) or (shown.strip() and result.mentions(shown.strip()))
                 or LONG in value and "a file or folder name may have at most 255" in result.output)
        assert named or option == "-w" and "workspace" in result.output.lower(), (args, result.output)
        assert not new.exists() and not out.exists(), args
    assert stat_digest(files.root) == before, args


# ------------------------------------------------------------------ damaged workspace files
# Commands that read a workspace ("OUT": a new output path).
READERS = {
    "validate": ["validate"], "features build": ["features", "build"], "features apply": ["features", "apply"],
    "materialize": ["features", "materialize"], "models list": ["models", "list"],
    "models history": ["models", "history", "churn"], "score": ["score", "--out", "OUT"],
    "report": ["report", "--out", "OUT.html"], "monitor": ["monitor"],
}
RAW_READERS = ["validate", "features build", "score", "report", "monitor"]
FEATURE_READERS = ["features build", "features apply", "materialize", "score", "report", "monitor"]
MODEL_READERS = ["models list", "models history", "score", "report", "monitor"]
# Files of a trained workspace: what a refusal must name (any of them), and who reads it.
TARGETS = {
    "raw/_manifest.json": (["_manifest.json"], RAW_READERS),
    "raw/customers.parquet": (["customers"], RAW_READERS),
    "raw/usage.parquet": (["usage"], RAW_READERS),
    "raw/_validated.json": (["_validated.json"], RAW_READERS),
    ".clm-workspace": ([".clm-workspace"], list(READERS)),
    "features/_build.json": (["_build.json"], FEATURE_READERS),
    "features/rfm/LATEST": (["rfm"], FEATURE_READERS),
    "features/profile/FIRST": (["profile"], FEATURE_READERS),
    "feature_repo/feature_store.yaml": (["feature_store.yaml"], FEATURE_READERS),
    "feature_repo/registry.db": (["registry.db"], FEATURE_READERS),
    "feature_repo/online.db": (["online.db"], FEATURE_READERS),
    "mlflow/mlflow.db": (["mlflow.db"], MODEL_READERS),
    "CHURN_MODEL": (["clm-churn"], MODEL_READERS),
    "scores/BATCH/_manifest.json": (["_manifest.json"], ["report", "monitor"]),
    "scores/BATCH/part-00000.parquet": (["part-00000.parquet"], ["report", "monitor"]),
}
DAMAGES = ("truncate", "empty", "garbage", "remove")


@st.composite
def damages(draw: st.DrawFn) -> tuple[str, str, str]:
    target = draw(st.sampled_from(sorted(TARGETS)))
    return target, draw(st.sampled_from(DAMAGES)), draw(st.sampled_from(TARGETS[target][1]))


def target_paths(ws: Path, target: str) -> list[Path]:
    if target == "CHURN_MODEL":  # every logged churn model: the champion's among them
        return sorted((ws / "mlflow" / "artifacts" / "churn" / "models").rglob("python_model.pkl"))
    if target.endswith(("LATEST", "FIRST")):
        snapshots = sorted((ws / Path(target).parent).glob("*.parquet"))
        return [snapshots[-1] if target.endswith("LATEST") else snapshots[0]]
    if "BATCH" in target:
        return [ws / target.replace("BATCH", next((ws / "scores").glob("*.parquet")).name)]
    return [ws / target]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: max(1, len(data) // 2)])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(bytes((i * 37 + 11) % 256 for i in range(min(len(data), 4096) or 64)))
    else:
        path.unlink()


@pytest.fixture(scope="module")
def trained_master(main_job, tmp_path_factory) -> Path:
    return copy_trained(main_job, tmp_path_factory.mktemp("fuzz-damage") / "trained").root


def settled_copy(master: Path, ws: Path) -> None:
    """A copy of `master` at `ws` as it is once clm has been there: the artifact URIs of its
    model store and the snapshot paths of its Feast registry moved to it (what a command
    does first in a moved workspace). The raw data stays recorded valid (copytree keeps
    the files' times)."""
    from clm.workspace import Workspace
    from features.store import open_store
    from training import registry

    shutil.copytree(master, ws)
    registry.rebase_artifacts(Workspace(ws))
    open_store(Workspace(ws))
    gc.collect()  # closes that store's SQLite connection: its WAL is folded in now, not mid-example


@settings(max_examples=int(os.environ.get("CLM_FUZZ_DAMAGES", "10")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=damages())
def test_a_damaged_file_is_named_or_made_again(case, trained_master):
    target, how, reader = case
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        settled_copy(trained_master, ws)
        for path in target_paths(ws, target):
            damage(path, how)
        before = tree_digest(ws)
        out = Path(tmp) / "out"
        args = [a.replace("OUT", str(out)) for a in READERS[reader]]
        result = invoke(*args, "-w", str(ws))
        event(f"{target} {how}, {reader}: exit {result.exit_code}")
        assert result.exit_code in (0, 2, 3, 4), (target, how, args, result.output)  # 1: an uncaught exception
        assert "Traceback" not in result.output
        if result.exit_code in (2, 3):
            assert any(result.mentions(name) for name in TARGETS[target][0]), (target, how, reader, result.output)
            assert tree_digest(ws) == before, (target, how, reader)
