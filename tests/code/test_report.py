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
    rates = rep.churn_counts(before, now)["mean"]
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


def test_kpis_show_how_many_customers_and_answers_each_rate_is_of():
    earlier = pd.DataFrame({"customer_id": list("abcd"), "stage": ["engaged"] * 4})
    before = pd.DataFrame({"customer_id": list("abcde"), "stage": ["engaged", "engaged", "engaged", "churned", "new"],
                           "last_nps": [10.0, 3.0, None, None, 9.0], "days_since_last_nps": [10.0, 400.0, None, None, 5.0],
                           "clv": [100.0, 200.0, 300.0, None, 50.0]})
    now = pd.DataFrame({"customer_id": list("abcde"), "stage": ["engaged", "churned", "engaged", "churned", "engaged"],
                        "last_nps": [10.0, 3.0, 8.0, None, 9.0], "days_since_last_nps": [40.0, 430.0, 3.0, None, 35.0],
                        "clv": [110.0, None, 280.0, None, 60.0]})
    for frame in (earlier,):
        frame["last_nps"], frame["days_since_last_nps"], frame["clv"] = np.nan, np.nan, np.nan
    k = rep.stage_kpis(now, before, earlier).set_index("stage")
    # engaged at the start of the month: a, b, c; b churned: 1 of 3
    assert k.loc["engaged", "churn_rate"] == pytest.approx(1 / 3) and k.loc["engaged", "churn_base"] == 3
    # the month before: a, b, c, d engaged; d churned: 1 of 4
    assert k.loc["engaged", "churn_rate_before"] == pytest.approx(1 / 4) and k.loc["engaged", "churn_base_before"] == 4
    # NPS now among engaged answers of the last year: a 10, c 8, e 9 -> 2 promoters of 3, no detractor
    assert k.loc["engaged", "nps"] == pytest.approx(100 * 2 / 3) and k.loc["engaged", "nps_answers"] == 3
    # before: a 10 (b's answer is over a year old) -> one answer
    assert k.loc["engaged", "nps_before"] == pytest.approx(100.0) and k.loc["engaged", "nps_answers_before"] == 1


def test_a_model_card_leads_with_its_figures_in_words():
    from pipelines.report import ModelCard
    from pipelines.report_page import in_words

    churn = ModelCard("churn", "3", "lightgbm", "2026-01-01", {}, {"roc_auc": 0.6312, "capture_top_decile": 0.168,
                      "lift_top_decile": 1.681}, {"oracle_roc_auc": 0.6704}, 72, [], "", 90)
    assert in_words(churn) == [
        "Ranks customers who leave within 90 days above the others 0.63 of the time, where chance is 0.50 and the "
        "simulator's true probabilities reach 0.67.",
        "Its top 10% hold 17% of them: 1.7 times as many as 10% picked at random."]
    clv = ModelCard("clv", "1", "lightgbm", "2026-01-01", {}, {"spearman": 0.73, "mae": 192.9, "mean_actual": 517.0},
                    {}, 58, [], "", 210)
    assert in_words(clv) == [
        "Orders customers by what they will pay over the next 210 days with a rank correlation of 0.73 (1 = perfect "
        "order, 0 = none).", "Off by 193 a customer on average, where the average customer pays 517."]
