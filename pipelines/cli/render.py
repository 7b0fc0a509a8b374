"""The jobs' results on the terminal (Rich tables and lines): what each command shows.

`show` is what the CLI's reporter calls with a finished part of a job; the commands call
the other functions for what only they show.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table as RichTable
from rich.text import Text

from clm.contracts import ValidationReport
from clm.workspace import RawManifest
from features.build import BuildResult
from pipelines.backtest import BacktestReport
from pipelines.cli.common import clm_command, console, err_console, say
from pipelines.ingest import IngestSummary
from pipelines.ingest.tables import TableSpec
from pipelines.jobs.evaluate_policy import PolicyEvaluation
from pipelines.jobs.features import Materialized, Registered
from pipelines.jobs.forget import Forgotten
from pipelines.jobs.models import ChampionChange, History, VersionRow, shown_figures
from pipelines.jobs.report import ReportWritten
from pipelines.jobs.run import POLICY_NAME, RunResult
from pipelines.jobs.serve import curl_example
from pipelines.jobs.simulate import Simulated
from pipelines.jobs.train import Trained
from pipelines.monitor import MonitorReport
from pipelines.offpolicy import OffPolicyReport
from pipelines.policy import POLICIES
from pipelines.score import ScoreResult
from pipelines.summary import WorkspaceSummary
from training.config import ModelReport


def show(result: object) -> None:
    """A finished part of a job, as its command shows it."""
    if isinstance(result, Simulated):
        rows_table(f"Wrote {result.raw_dir}", result.rows)
    elif isinstance(result, ValidationReport):
        console.print(f"[green]Valid:[/green] {len(result.rows)} tables, {sum(result.rows.values()):,} rows checked.")
    elif isinstance(result, BuildResult):
        features_built(result)
    elif isinstance(result, Registered):
        console.print(f"Feast registry: {len(result.views)} views ({', '.join(result.views)}); services: "
                      f"{', '.join(result.services)}.")
    elif isinstance(result, Materialized):
        console.print(f"Online store loaded with the latest snapshot at or before {result.as_of:%Y-%m-%d}.")
    elif isinstance(result, Trained):
        trained(result)
    elif isinstance(result, PolicyEvaluation):
        policy_evaluation(result)
    elif isinstance(result, ScoreResult):
        scored(result)
    elif isinstance(result, ReportWritten):
        say(f"Lifecycle report: {result.path}")
    elif isinstance(result, Forgotten):
        forgotten(result)
    else:
        raise TypeError(f"no rendering for {type(result).__name__}")  # a job's new result needs its lines here


def rows_table(title: str, rows: dict[str, int]) -> None:
    table = RichTable(title=Text(title), title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


def table_fields(specs: list[TableSpec]) -> None:
    """Each table's fields: name, what it holds, whether an export must have it."""
    for spec in specs:
        table = RichTable(title=f"{spec.name}: {spec.description}", title_justify="left")
        for col in ("field", "required", "what it holds"):
            table.add_column(col)
        for f in spec.fields:
            what = f.help + (f" ({', '.join(f.values)})" if f.values else "")
            table.add_row(f.name, "yes" if f.required else "-", what)
        console.print(table)


def ingested(summaries: list[IngestSummary], raw_dir: object, manifest: RawManifest) -> None:
    for s in summaries:
        say(f"Ingested {s.table}: {s.rows_written:,} of {s.rows_read:,} rows, {s.customers:,} customers, "
            f"{s.first_event:%Y-%m-%d} to {s.last_event:%Y-%m-%d}.")
        for problem, n in s.skipped.items():
            say(f"Skipped {n:,} row(s): {problem}.", "yellow")
        if s.duplicates:
            fate = "left out" if s.duplicates_dropped else "kept (pass --drop-duplicates to leave them out)"
            say(f"{s.duplicates:,} row(s) repeat an earlier row exactly: {fate}.", "yellow")
        for note in s.notes:
            say(f"{s.table}: {note}.", "dim")
        for warning in s.warnings:
            say(f"{s.table}: {warning}.", "yellow")
    inferred = " (customers inferred from their first event)" if manifest.details.get("customers_inferred") else ""
    say(f"Workspace {raw_dir}: {', '.join(manifest.tables)}{inferred}; a {manifest.business.replace('_', '-')} "
        f"business, {manifest.start:%Y-%m-%d} to {manifest.end - pd.Timedelta(days=1):%Y-%m-%d}.")


