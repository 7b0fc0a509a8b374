"""The lifecycle report: its figures worked out by hand on a tiny base, and the page `clm
run` wrote opened in a real browser (headless Chromium)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clm.workspace import Workspace
from pipelines import report as rep
from pipelines.report_page import SECTIONS
from training import registry
from training.train import MODELS


def test_nps_churn_rates_and_flow_by_hand():
    assert rep.nps(pd.Series([10, 9, 8, 7, 6, 0, None])) == pytest.approx(100 * (2 / 6 - 2 / 6))
    assert rep.nps(pd.Series([10.0, 9.0, 3.0])) == pytest.approx(100 * (2 / 3 - 1 / 3))
    assert np.isnan(rep.nps(pd.Series([None], dtype=float)))
    before = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e"],
                           "stage": ["engaged", "engaged", "at_risk", "at_risk", "churned"]})
    now = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e", "f"],
                        "stage": ["engaged", "churned", "churned", "churned", "churned", "new"]})
    rates = rep.churn_rates(before, now)
    # engaged: b of a, b churned; at_risk: c and d both; a churned customer has no churn rate
    assert rates.to_dict() == {"at_risk": 1.0, "engaged": 0.5}
    flow = rep.stage_flow(before, now)
    assert flow.loc["engaged", "engaged"] == 1 and flow.loc["engaged", "churned"] == 1
    assert flow.loc["at_risk", "churned"] == 2 and flow.loc["churned", "churned"] == 1
    assert flow.loc[rep.NEW_CUSTOMER, "new"] == 1 and flow.to_numpy().sum() == 6


def test_at_risk_ranks_by_value_at_risk_and_shows_the_first_reason():
    scores = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d"], "stage": ["engaged", "at_risk", "churned", "engaged"],
        "churn_probability": [0.1, 0.5, None, 0.9], "clv": [1000.0, 300.0, None, 100.0],
        "action": ["none", "retention_offer", None, "success_call"], "action_value": [0.0, 40.0, None, 12.0],
        "reasons": ['[]', '["worth 40", "tenure short"]', None, '["worth 12"]'],
    })
    top = rep.at_risk(scores, rows=2)
    # value at risk: a 100, b 150, d 90; c (cancelled) has no score
    assert top.customer_id.tolist() == ["b", "a"]
    assert top.value_at_risk.tolist() == pytest.approx([150.0, 100.0])
    assert top.why.tolist() == ["worth 40", ""] and top.recommended.tolist() == ["retention_offer", "none"]


@pytest.mark.slow
def test_the_report_clm_run_wrote_opens_in_a_browser_without_script_errors(main_job, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from pipelines.jobs.report import REPORT_NAME
    from tests.browser import LAUNCH_ARGS

    ws, outcome = main_job
    client = registry.connect(Workspace(ws))
    champions = [m for m in MODELS if registry.alias_version(client, m, registry.CHAMPION)]
    page_file = ws / REPORT_NAME
    assert outcome.mentions(str(page_file.resolve()))
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.resolve().as_uri())
            page.wait_for_function("document.body.dataset.ready === 'yes'", timeout=10_000)
            for section in SECTIONS:
                assert page.locator(f"section#{section} h2").is_visible(), section
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            assert page.locator("img").count() >= 5
            # the KPI table sorts by a click on "customers": largest first after two clicks
            kpis = page.locator("section#kpis table").first
            header = kpis.locator("thead th", has_text="customers").first
            header.click()
            header.click()
            column = [int(t.replace(",", "")) for t in kpis.locator("tbody tr td:nth-child(2)").all_inner_texts()]
            assert column == sorted(column, reverse=True) and column[0] > 0
            at_risk = page.locator("section#at-risk table").first  # then the plan's value finder
            assert at_risk.locator("tbody tr").count() == 25  # the customers most at risk
            assert page.locator("section#models h3").count() == len(champions)  # a card per champion
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # nothing from the network
