"""The `clm` command line: commands, exit codes, and errors without tracebacks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clm.domain import Table
from clm.workspace import Workspace
from tests.clirun import invoke, run_clm, tree_digest
from tests.conftest import copy_trained


def test_console_script_lists_the_commands():
    clm = Path(sys.executable).parent / "clm"
    out = subprocess.run([str(clm), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("simulate", "ingest", "validate", "run"):
        assert command in out


def test_bare_clm_shows_the_help_and_succeeds():
    result = invoke()
    assert result.exit_code == 0 and "Quick start" in result.output and "backtest" in result.output
    assert "later releases" not in result.output  # the help describes what exists


def test_version():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0 and result.output == f"clm {version('clm')}"


def test_every_command_has_help_with_an_example():
    for args in (["simulate"], ["validate"], ["run"], ["ingest", "transactions"], ["train"], ["score"], ["backtest"],
                 ["features", "build"], ["models", "promote"]):
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


def test_ordinary_mistakes_are_clear_errors_that_change_nothing(tmp_path):
    result = invoke("simulate", "--start", "", "-w", str(tmp_path / "ws"))
    assert result.exit_code == 2 and "Invalid value for '--start': '' is not a day written YYYY-MM-DD" in result.output
    assert not (tmp_path / "ws").exists()

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    result = invoke("simulate", "-n", "10", "-w", str(a_file))
    assert result.exit_code == 2 and result.mentions(f"Workspace '{a_file}' is a file")
    assert a_file.read_text() == "mine"

    folder = tmp_path / "out"
    folder.mkdir()
    result = invoke("score", "--out", str(folder), "-w", str(tmp_path / "ws"))
    assert result.exit_code == 2 and f"--out {folder} is a folder" in result.output and not any(folder.iterdir())
    under_a_file = a_file / "scores.parquet"  # its folder can never exist
    result = invoke("score", "--out", str(under_a_file), "-w", str(tmp_path / "ws"))
    assert result.exit_code == 2 and result.mentions(f"Cannot create the folder of --out {under_a_file}")
    assert a_file.read_text() == "mine"

    result = invoke("train", "--models", "", "-w", str(tmp_path / "ws"))
    assert result.exit_code == 2 and "--models names no model" in result.output and "Traceback" not in result.output


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


@pytest.mark.slow
def test_evaluate_policy_judges_five_policies_by_the_truth(main_job, tmp_path):
    ws, result = main_job
    assert result.exit_code == 0, result.output
    assert "Policies as of 2026-01-01" in result.output  # `clm run` ends with the table
    out = tmp_path / "policy.json"
    run = invoke("evaluate-policy", "--as-of", "2025-12-01", "--budget", "300", "--json", str(out), "-w", str(ws))
    assert run.exit_code == 0, run.output
    report = json.loads(out.read_text())
    customers = report["run"]["customers"]
    assert customers > 500 and report["run"]["budget"] == 300
    for name in ("clm", "oracle", "churn_risk", "random", "nothing"):
        figures = report[name]
        assert name in run.output
        assert set(figures) >= {"value_per_1000", "cost_per_1000", "customers_treated", "actions"}
        assert figures["cost_per_1000"] <= 300 * 1000 / customers + 1e-6  # the same budget binds every policy
        assert sum(figures["actions"].values()) == figures["customers_treated"] <= customers
        assert figures["actions"].get("success_call", 0) <= 50  # its daily capacity
    assert report["nothing"]["value_per_1000"] == 0 and report["nothing"]["customers_treated"] == 0
    # The oracle decides on the true effects with the same optimiser: nothing beats it
    # (beyond the allocation's proven gap, far below this tolerance).
    best = report["oracle"]["value_per_1000"]
    assert best > 0
    assert all(report[p]["value_per_1000"] <= best * 1.001 for p in ("clm", "churn_risk", "random"))


def test_evaluate_policy_refuses_what_it_cannot_judge(main_job, tmp_path):
    ws, _ = main_job
    mid_month = invoke("evaluate-policy", "--as-of", "2025-12-15", "-w", str(ws))
    assert mid_month.exit_code == 2 and mid_month.mentions("not a month's first day")
    broken = tmp_path / "catalogue.yaml"
    broken.write_text("contact_policy: {max_contacts: 1, window_days: 30}\nactions:\n"
                      "  - {id: none, description: x, channel: none, unit_cost: 0, target: none, cooldown_days: 0}\n"
                      "  - {id: win_back, description: y, channel: email, unit_cost: -3, target: win_back, cooldown_days: 1}\n")
    bad = invoke("evaluate-policy", "--catalogue", str(broken), "-w", str(ws))
    assert bad.exit_code == 2 and bad.mentions("actions[1] (win_back).unit_cost")


@pytest.mark.slow
def test_run_is_the_main_job_end_to_end(main_job, tmp_path):
    ws, result = main_job
    assert result.exit_code == 0, result.output
    for expected in (
        "Simulate", "Validate", "Valid:", "Feast registry: 8 views", "Online store loaded", "Test window figures",
        "The simulator's true stages on 2025-12-31", "by clm's stage rules (as the report counts them)",
        "Feature snapshots on", "Logged decisions", "Score and decide", "Scored", "The lifecycle report",
        "clm serve -w", "The policy evaluation's figures (JSON)",
    ):
        assert expected in result.output
    (scored,) = (ws / "scores").iterdir()  # the whole base scored (and decided, with an uplift champion)
    assert len(pd.read_parquet(scored)) == 2000 and (scored / "_manifest.json").exists()

    # The champions' figures against the oracle and the baselines: tests/model/test_quality.py.
    # Two years leave no room for a 365-day CLV window without overlap: 210 days, recorded.
    assert "CLV over 210 days" in result.output

    listing = invoke("models", "list", "-w", str(ws))
    assert listing.exit_code == 0
    for name in ("clm-churn", "clm-upsell", "clm-stage", "clm-clv", "roc_auc", "macro_f1", "champion"):
        assert name in listing.output
    missing = invoke("models", "promote", "churn", "9", "-w", str(ws))
    assert missing.exit_code == 2 and "has no version 9" in missing.output
    again = invoke("models", "promote", "churn", "1", "-w", str(ws))  # already the champion: a no-op, said so
    assert again.exit_code == 0 and "version 1 is already champion; nothing changed" in again.output
    nothing_before = invoke("models", "rollback", "churn", "-w", str(ws))
    assert nothing_before.exit_code == 2 and "no previous champion" in nothing_before.output

    # Decisions come with an uplift champion: a copy has one (at 2,000 customers the gate
    # may have kept version 1 back), and the main job's workspace stays as `clm run` left it.
    ws = copy_trained(main_job, tmp_path / "ws").root
    scores = tmp_path / "scores.parquet"
    result = invoke("score", "--out", str(scores), "--budget", "500", "-w", str(ws))
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(scores)
    assert list(frame.columns) == [
        "customer_id", "churn_probability", "upsell_probability", "stage", "predicted_stage",
        "stage_probabilities", "clv", "as_of", "action", "action_value", "action_cost", "reasons", "propensity",
        "explored", "model_versions",
    ]
    assert len(frame) == 2000
    # Contractual: the cancelled keep null scores; every live contract is scored.
    cancelled = frame.stage == "churned"
    live = frame[~cancelled]
    # Every live contract is scored by each model that has a champion; a model whose first
    # version the gate refused leaves its column empty (the training output said so).
    from training import registry

    client = registry.connect(Workspace(ws))
    champions = {m: registry.alias_version(client, m, registry.CHAMPION) for m in ("churn", "upsell", "clv")}
    assert champions["churn"] and champions["clv"], champions
    for model, column in (("churn", "churn_probability"), ("upsell", "upsell_probability"), ("clv", "clv")):
        assert live[column].notna().all() if champions[model] else live[column].isna().all(), model
    if not champions["upsell"]:
        said = main_job[1].output  # what `clm run` printed
        assert "Registered as challenger only: upsell v1" in said or "Not trained: upsell" in said
    assert live.churn_probability.between(0, 1).all() and live.predicted_stage.notna().all()
    assert frame[cancelled][["churn_probability", "upsell_probability", "clv"]].isna().all().all()
    assert (frame[cancelled].predicted_stage == "churned").all()

    # A decision for every live contract, none for the cancelled; clm's own choices (not
    # explored) are worth something; the whole plan keeps the budget; reasons in words.
    from clm.domain import ALL_ACTIONS
    from decisions.log import read_decisions

    assert live.action.isin(ALL_ACTIONS).all() and frame[cancelled].action.isna().all()
    chosen = live[(live.action != "none") & ~live.explored.astype(bool)]
    assert (chosen.action_value > 0).all()
    assert live.propensity.between(0, 1, inclusive="right").all()
    assert all(json.loads(r) for r in live.reasons)  # every decision says why, even "none"
    assert "decisions:" in result.output and result.mentions("(budget 500)")
    assert live.action_cost.sum() <= 500 and (live.action_cost[live.action == "none"] == 0).all()
    log = read_decisions(Workspace(ws))
    assert len(log) == len(live) and set(log.customer_id) == set(live.customer_id)
    again = invoke("score", "--out", str(scores), "--budget", "500", "-w", str(ws))  # the same date again
    assert again.exit_code == 0 and len(read_decisions(Workspace(ws))) == len(live)  # replaced, not doubled
    assert pd.read_parquet(scores).equals(frame)


@pytest.mark.slow
def test_a_trained_workspace_can_be_copied_and_moved(main_job, tmp_path):
    """Copy a trained workspace and work in the copy (score, train); then move the copy and
    work there. The original is byte-for-byte untouched, and the moved copy needs nothing
    of where it was."""
    import shutil

    original, made = main_job
    assert made.exit_code == 0, made.output
    before = tree_digest(original)

    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    scored = invoke("score", "--out", str(tmp_path / "copy-scores.parquet"), "-w", str(copy))
    assert scored.exit_code == 0, scored.output
    trained = invoke("train", "--models", "churn", "-w", str(copy))
    assert trained.exit_code == 0, trained.output
    assert tree_digest(original) == before  # so the copy's new version 2 lives in the copy alone
    assert _versions(copy, "churn") == ["1", "2"]

    moved = tmp_path / "moved"
    copy.rename(moved)
    promoted = invoke("models", "promote", "churn", "2", "-w", str(moved))  # load v2, made before the move
    assert promoted.exit_code == 0, promoted.output
    scored = invoke("score", "--out", str(tmp_path / "moved-scores.parquet"), "-w", str(moved))
    assert scored.exit_code == 0 and "churn v2" in scored.output, scored.output
    assert invoke("features", "materialize", "-w", str(moved)).exit_code == 0
    frame = pd.read_parquet(tmp_path / "moved-scores.parquet")
    assert len(frame) == 2000 and frame.churn_probability.notna().any()
    assert tree_digest(original) == before
    config = (moved / "feature_repo" / "feature_store.yaml").read_text()
    assert str(tmp_path) not in config and str(original) not in config


def _versions(ws: Path, model: str) -> list[str]:
    """The registered versions of a model in a workspace's own MLflow store."""
    from training import registry

    client = registry.connect(Workspace(ws))
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{registry.registered_name(model)}'"))