def forgotten(result: Forgotten) -> None:
    places = len(result.rows) + (result.online > 0) + (result.journal > 0)
    console.print(f"Forgot {result.customers:,} customer(s) ({result.newly_recorded:,} new to the erasure record): "
                  f"{sum(result.rows.values()):,} rows removed from {len(result.rows)} file(s), {result.online:,} from "
                  f"the online store, {result.journal:,} from the decision journal ({places} place(s) in all).")
    if result.reports_removed:
        say(f"Removed the report(s) that named them: {', '.join(result.reports_removed)} (`clm report` makes them "
            "again).", "yellow")
    say("Models trained with them stay until the next `clm retrain`, which no longer sees them.")


def features_built(result: BuildResult) -> None:
    console.print(
        f"Feature groups: {', '.join(result.groups)}. Built {len(result.built_dates)} snapshot date(s) "
        f"({result.rows:,} rows); {result.skipped_dates} already built."
    )
    if result.repaired:
        say(f"{result.repaired} damaged snapshot file(s) (truncated?) were made again.", "yellow")
    if result.stale:
        say(f"{result.stale} snapshot date(s) were made again: the raw rows before them changed.")


# ------------------------------------------------------------------- models
# The figure a model is judged by, per model (the uplift model has its own line).
KEY_FIGURE = {"churn": "roc_auc", "upsell": "roc_auc", "stage": "macro_f1", "clv": "spearman"}


def trained(result: Trained) -> None:
    table = RichTable(title="Test window figures (registered model | baseline | oracle)", title_justify="left")
    for col in ("model", "version", "champion?", "figures"):
        table.add_column(col)
    for r in result.reports:
        if r.up_to_date:
            table.add_row(r.model, r.version or "-", "yes" if r.promoted else "-", r.note)
        elif not r.trained:
            table.add_row(r.model, "-", "-", r.note)
        elif r.model == "uplift":
            table.add_row(r.model, r.version or "-", "yes" if r.promoted else "no", uplift_figures(r) + f" ({r.note})")
        else:
            table.add_row(r.model, r.version or "-", "yes" if r.promoted else "no",
                          "; ".join(model_figures(r)) + f" ({r.note})")
    console.print(table)
    if result.untrained:
        say(f"Not trained: {', '.join(result.untrained)} (reasons above). Their earlier champions, if any, stay in "
            "place; without one, `clm score` leaves their columns empty.", "yellow")
    if result.held_back:
        first = next(r for r in result.reports if r.trained and not r.promoted)
        say(f"Registered as challenger only: {', '.join(result.held_back)} (the gate's reasons above); their "
            "champions, if any, are unchanged, and a model without one is not scored. To use a challenger anyway, "
            f"promote it by hand, e.g. `{clm_command()} models promote {first.model} {first.version}`.", "yellow")


def model_figures(r: ModelReport) -> list[str]:
    """A trained model's test figures beside its baseline's (and the oracle's, where known)."""
    key = KEY_FIGURE[r.model]
    parts = [f"{key} {r.metrics[key]:.3f} | {r.baseline[key]:.3f}"]
    if r.oracle:  # on the rows where the oracle is the probability of what happened
        on_oracle_rows, best = r.oracle["model_roc_auc"], r.oracle[key]
        parts[0] += (f" | {best:.3f} (on the oracle's {int(r.oracle['rows']):,} rows {on_oracle_rows:.3f}: "
                     f"{on_oracle_rows / best:.2f} of oracle)")
    if "ece" in r.metrics:
        parts.append(f"ece {r.metrics['ece']:.3f}")
    if "stays_the_same_macro_f1" in r.metrics:
        parts.append(f"stays-the-same {r.metrics['stays_the_same_macro_f1']:.3f}")
    if "mae" in r.metrics:
        parts.append(f"mae {r.metrics['mae']:.1f} | {r.baseline['mae']:.1f}")
    if r.btyd:
        parts.append("buy-till-you-die: " + ", ".join(f"{k} {v:.3f}" for k, v in r.btyd.items()))
    if "note" in r.split:
        parts.append(str(r.split["note"]))
    if len(r.candidates) > 2 or r.registered_kind != "lightgbm":
        parts.append(candidates_line(r))
    return parts


