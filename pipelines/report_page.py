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
LEGEND_ENTRIES = 24


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
    days = clv_days(report)
    clv = f"CLV, next {days} days" if days else "CLV"
    # Each rate beside the count it is a share of: a rate on a handful of customers says little.
    shown = shown[["stage", "customers", "customers_before", "churn_rate", "churn_base", "churn_rate_before",
                   "churn_base_before", "nps", "nps_answers", "nps_before", "nps_answers_before", "clv", "clv_before"]]
    shown.columns = ["stage", "customers", "a month before", "churn % (last month)", "of customers",
                     "churn % (month before)", "of customers", "NPS", "answers", "NPS before", "answers", clv,
                     f"{clv} (month before)"]
    value = (f"the CLV champion's expected payments per customer over the next {days} days, in the data's "
             "currency" if days else "the CLV champion's expected payments per customer")
    return (html.paragraph("Churn rate: of a stage's customers at the start of the month (\"of customers\"), the "
                           "share churned at its end. NPS: promoters (9-10) minus detractors (0-6) among the stage's "
                           f"answers of the last year (\"answers\": how many). CLV: {value}. A rate on a few dozen "
                           "customers or answers moves by chance.") + html.figure(fig) + html.table(shown))


def clv_days(report: LifecycleReport) -> int | None:
    """The days of value the CLV champion predicts (its label window), if there is one."""
    return next((card.horizon_days for card in report.models if card.model == "clv"), None)


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
    # Every cohort, each its own colour: distinct for up to 20 channels, else along a sequence (older darker).
    distinct = by != "signup_month" and len(frame) <= 20
    palette = plt.get_cmap("tab20" if distinct else "viridis")
    labelled = max(1, -(-len(frame) // LEGEND_ENTRIES))  # a legend of at most LEGEND_ENTRIES names
    for i, (_, row) in enumerate(frame.iterrows()):
        colour = palette(i % 20) if distinct else palette(i / max(len(frame) - 1, 1))
        ax.plot([int(m[1:]) for m in months], row[months].to_numpy(dtype=float), marker=".",
                label=str(row[by]) if i % labelled == 0 else None, color=colour, linewidth=1.2)
    ax.set_xlabel("months since signup")
    ax.set_ylabel("retained")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=max(1, -(-min(len(frame), LEGEND_ENTRIES) // 8)), loc="lower left")
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
    days = clv_days(report)
    shown = report.at_risk.astype({"expected_value": float}).rename(columns={
        "customer_id": "customer", "churn_probability": "churn probability", "clv": f"CLV, next {days} days"
        if days else "CLV", "value_at_risk": "value at risk", "expected_value": "expected value",
        "why": "why (the first reason)"})
    body += f'<div class="text-last">{html.table(shown)}</div>'

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
        if len(finder):  # as the terminal's table shows it (`clm evaluate-policy`, `clm run`)
            finder = finder[["step", "customers", "with_a_paying_action", "value_left"]].rename(columns={
                "with_a_paying_action": "of them with a paying action", "value_left": "value left"})
        if len(finder):
            body += ("<h3>Value finder</h3>" + html.paragraph(
                "Customers left with no action, by the funnel step where their last action fell, and the value "
                "that step left on the table (rules: eligibility and applicability; budget and capacities: "
                "selection).") + html.table(finder))
    return body


def in_words(card: ModelCard) -> list[str]:
    """Two or three of a card's test figures in words, for a business reader."""
    f, t = card.figures, card.truth
    said: list[str] = []
    if card.model in ("churn", "upsell") and "roc_auc" in f:
        who = "customers who leave" if card.model == "churn" else "customers who upgrade"
        days = f" within {card.horizon_days} days" if card.horizon_days else ""
        line = f"Ranks {who}{days} above the others {f['roc_auc']:.2f} of the time, where chance is 0.50"
        if "oracle_roc_auc" in t:
            line += f" and the simulator's true probabilities reach {t['oracle_roc_auc']:.2f}"
        said.append(line + ".")
        if "capture_top_decile" in f and "lift_top_decile" in f:
            said.append(f"Its top 10% hold {f['capture_top_decile']:.0%} of them: {f['lift_top_decile']:.1f} times "
                        "as many as 10% picked at random.")
    elif card.model == "stage" and "accuracy" in f:
        said.append(f"Names the stage a customer will be in{f' {card.horizon_days} days on' if card.horizon_days else ''} "
                    f"right for {f['accuracy']:.0%} of customers; macro F1 {f.get('macro_f1', float('nan')):.2f} "
                    "(every stage weighed alike, rare ones too).")
    elif card.model == "clv" and "spearman" in f:
        days = f"over the next {card.horizon_days} days " if card.horizon_days else ""
        said.append(f"Orders customers by what they will pay {days}with a rank correlation of {f['spearman']:.2f} "
                    "(1 = perfect order, 0 = none).")
        if "mae" in f and "mean_actual" in f:
            said.append(f"Off by {f['mae']:,.0f} a customer on average, where the average customer pays "
                        f"{f['mean_actual']:,.0f}.")
    elif card.model == "uplift":
        if "truth_all_top10_captured" in t:
            said.append(f"Acting on the 10% of customers it ranks first gets {t['truth_all_top10_captured']:.0%} of the value the "
                        "simulator's true effects say the best 10% would give.")
        if "value_qini_total" in f:
            said.append(f"On the logged decisions of its test month, its ranking gains {f['value_qini_total']:,.2f} a "
                        "customer over random targeting, in the data's currency (value Qini, summed over actions; "
                        "0 = no better than random).")
    return said


def _models(cards: list[ModelCard]) -> str:
    if not cards:
        return html.paragraph("No champion yet: run `clm train`.")
    body = ""
    for card in cards:
        figures = ", ".join(f"{k} {v:.3f}" for k, v in sorted(card.figures.items()))
        truth = ", ".join(f"{k} {v:.3f}" for k, v in sorted(card.truth.items()) if not k.endswith("rows"))
        window = "; ".join(f"{k}: {v}" for k, v in card.window.items())
        details = (html.paragraph(f"Trained as of {card.as_of} on {card.features} features. Window: {window}.", "")
                   + html.paragraph(f"Test figures: {figures}.", "")
                   + (html.paragraph(f"Against the simulator's truth: {truth}.", "") if truth else ""))
        body += (f'<div class="card"><h3>{html.escape(card.model)} v{html.escape(card.version)} '
                 f'({html.escape(card.kind)})</h3>'
                 + "".join(html.paragraph(line, "lead") for line in in_words(card))
                 + f"<details><summary>Every figure</summary>{details}</details>"
                 + (html.paragraph(f"Champion since: {card.promoted}", "note") if card.promoted else ""))
        if card.importance:
            fig, ax = plt.subplots(figsize=(6, 0.28 * len(card.importance) + 0.8))
            names = [n for n, _ in card.importance][::-1]
            ax.barh(names, [v for _, v in card.importance][::-1], color="#0f766e")
            ax.set_xlabel("share of gain")
            body += html.figure(fig)
        body += "</div>"
    return body