def assert_registrations_are_said(ws: Path, output: str, models: tuple[str, ...]) -> None:
    """What MLflow holds after a training is what the output says: a model without a version
    is named under "Not trained", a version that is not champion under "Registered as
    challenger only"; nothing registered in silence."""
    import re

    from training import registry

    client = registry.connect(Workspace(ws))
    not_trained = re.search(r"Not trained: ([a-z, ]+) \(", output)
    held_back = re.search(r"Registered as challenger only: ([a-z0-9, ]+) \(", output)
    for model in models:
        versions = [str(v.version) for v in client.search_model_versions(f"name = '{registry.registered_name(model)}'")]
        champion = registry.alias_version(client, model, registry.CHAMPION)
        if not versions:
            assert not_trained and model in not_trained.group(1).split(", "), (model, output)
        elif champion is None:
            assert held_back and f"{model} v{versions[0]}" in held_back.group(1).split(", "), (model, output)


@pytest.mark.slow
def test_a_small_one_year_business_trains_what_it_can_and_says_the_rest(tmp_path):
    """The command that once failed in the stage model and left half the models registered."""
    ws = tmp_path / "ws"
    result = invoke("run", "-n", "800", "--start", "2024-01-01", "--end", "2024-12-31", "-w", str(ws))
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "CLV over 90 days" in result.output  # one year: the shortest honest CLV window
    assert_registrations_are_said(ws, result.output, ("churn", "upsell", "stage", "clv"))