CANDIDATE_NAMES = {"lightgbm": "LightGBM", "baseline": "scikit-learn baseline", "bgnbd": "BG/NBD",
                   "pareto_nbd": "Pareto/NBD", "stack": "stack (LightGBM on BG/NBD's outputs)",
                   "blend": "blend (of every other candidate)"}


def candidates_line(r: ModelReport) -> str:
    """Which candidate was registered, and each candidate's figure on the latest window."""
    key = KEY_FIGURE[r.model]
    shown = ", ".join(f"{kind} {figures[key]:.3f}" for kind, figures in r.candidates.items() if key in figures)
    return (f"registered: {CANDIDATE_NAMES.get(r.registered_kind, r.registered_kind)}, chosen on the latest "
            f"window (the simplest not significantly behind the best: {shown})")


def uplift_figures(r: ModelReport) -> str:
    """The uplift model's line: uplift R2 (registered learner | the other), truth where known."""
    line = f"{r.registered_kind}: uplift R2 {r.metrics['uplift_r2']:.4f} | other learner {r.baseline['uplift_r2']:.4f}"
    if r.oracle:
        o = r.oracle
        line += (f"; vs true effects: Spearman {o['mean_spearman_value']:.2f}, top 10% / 30% capture "
                 f"{o['all_top10_captured']:.2f} / {o['all_top30_captured']:.2f} of the oracle's")
    if "note" in r.split:
        line += f"; {r.split['note']}"
    return line


def versions(rows: list[VersionRow]) -> None:
    table = RichTable(title="Registered models", title_justify="left")
    for col in ("model", "version", "aliases", "created", "test figures"):
        table.add_column(col)
    for row in rows:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in row.figures.items())
        table.add_row(row.model, row.version, ", ".join(row.aliases), row.created, shown)
    console.print(table)


def champion_change(change: ChampionChange, rollback: bool = False) -> None:
    if rollback:
        console.print(f"{change.model}: version {change.version} is champion again.")
    elif change.changed:
        console.print(f"{change.model}: version {change.version} is now champion.")
    else:
        console.print(f"{change.model}: version {change.version} is already champion; nothing changed.")


def history(h: History) -> None:
    if not h.events:
        console.print(f"{h.model}: no champion change recorded yet.")
        return
    console.print(f"[bold]{h.model}: champion changes, oldest first[/bold]")
    for e in h.events:
        figures = ", ".join(f"{k} {v:.3f}" for k, v in shown_figures(e.figures).items())
        how = f"{e.how} ({e.command})" if e.command else e.how
        console.print(Text.assemble(f"{e.at[:19].replace('T', ' ')} UTC  ", (e.event, "bold"),
                                    f" version {e.previous or '-'} -> {e.version}, {how}, by {e.by}"),
                      soft_wrap=True, highlight=False)
        console.print(Text(f"    why: {e.reason or '(not given)'}"), soft_wrap=True, highlight=False)
        if figures:
            console.print(f"    figures: {figures}", soft_wrap=True, highlight=False)


