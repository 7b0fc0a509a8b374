"""The `clm` command line: commands, exit codes, and errors without tracebacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from clm.domain import Table
from clm.workspace import Workspace
from pipelines.cli import app

runner = CliRunner()


class Outcome:
    """A CLI run: exit code, and its output with panel borders and line wrapping removed."""

    def __init__(self, result):
        self.exit_code = result.exit_code
        self.output = " ".join(result.output.translate(str.maketrans("", "", "│╭╮╰╯─")).split())


def invoke(*args: str, env: dict[str, str] | None = None) -> Outcome:
    return Outcome(runner.invoke(app, list(args), env=env))


def test_console_script_lists_the_commands():
    clm = Path(sys.executable).parent / "clm"
    out = subprocess.run([str(clm), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("simulate", "ingest", "validate", "run"):
        assert command in out


def test_every_command_has_help_with_an_example():
    for args in (["simulate"], ["validate"], ["run"], ["ingest", "transactions"]):
        result = invoke(*args, "--help")
        assert result.exit_code == 0 and "Example" in result.output, args


def test_simulate_then_validate(tmp_path):
    ws = tmp_path / "ws"
    result = invoke("simulate", "-n", "200", "--start", "2024-01-01", "--end", "2024-03-31", "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert Workspace(ws).read_table(Table.CUSTOMERS).shape[0] == 200
    result = invoke("validate", "-w", str(ws))
    assert result.exit_code == 0 and "Valid" in result.output


def test_workspace_from_environment(tmp_path):
    ws = tmp_path / "from-env"
    result = invoke("simulate", "-n", "50", "--end", "2024-02-29", env={"CLM_WORKSPACE": str(ws)})
    assert result.exit_code == 0, result.output
    assert (ws / "raw" / "customers.parquet").exists()


def test_bad_date_is_a_clear_error(tmp_path):
    result = invoke("simulate", "--start", "2024-02-30", "-w", str(tmp_path))
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "raw").exists()


def test_validate_without_data_says_what_to_do(tmp_path):
    result = invoke("validate", "-w", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "clm simulate" in result.output and "Traceback" not in result.output


def test_validate_invalid_data_exits_3_with_the_report(tmp_path):
    ws = tmp_path / "ws"
    assert invoke("simulate", "-n", "100", "--end", "2024-02-29", "-w", str(ws)).exit_code == 0
    path = Workspace(ws).table_path(Table.TRANSACTIONS)
    frame = pd.read_parquet(path)
    frame.loc[0, "amount"] = -1.0
    frame.to_parquet(path, index=False)
    result = invoke("validate", "-w", str(ws))
    assert result.exit_code == 3
    assert "transactions.amount: negative amounts (1 row)" in result.output


def test_ingest_from_the_command_line(tmp_path):
    src = tmp_path / "sales.csv"
    src.write_text("Client;Jour;Montant\nc1;2024-05-01;3,5\nc2;2024-05-02;4\n")
    ws = tmp_path / "ws"
    result = invoke(
        "ingest", "transactions", str(src), "--customer-col", "Client", "--date-col", "Jour",
        "--amount-col", "Montant", "--decimal", ",", "-w", str(ws),
    )
    assert result.exit_code == 0, result.output
    assert "2 customers" in result.output
    assert Workspace(ws).read_table(Table.TRANSACTIONS).amount.tolist() == [3.5, 4.0]


def test_ingest_of_a_missing_file_is_a_clear_error(tmp_path):
    result = invoke(
        "ingest", "transactions", str(tmp_path / "nope.csv"), "--customer-col", "a", "--date-col", "b",
        "--amount-col", "c", "-w", str(tmp_path / "ws"),
    )
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output


def test_run_is_the_main_job_end_to_end(tmp_path):
    result = invoke("run", "-n", "300", "--end", "2024-06-30", "-w", str(tmp_path / "ws"))
    assert result.exit_code == 0, result.output
    for expected in ("Simulate", "Validate", "Valid:", "True stages on 2024-06-30", "Logged decisions"):
        assert expected in result.output


def test_features_commands(tmp_path):
    ws = tmp_path / "ws"
    assert invoke("simulate", "-n", "150", "--end", "2024-04-30", "-w", str(ws)).exit_code == 0
    result = invoke("features", "apply", "-w", str(ws))
    assert result.exit_code == 2 and "clm features build" in result.output  # nothing built yet
    result = invoke("features", "build", "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert "Built 4 snapshot date(s)" in result.output  # Feb, Mar, Apr, May 1st
    result = invoke("features", "build", "--as-of", "2024-03-15", "-w", str(ws))
    assert result.exit_code == 0 and "Built 1 snapshot date(s)" in result.output
    assert (ws / "features" / "engagement" / "2024-03-15.parquet").exists()
    result = invoke("features", "build", "--as-of", "2030-01-01", "-w", str(ws))
    assert result.exit_code == 2 and "outside the data" in result.output
    result = invoke("features", "materialize", "-w", str(ws))
    assert result.exit_code == 2 and "clm features apply" in result.output
    assert invoke("features", "apply", "-w", str(ws)).exit_code == 0
    result = invoke("features", "materialize", "--as-of", "2024-04-01", "-w", str(ws))
    assert result.exit_code == 0 and "2024-04-01" in result.output
    result = invoke("features", "apply", "--online-store", "memcached", "-w", str(ws))
    assert result.exit_code == 2 and "not one of" in result.output
