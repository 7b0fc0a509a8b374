"""The operations on a real-data workspace (a transactions-only export, ingested): retrain,
monitor and the report work as they do on simulated data, and say what the data lacks."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from clm.domain import Table
from clm.workspace import Workspace
from tests.clirun import invoke
from training import registry


@pytest.mark.slow
def test_retrain_monitor_and_report_on_a_transactions_export(retrained_shop, tmp_path):
    trained, retrained = retrained_shop
    ws = Workspace(tmp_path / "shop")  # monitor and report write: a copy
    shutil.copytree(trained.root, ws.root)
    end = ws.read_manifest().end

    assert retrained.exit_code == 0, retrained.output
    assert "no plans in a transactions-only workspace" in retrained.output
    client = registry.connect(ws)
    assert registry.alias_version(client, "churn", registry.CHAMPION) == "1"
    scores = pd.read_parquet(ws.root / "scores" / f"{end:%Y-%m-%d}.parquet")
    # Non-contractual: every customer with a purchase before the date gets a churn score.
    paid = ws.read_table(Table.TRANSACTIONS)
    buyers = set(paid[paid.event_time < end].customer_id)
    assert set(scores[scores.churn_probability.notna()].customer_id) == buyers

    page = tmp_path / "monitor.html"
    monitored = invoke("monitor", "--html", str(page), "-w", str(ws.root))
    assert monitored.exit_code in (0, 4), monitored.output  # 4: a flag, which is a result
    assert "churn" in monitored.output and page.exists()

    from pipelines.report import lifecycle_report

    report = lifecycle_report(ws, end)
    known = ws.read_table(Table.CUSTOMERS)
    assert report.kpis.customers.sum() == (known.signup_time < end).sum()  # every customer known at D, once
    assert report.kpis.nps.isna().all()  # no NPS answers in a transactions export
    assert not report.contractual and len(report.cohorts_by_month) > 6
    out = tmp_path / "report.html"
    written = invoke("report", "--out", str(out), "-w", str(ws.root))
    assert written.exit_code == 0, written.output
    assert "transactions only" in out.read_text()