# ------------------------------------------------------------------- scoring
def scored(result: ScoreResult) -> None:
    used = ", ".join(f"{m} v{v}" for m, v in result.models.items() if v) or "none"
    day = f"{result.as_of:%Y-%m-%d}"
    if result.kept:
        say(f"{result.path} already holds the scores of these champions ({used}) on these data as of {day}: "
            "left as it is.")
        return
    line = (f"Scored {result.scored:,} of {result.customers:,} customers as of {day} in "
            f"{result.timings['total_s']:.1f} s ({result.customers / max(result.timings['total_s'], 1e-9):,.0f}/s)")
    if result.decisions is not None:
        d = result.decisions
        mix = ", ".join(f"{a} {k:,}" for a, k in d["actions"].items())
        limit = "" if d["budget"] is None else f" (budget {d['budget']:,.0f})"
        line += (f"; decisions: {mix}; expected value {d['expected_value']:,.0f} for a cost of "
                 f"{d['spent']:,.0f}{limit}; {d['explored']:,} explored")
    say(f"{line}. Wrote {result.path} (champions: {used}).")
    if result.note:
        say(f"Note: {result.note}.", "yellow")


# ------------------------------------------------------------------- policy
def policy_evaluation(e: PolicyEvaluation) -> None:
    if e.results is not None and e.inputs is not None and e.budget is not None:
        policies(e)
    if e.off_policy is None:
        say(f"Off-policy estimate skipped: {e.off_policy_skipped}.", "yellow")
    else:
        off_policy(e.off_policy)


