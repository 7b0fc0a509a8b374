"""The lifecycle report as one self-contained HTML file (`clm report`)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipelines import html  # noqa: E402
from pipelines.report import LifecycleReport, ModelCard  # noqa: E402

SECTIONS = ("kpis", "flow", "cohorts", "at-risk", "models")
SHOWN_COHORTS = 12


def render(report: LifecycleReport) -> str:
    kind = "subscriptions" if report.contractual else "transactions only (churn is estimated from lapsing)"
    sections = [
        html.Section("kpis", "Stages: KPIs and how they moved", _kpis(report)),
        html.Section("flow", "Lifecycle flow over the last month", _flow(report)),
        html.Section("cohorts", "Cohort retention", _cohorts(report)),
        html.Section("at-risk", "Who is at risk, and what clm recommends", _at_risk(report)),
        html.Section("models", "Model cards", _models(report.models)),
    ]
    notes = "".join(html.paragraph(n) for n in report.notes)
    if notes:
        sections[0] = html.Section("kpis", sections[0].title, notes + sections[0].body)
    return html.page("clm lifecycle report", f"as of {report.as_of:%Y-%m-%d}, against {report.previous:%Y-%m-%d}; "
                     f"{kind}", sections)


def _kpis(report: LifecycleReport) -> str:
    k = report.kpis
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(len(k))
    ax.bar(x - 0.2, k.customers_before, 0.4, label=f"{report.previous:%Y-%m-%d}", color="#94a3b8")
    ax.bar(x + 0.2, k.customers, 0.4, label=f"{report.as_of:%Y-%m-%d}", color="#0f766e")
    ax.set_xticks(x, k.stage)
    ax.set_ylabel("customers")
    ax.legend()
    shown = k.copy()
    for column in ("churn_rate", "churn_rate_before"):
        shown[column] = shown[column] * 100
    shown = shown.rename(columns={"churn_rate": "churn % (last month)", "churn_rate_before": "churn % (month before)",
                                  "nps": "NPS", "nps_before": "NPS before", "clv": "CLV", "clv_before": "CLV before",
                                  "customers_before": "customers before"})
    return (html.paragraph("Churn rate: of a stage's customers at the start of the month, the share churned "
                           "at its end. NPS: promoters minus detractors among answers of the last year. CLV: "
                           "the CLV champion's mean value.") + html.figure(fig) + html.table(shown))


def _flow(report: LifecycleReport) -> str:
    flow = report.flow
    if flow.empty:
        return html.paragraph("No customers.")
    shares = flow.div(flow.sum(axis=1).replace(0, 1), axis=0)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(flow) + 1.5))
    ax.imshow(shares.to_numpy(), cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(flow.columns)), flow.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(flow.index)), flow.index)
    for i in range(len(flow.index)):
        for j in range(len(flow.columns)):
            count = int(flow.iat[i, j])
            if count:
                ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=8,
                        color="white" if shares.iat[i, j] > 0.6 else "black")
    ax.set_xlabel(f"stage on {report.as_of:%Y-%m-%d}")
    ax.set_ylabel(f"stage on {report.previous:%Y-%m-%d}")
    return (html.paragraph("Each row: where the customers of a stage a month ago are now (shade: the row's share).")
            + html.figure(fig) + html.table(flow.rename_axis(index="from \\ to", columns=None).reset_index()))


def _curves(frame: pd.DataFrame, by: str, title: str) -> str:
    if frame.empty:
        return html.paragraph("No cohort has a full month yet.")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    months = [c for c in frame.columns if c != by]
    step = max(1, -(-len(frame) // SHOWN_COHORTS))  # at most SHOWN_COHORTS curves, spread over the cohorts
    for _, row in frame.iloc[::step].iterrows():
        ax.plot([int(m[1:]) for m in months], row[months].to_numpy(dtype=float), marker=".", label=str(row[by]))
    ax.set_xlabel("months since signup")
    ax.set_ylabel("retained")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return html.figure(fig) + html.table(frame, digits=2)


def _cohorts(report: LifecycleReport) -> str:
    return (html.paragraph("Share of each cohort still a customer k months after signup (not churned; for a "
                           "transactions-only business, neither dormant nor churned).")
            + "<h3>By signup month</h3>" + _curves(report.cohorts_by_month, "signup_month", "by signup month")
            + "<h3>By acquisition channel</h3>" + _curves(report.cohorts_by_channel, "channel", "by channel"))


def _at_risk(report: LifecycleReport) -> str:
    if report.scored_at is None:
        return html.paragraph("No nightly batch yet: nothing to show.")
    body = html.paragraph(f"From the nightly batch of {report.scored_at}: the customers with the most value at "
                          "risk (churn probability x CLV) and clm's recommendation for each.")
    body += html.table(report.at_risk.astype({"expected_value": float}))
    plan = report.plan
    if not plan:
        body += html.paragraph("This batch made no decisions: there was no uplift champion (see `clm models list`; "
                               "the gate may have kept the uplift model back on a small base).")
    if plan:
        actions = ", ".join(f"{a}: {n:,}" for a, n in plan.get("actions", {}).items())  
        budget = plan.get("budget")
        body += "<h3>The plan</h3>" + html.paragraph(
            f"Expected incremental value {plan['expected_value']:,.0f} for a cost of {plan['spent']:,.0f}"
            + (f" (budget {budget:,.0f})" if budget is not None else "") + f". Actions: {actions}.", "")
        finder = pd.DataFrame(plan.get("value_finder", []))
        if len(finder):
            body += ("<h3>Value finder</h3>" + html.paragraph(
                "Customers left with no action, by the funnel step where their last action fell, and the value "
                "that step left on the table (rules: eligibility and applicability; budget and capacities: "
                "selection).") + html.table(finder))
    return body


def _models(cards: list[ModelCard]) -> str:
    if not cards:
        return html.paragraph("No champion yet: run `clm train`.")
    body = ""
    for card in cards:
        figures = ", ".join(f"{k} {v:.3f}" for k, v in sorted(card.figures.items()))
        truth = ", ".join(f"{k} {v:.3f}" for k, v in sorted(card.truth.items()) if not k.endswith("rows"))
        window = "; ".join(f"{k}: {v}" for k, v in card.window.items())
        body += (f'<div class="card"><h3>{html.escape(card.model)} v{html.escape(card.version)} '
                 f'({html.escape(card.kind)})</h3>'
                 + html.paragraph(f"Trained as of {card.as_of} on {card.features} features. Window: {window}.", "")
                 + html.paragraph(f"Test figures: {figures}.", "")
                 + (html.paragraph(f"Against the simulator's truth: {truth}.", "") if truth else "")
                 + (html.paragraph(f"Champion since: {card.promoted}", "note") if card.promoted else ""))
        if card.importance:
            fig, ax = plt.subplots(figsize=(6, 0.28 * len(card.importance) + 0.8))
            names = [n for n, _ in card.importance][::-1]
            ax.barh(names, [v for _, v in card.importance][::-1], color="#0f766e")
            ax.set_xlabel("share of gain")
            body += html.figure(fig)
        body += "</div>"
    return body
