"""The monitor's HTML page: flags first, then drift, delivered scores and the policy."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipelines import html  # noqa: E402
from pipelines.monitor import MonitorReport  # noqa: E402

TOP_FEATURES = 20


def render(report: MonitorReport) -> str:
    flags = report.flags
    summary = (html.paragraph(f"{len(flags)} flag(s): the scheduler sees exit code 4.", "flag") if flags
               else html.paragraph("No threshold crossed.", "ok"))
    if flags:
        summary += "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in flags) + "</ul>"
    summary += "".join(html.paragraph(n) for n in report.notes)
    sections = [
        html.Section("flags", "Flags", summary),
        html.Section("drift", "Drift against each champion's test window", _drift(report)),
        html.Section("performance", "Delivered scores once their outcomes matured", _performance(report)),
        html.Section("policy", "Uplift and policy on matured decisions", _policy(report)),
    ]
    return html.page("clm monitor", f"as of {report.as_of:%Y-%m-%d}: {report.rows:,} customers in the model "
                     "population", sections)


def _drift(report: MonitorReport) -> str:
    frame = report.drift
    if frame.empty:
        return html.paragraph("No champion with a reference to compare with.")
    body = html.paragraph("PSI of today's population against the rows each champion was judged on; "
                          "below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a real shift.")
    features = (frame[frame.kind == "feature"].sort_values(["psi", "flagged"], ascending=False)
                .drop_duplicates("variable").head(TOP_FEATURES))
    if len(features):
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(features) + 1))
        colours = ["#b91c1c" if flagged else "#0f766e" for flagged in features.flagged[::-1]]
        ax.barh(features.variable[::-1], features.psi[::-1], color=colours)
        ax.set_title("highest PSI per feature (red: flagged for a model that relies on it)")
        ax.axvline(report.thresholds.feature_psi, color="#b91c1c", linestyle="--", label="threshold")
        ax.set_xlabel("PSI")
        ax.legend()
        body += html.figure(fig)
    body += html.table(frame[frame.kind != "feature"])
    body += "<h3>Features (highest PSI first)</h3>" + html.table(frame[frame.kind == "feature"].head(60))
    return body


def _performance(report: MonitorReport) -> str:
    frame = report.performance
    if frame.empty:
        return html.paragraph("Nothing matured yet.")
    fig, ax = plt.subplots(figsize=(8, 3))
    for model, part in frame.groupby("model"):
        ax.plot(part.scored_at, part.roc_auc, marker="o", label=f"{model} ROC AUC")
    ax.set_ylabel("ROC AUC")
    ax.legend()
    return html.figure(fig) + html.table(frame)


def _policy(report: MonitorReport) -> str:
    body = ""
    if not report.policy.empty:
        body += html.paragraph("clm's decisions' value per decision over doing nothing, estimated off-policy "
                               "from the logged decisions (doubly robust, with its interval).")
        body += html.table(report.policy)
    if not report.uplift_deciles.empty:
        fig, ax = plt.subplots(figsize=(8, 3))
        deciles = report.uplift_deciles
        ax.bar(deciles.decile, deciles.realised_uplift, color="#0f766e", label="realised")
        ax.plot(deciles.decile, deciles.predicted_value, color="#b45309", marker="o", label="predicted")
        ax.set_xlabel("decile of predicted value (10 = highest)")
        ax.set_ylabel("value per customer")
        ax.legend()
        body += "<h3>Realised uplift by decile of predicted value (latest date)</h3>" + html.figure(fig)
        body += html.table(deciles)
    return body or html.paragraph("No matured logged decisions to evaluate.")