def policies(e: PolicyEvaluation) -> None:
    results, inputs, spend = e.results, e.inputs, e.budget
    assert results is not None and inputs is not None and spend is not None
    oracle = results["oracle"].value
    table = RichTable(title=f"Policies as of {inputs.base.as_of:%Y-%m-%d}, budget {spend:,.0f} for {len(inputs.base.customers):,} "
                      "customers: true incremental value (simulator's effects)", title_justify="left")
    for col in ("policy", "value per 1,000", "cost per 1,000", "treated", "of oracle"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name in POLICIES:
        r, d = results[name], results[name].as_dict()
        share = f"{r.value / oracle:.0%}" if oracle > 0 else "-"
        table.add_row(name, f"{d['value_per_1000']:,.0f}", f"{d['cost_per_1000']:,.0f}", f"{r.treated:,}", share)
    console.print(table)
    mix = RichTable(title="Actions chosen", title_justify="left")
    mix.add_column("policy", no_wrap=True)
    for action in results["oracle"].actions:
        mix.add_column(action.replace("_", " "), justify="right")
    for name in POLICIES[:-1]:
        mix.add_row(name, *(f"{k:,}" for k in results[name].actions.values()))
    console.print(mix)
    finder = RichTable(title="Value finder (clm): customers left with no action, by the funnel step where their "
                       "last action fell, and the value that step left (clm's estimate of their best action that "
                       "reached it)", title_justify="left")
    for col in ("step", "customers", "of them with a paying action", "value left"):
        finder.add_column(col, justify="left" if col == "step" else "right")
    for row in results["clm"].value_finder:
        finder.add_row(str(row["step"]), f"{row['customers']:,}", f"{row['with_a_paying_action']:,}",
                       f"{row['value_left']:,.0f}")
    console.print(finder)
    if inputs.base.uplift_note:
        say(f"Note: {inputs.base.uplift_note}.", "yellow")
    if e.in_sample:
        say(f"In sample: {e.in_sample}. clm's figures above flatter it; judge it at a later month start.", "bold red")


def off_policy(report: OffPolicyReport) -> None:
    d = report.as_dict()
    table = RichTable(title=f"Off-policy estimate of clm's policy (no budget) from the {report.decisions:,} decisions "
                      f"logged on {report.cutoff:%Y-%m-%d}: incremental value per 1,000 decisions", title_justify="left")
    for col in ("estimator", "estimate", "95% interval", "truth", "covered"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    truth = d["truth_per_1000"]
    for name in ("ips", "snips", "dr"):
        est = d[name]
        table.add_row(name.upper(), f"{est['value_per_1000']:,.0f}", f"{est['low']:,.0f} .. {est['high']:,.0f}",
                      "-" if truth is None else f"{truth:,.0f}",
                      "-" if est["covers_truth"] is None else ("yes" if est["covers_truth"] else "no"))
    console.print(table)
    dr = d["dr"]
    low, high = dr["low"], dr["high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        verdict = "the logged decisions give no interval (too few, or no explored ones)."
    elif low <= 0 <= high:
        verdict = (f"{high - low:,.0f} wide, from {low:,.0f} to {high:,.0f} per 1,000 decisions, it holds 0: the "
                   "logged decisions cannot yet tell clm from doing nothing; it narrows as more decisions, and more "
                   "explored ones, are logged.")
    else:
        verdict = (f"from {low:,.0f} to {high:,.0f} per 1,000 decisions, it leaves out 0: clm's policy is worth "
                   f"{'more' if low > 0 else 'less'} than doing nothing.")
    say("Each estimate judges clm's policy from the logged decisions alone, as it would be on real data; its 95% "
        "interval (bootstrap) is the range of values those decisions are consistent with. The doubly robust "
        "one's: " + verdict)
    if report.in_sample:
        say(f"In sample: {report.in_sample}. The estimate flatters it.", "bold red")


def backtest(report: BacktestReport) -> None:
    table = RichTable(title=f"Backtest as of {report.as_of}: {report.customers_scored:,} customers scored, "
                      f"outcomes over the next {report.horizon_days} days", title_justify="left")
    for col in ("target", "model", "customers", "figures"):
        table.add_column(col)
    for target, block in report.targets.items():
        for name, f in block["models"].items():
            if "roc_auc" in f:
                shown = (f"roc_auc {f['roc_auc']:.4f}  pr_auc {f['pr_auc']:.4f}  ece {f['ece']:.4f}  "
                         f"lift@10% {f['lift_top_decile']:.2f}  capture@10% {f['capture_top_decile']:.2f}")
                if "clm_roc_auc_same_customers" in f:
                    shown += f"  (clm on these customers {f['clm_roc_auc_same_customers']:.4f})"
            else:
                shown = f"spearman {f['spearman']:.4f}  mae {f['mae']:.1f}  ({block['window_days']}-day value)"
            label = f"clm (ships {block['shipped']})" if name == "clm" and "shipped" in block else name
            table.add_row(target, label, f"{f['customers']:,}", shown)
    console.print(table)
    for note in report.notes:
        say(note, "yellow")


# ------------------------------------------------------------------- operations
def monitor(report: MonitorReport) -> None:
    drift = report.drift
    table = RichTable(title=f"Drift as of {report.as_of:%Y-%m-%d} ({report.rows:,} customers)", title_justify="left")
    for col in ("model", "kind", "variable", "PSI", "flagged"):
        table.add_column(col)
    shown = drift[(drift.kind != "feature") | drift.flagged]
    top = drift[drift.kind == "feature"].drop_duplicates("variable").head(5)
    for r in pd.concat([shown, top]).drop_duplicates(["model", "kind", "variable"]).itertuples():
        table.add_row(r.model, r.kind, r.variable, f"{r.psi:.3f}", "yes" if r.flagged else "")
    console.print(table)
    if len(report.performance):
        perf = RichTable(title="Delivered scores, matured", title_justify="left")
        for col in ("scored at", "model", "customers", "ROC AUC", "champion's test AUC", "ECE", "lift top 10%"):
            perf.add_column(col)
        for r in report.performance.itertuples():
            perf.add_row(r.scored_at, r.model, f"{r.customers:,}", f"{r.roc_auc:.3f}",
                         "-" if r.champion_test_auc is None else f"{r.champion_test_auc:.3f}", f"{r.ece:.3f}",
                         f"{r.lift_top_decile:.2f}")
        console.print(perf)
    if len(report.policy):
        pol = RichTable(title="Policy value per decision over doing nothing (off-policy, DR)", title_justify="left")
        for col in ("decided at", "decisions", "DR", "interval", "truth", "uplift learned from it"):
            pol.add_column(col)
        for r in report.policy.itertuples():
            truth = "-" if r.true_value_per_decision is None or r.true_value_per_decision != r.true_value_per_decision \
                else f"{r.true_value_per_decision:.2f}"
            pol.add_row(r.decided_at, f"{r.decisions:,}", f"{r.dr_value_per_decision:.2f}",
                        f"{r.dr_low:.2f} .. {r.dr_high:.2f}", truth, "yes" if r.uplift_learned_from_it else "no")
        console.print(pol)
    for note in report.notes:
        say(note, "yellow")


def monitor_flags(flags: list[str]) -> None:
    err_console.print(f"[bold red]{len(flags)} flag(s):[/bold red] " + "; ".join(flags))


def workspace_summary(workspace_root: object, s: WorkspaceSummary) -> None:
    m = s.manifest
    console.print(Text.assemble(("Workspace", "bold"), f" {workspace_root}: {m.source} data, {m.business} business, "
                                f"{m.data_start[:10]} to {m.data_end[:10]} (exclusive)."))
    rows_table("Raw tables", s.rows)
    parts = [f"{s.customers_ever_active:,} customers with transactions"] if s.customers_ever_active is not None else []
    if s.cancelled is not None:
        parts.append(f"{s.cancelled:,} cancelled over the period")
    if parts:
        console.print("; ".join(parts) + ".")
    if s.latest_snapshot:
        stages = ", ".join(f"{k} {v:,}" for k, v in s.latest_stages.items())
        truth = ", ".join(f"{k} {v:.3f}" for k, v in s.latest_mean_truth.items() if v is not None)
        console.print(f"The simulator's true stages on {s.latest_snapshot}: {stages}.")
        console.print(f"Mean true probabilities of active customers on {s.latest_snapshot}: {truth}.")
    if s.snapshot_dates:
        console.print(f"Feature snapshots on {s.snapshot_dates} dates: {s.month_starts} month starts, and "
                      f"{s.snapshot_dates - s.month_starts} cutoffs that training's label windows and the decisions "
                      "needed (built when first asked for).")
    if s.decisions:
        console.print("Logged decisions: " + ", ".join(f"{k} {v:,}" for k, v in s.decisions.items()) + ".")


def main_job(workspace_root: object, result: RunResult) -> None:
    """What `clm run` says at the end: the workspace, the stages as the report counts them,
    the report, how to call the API."""
    workspace_summary(workspace_root, result.summary)
    report = result.report.report
    counts = report.kpis.set_index("stage")["customers"]
    console.print(f"Stages on {report.as_of:%Y-%m-%d} by clm's stage rules (as the report counts them): "
                  + ", ".join(f"{stage} {int(n):,}" for stage, n in counts.items()) + ".")
    if result.summary.latest_snapshot:
        console.print("(The simulator's true stages above are its hidden state, a day earlier: its at_risk means a "
                      "true chance of churning in 90 days of 25% or more, clm's a warning sign in behaviour, so the "
                      "counts differ.)")
    say(f"\nThe lifecycle report (open it in a browser): {result.report.path}", wrap=False)
    if result.policy is not None:
        say(f"The policy evaluation's figures (JSON): {Path(str(workspace_root)) / POLICY_NAME}", wrap=False)
    say(f"\nThe real-time API: start it with\n  {clm_command()} serve -w {workspace_root}\nand, from another terminal, ask for a "
        f"customer's scores and next-best actions:\n  {curl_example('127.0.0.1', 3000, result.example_customer)}",
        wrap=False)
    contractual = result.summary.manifest.business == "contractual"
    signs = ("no use for 30 days is dormant, a failed payment or falling use at_risk" if contractual else
             "no purchase for 60 days is dormant, for 90 days churned")
    leaving = "cancel" if contractual else "make no purchase"
    say(f"(In the answer, `stage` is where the customer is today by clm's stage rules, which read behaviour: {signs}; "
        f"`churn_probability` is the churn model's chance that they {leaving} within its horizon (90 days unless "
        "trained with another). The two can differ: an at_risk customer may well stay.)")