@pytest.mark.slow
def test_a_sixty_customer_shop_trains_what_it_can_and_says_the_rest(tmp_path):
    """A tiny transactions export: no traceback from buy-till-you-die peers or the gate."""
    from pipelines.ingest import ingest_exported_transactions
    from tests.conftest import simulate
    from training import registry

    sim = simulate(tmp_path / "sim", 60, 5, "2024-01-01", "2025-12-31")
    shop = tmp_path / "shop"
    ingest_exported_transactions(sim, tmp_path / "export.csv", Workspace(shop))
    result = run_clm("train", "-w", str(shop))  # a real process: library warnings would show
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "Warning" not in result.output and "warn" not in result.output, result.output
    assert "upsell is not trained" in result.output and "Not trained: upsell" not in result.output  # no plans
    assert_registrations_are_said(shop, result.output, ("churn", "stage", "clv"))
    scores = invoke("score", "--out", str(tmp_path / "s.parquet"), "-w", str(shop))
    client = registry.connect(Workspace(shop))
    clv = registry.alias_version(client, "clv", registry.CHAMPION)
    if clv is not None:  # the gate promotes no CLV model that ranks below BG/NBD + Gamma-Gamma on its test rows
        figures = client.get_run(client.get_model_version("clm-clv", clv).run_id).data.metrics
        assert figures["test_spearman"] >= figures.get("btyd_bgnbd_gg_spearman", -1.0), figures
    if any(registry.alias_version(client, m, registry.CHAMPION) for m in ("churn", "stage", "clv")):
        assert scores.exit_code == 0, scores.output
    else:  # nothing passed the gate on so little data: score says so, and what to do
        assert scores.exit_code == 2 and "did not pass the promotion gate" in scores.output
        assert "clm models promote" in scores.output


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
    assert result.exit_code == 2 and "outside the data: choose a date from 2024-01-02 to 2024-05-01" in result.output
    assert invoke("features", "build", "--as-of", "2024-01-02", "-w", str(ws)).exit_code == 0  # the first it offers
    result = invoke("features", "build", "--as-of", "", "-w", str(ws))  # empty is a mistake, not the default
    assert result.exit_code == 2 and "Invalid value for '--as-of': '' is not a day written YYYY-MM-DD" in result.output
    result = invoke("features", "materialize", "-w", str(ws))
    assert result.exit_code == 2 and "clm features apply" in result.output
    assert invoke("features", "apply", "-w", str(ws)).exit_code == 0
    result = invoke("features", "materialize", "--as-of", "2024-04-01", "-w", str(ws))
    assert result.exit_code == 0 and "2024-04-01" in result.output
    result = invoke("features", "apply", "--online-store", "memcached", "-w", str(ws))
    assert result.exit_code == 2 and "not one of" in result.output


def test_an_unreachable_tracking_server_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    result = invoke("models", "list", "--tracking-uri", uri, "-w", str(tmp_path / "ws"))
    assert result.exit_code == 2 and f"Cannot reach the MLflow tracking server at {uri}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_real_tracking_server_by_uri(tmp_path):
    """`mlflow server` (from the dev install) on loopback: clm passes its health check and
    reads the registry through it."""
    import socket
    import time

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--default-artifact-root", str(tmp_path / "art")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet, or not answering yet
                pass
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        result = invoke("models", "list", "--tracking-uri", uri, "-w", str(tmp_path / "ws"))
        assert result.exit_code == 0 and "Registered models" in result.output, result.output
        assert not (tmp_path / "ws" / "mlflow").exists()  # the server's store, not the workspace's
    finally:
        server.terminate()
        server.wait(timeout=30)
