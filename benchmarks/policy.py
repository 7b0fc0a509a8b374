"""Benchmark: next-best-action policy value against the oracle and the fair churn-risk
baseline, uplift quality against the simulator's true effects, and off-policy intervals.

For each simulated base (default: 20,000 customers over 21 months, 2024-01 to 2025-09, and
100,000 over 24 months):

1. Builds (once, kept in WORKSPACE-N) the base end to end with `clm run` (churn, upsell,
   stage, CLV and uplift trained as of the data's end).
2. Uplift: fits the three learners (T-, pooled and DR-learner, `training.uplift`) on the
   logged decisions, times them, and scores each against the true effects on the test
   cutoff: Spearman of predicted and true value per action, and the true value captured
   by the top 10% / 30% by predicted value as a fraction of the oracle's top 10% / 30%.
3. Policy: at the data's end (a month start), every policy of `clm evaluate-policy`
   decides for the base at five budgets: B10 (the budget at which the oracle treats about
   10% of the base, found by bisection) x 0.25, 0.5, 1, 2, 4; each judged by the true
   effects. Prints value per 1,000 customers, clm / oracle and clm / churn_risk (the fair
   baseline: the riskiest first, each given the retention action with the best average
   effect in the logs, only where that pays), for the learner this code registers (the
   chosen one of step 2), and at B10 for the other learners and for the model registered in
   the workspace (by the code that built it).
4. Off-policy on the simulated business's logs: at the latest matured decision dates, IPS,
   SNIPS and DR estimates (95% bootstrap intervals) of fixed policies and of clm's (after
   its training window), beside the truth; how often each interval covers it.
5. Off-policy on clm's own logged decisions (`own_log_coverage`): the batch's decisions at
   B10 with exploration and the propensities it logs, outcomes drawn from the true
   probabilities, many times over; how often the intervals cover the truth (nominal 95%).

Goals (issue 26), at B10 on both bases: clm >= 0.80 x oracle, >= 1.5 x the fair
churn-risk baseline, above random and nothing at every budget; intervals covering at the
nominal rate.

    .venv/bin/python benchmarks/policy.py [--bases 20000:2025-09-30 100000] [--workspace /tmp/clm-bench-policy]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(workspace: Path, customers: int, end: str | None) -> None:
    built = workspace.with_name(f"{workspace.name}.built-to-{end or 'default'}")  # written once `clm run` has finished
    if built.exists() and (workspace / "raw").exists():
        print(f"Reusing the simulated base in {workspace}")
        return
    started = time.perf_counter()
    subprocess.run([str(ROOT / ".venv" / "bin" / "clm"), "run", "-n", str(customers), "-w", str(workspace),
                    *(["--end", end] if end else [])], check=True, stdout=subprocess.DEVNULL)
    built.touch()
    print(f"clm run -n {customers:,}{f' --end {end}' if end else ''}: {time.perf_counter() - started:.0f} s")


def uplift_quality(workspace: Path):  # type: ignore[no-untyped-def]
    from clm.workspace import Workspace
    from training.config import TrainConfig
    from training.train_uplift import fit_uplift, true_effects
    from training.uplift import truth_quality

    ws = Workspace(workspace)
    started = time.perf_counter()
    fitted = fit_uplift(ws, TrainConfig(), True, ws.read_manifest().end, {})
    print(f"\nUplift: the learners fitted in {time.perf_counter() - started:.0f} s on "
          f"{len(fitted.parts['train']):,} logged decisions; chosen on the validation window: {fitted.chosen} "
          f"(uplift R2 {', '.join(f'{k} {v:.5f}' for k, v in fitted.validation.items())})")
    truth = true_effects(ws, fitted.split.test)
    print(f"Against the true effects at the test cutoff {fitted.split.test:%Y-%m-%d} "
          f"({len(fitted.population_test):,} customers):")
    print(f"{'learner':<12}{'action':<18}{'Spearman':>10}{'top 10%':>10}{'top 30%':>10}")
    for name, model in fitted.learners.items():
        q = truth_quality(model, fitted.population_test, truth, fitted.values["population_test"])
        for action in model.actions:
            print(f"{name:<12}{action:<18}{q[action + '_spearman_value']:>10.3f}{q[action + '_top10_captured']:>10.3f}"
                  f"{q[action + '_top30_captured']:>10.3f}")
        print(f"{name:<12}{'all (pooled)':<18}{q['mean_spearman_value']:>10.3f}{q['all_top10_captured']:>10.3f}"
              f"{q['all_top30_captured']:>10.3f}")
    return fitted


def budget_treating(evaluate, catalogue, inputs, share: float) -> float:  # type: ignore[no-untyped-def]
    """The budget at which the oracle treats about `share` of the base (bisection)."""
    target, low, high = share * len(inputs.base.customers), 0.0, 1.0
    while evaluate(catalogue, inputs, high)["oracle"].treated < target and high < 1e9:
        high *= 2
    for _ in range(25):
        middle = (low + high) / 2
        low, high = (middle, high) if evaluate(catalogue, inputs, middle)["oracle"].treated < target else (low, middle)
    return high


def policy_value(workspace: Path, fitted) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The policy table; returns the figures the summary needs (B10, the inputs, and per
    budget factor clm's value beside the oracle, churn_risk, random and nothing)."""
    from dataclasses import replace

    from clm.workspace import Workspace
    from decisions.catalogue import load_catalogue
    from pipelines.policy import POLICIES, evaluate, load_inputs

    ws = Workspace(workspace)
    as_of = ws.read_manifest().end
    catalogue = load_catalogue()
    registered = load_inputs(ws, as_of, catalogue)
    b10 = budget_treating(evaluate, catalogue, registered, 0.10)
    n = len(registered.base.customers)
    print(f"\nPolicies as of {as_of:%Y-%m-%d} on {n:,} customers; B10 = {b10:,.0f} (oracle treats ~10%)")
    # The model this code registers (the chosen learner, fitted in step 2) at every budget; the one
    # registered in the workspace (possibly by older code) and the other learners at B10.
    candidates = {}
    if fitted is not None:
        for name, model in sorted(fitted.learners.items(), key=lambda item: item[0] != fitted.chosen):
            effects = model.effects(registered.base.customers, catalogue.contact_ids)
            label = f"{name} (chosen)" if name == fitted.chosen else name
            candidates[label] = replace(registered, predicted_churn=effects["churn"], predicted_upgrade=effects["upgrade"])
    candidates[f"registered v{registered.base.uplift_version}"] = registered
    every_budget = next(iter(candidates))
    print(f"{'uplift model':<20}{'budget':>10}" + "".join(f"{p:>12}" for p in POLICIES)
          + f"{'clm/oracle':>12}{'clm/risk':>10}{'treated':>9}")
    figures: dict[str, object] = {"b10": b10, "inputs": candidates[every_budget], "customers": n, "by_factor": {}}
    for label, inputs in candidates.items():
        for factor in (0.25, 0.5, 1.0, 2.0, 4.0) if label == every_budget else (1.0,):
            started = time.perf_counter()
            results = evaluate(catalogue, inputs, b10 * factor)
            value = {p: results[p].as_dict()["value_per_1000"] for p in POLICIES}
            ratio_oracle = value["clm"] / value["oracle"] if value["oracle"] > 0 else float("nan")
            ratio_risk = value["clm"] / value["churn_risk"] if value["churn_risk"] > 0 else float("inf")
            print(f"{label:<20}{b10 * factor:>10,.0f}" + "".join(f"{value[p]:>12,.0f}" for p in POLICIES)
                  + f"{ratio_oracle:>12.2f}{ratio_risk:>10.2f}{results['clm'].treated:>9,}"
                  f"  ({time.perf_counter() - started:.1f} s)")
            if factor == 1.0:
                print(f"{'':<20}actions at B10: clm {results['clm'].actions}; oracle {results['oracle'].actions}")
            if label == every_budget:
                figures["by_factor"][factor] = value  # type: ignore[index]
    return figures


def offpolicy_coverage(workspace: Path, cutoffs: int) -> None:
    """IPS, SNIPS and DR against the truth at the latest matured decision dates, for fixed
    policies (valid at any date) and clm's (only after its training window)."""
    from clm.workspace import Workspace
    from decisions.catalogue import load_catalogue
    from pipelines.offpolicy import (
        clm_targets,
        estimate,
        everyone_allowed,
        logged_evidence,
    )
    from training.labels import candidate_cutoffs

    if cutoffs <= 0:
        return
    ws = Workspace(workspace)
    catalogue = load_catalogue()
    dates = candidate_cutoffs(ws.read_manifest(), ws.read_manifest().end, 90)[-cutoffs:]
    print(f"\nOff-policy estimates vs the truth, per 1,000 decisions (95% bootstrap intervals), {len(dates)} dates:")
    print(f"{'date':<12}{'policy':<18}{'decisions':>10}{'truth':>9}" + "".join(f"{e:>24}" for e in ("IPS", "SNIPS", "DR")))
    hits: dict[str, list[bool]] = {"ips": [], "snips": [], "dr": []}
    for cutoff in dates:
        evidence = logged_evidence(ws, catalogue, cutoff)
        policies = {a: everyone_allowed(evidence, catalogue, a) for a in ("retention_offer", "upgrade_offer", "win_back")}
        fitted = evidence.uplift.fitted_through  # clm only after what its model learned from
        if fitted is not None and cutoff > fitted:
            policies["clm"] = clm_targets(evidence, catalogue)
        for name, target in policies.items():
            r = estimate(evidence, target)
            cells = ""
            for e in ("ips", "snips", "dr"):
                x = r.estimates[e]
                hits[e].append(x.covers(r.truth))
                cells += f"{x.value * 1000:>8,.0f} [{x.low * 1000:>6,.0f},{x.high * 1000:>6,.0f}]"
            print(f"{cutoff:%Y-%m-%d}  {name:<18}{r.decisions:>10,}{r.truth * 1000:>9,.0f}{cells}")
    print("Intervals covering the truth: " + ", ".join(f"{e.upper()} {sum(h)}/{len(h)}" for e, h in hits.items()))


UNSUPPORTED = "clm per customer (no budget: unsupported)"


def own_log_coverage(workspace: Path, inputs, budget: float, exploration: float,  # type: ignore[no-untyped-def]
                     replications: int) -> dict[str, float]:
    """Off-policy intervals on clm's own logged decisions: at the data's end, the batch's
    decisions (the funnel under the budget, then exploration with the propensities it logs,
    `decisions.log.explore`), the outcomes of each replication drawn from the simulator's
    true probabilities under the action taken (P(churn), P(upgrade) within 90 days with no
    contact, plus the true effect of the action); IPS, SNIPS and DR of three target
    policies (clm's budgeted choice as shipped, the same with half its contacts withheld,
    clm's per-customer choice with no budget) against their true value. Returns, per estimator, the share
    of intervals covering the truth (nominal 95%) over the targets the log supports.

    The log supports a target only where exploration could have taken its action: none, the
    batch's own choice, or an allowed action the budget and capacities still permitted. A
    target beyond the budget (clm per customer, as the API decides) picks actions the
    exploration never could once the budget was spent: no estimator can judge it from such
    a log (measured: IPS covers it 10-46% of the time), so it is shown, not counted."""
    import numpy as np
    import pandas as pd

    from clm.domain import NO_ACTION, Table
    from clm.workspace import Workspace
    from decisions.catalogue import load_catalogue
    from decisions.log import explore
    from decisions.value import action_costs, customer_values, expected_value
    from serving.decide import decide
    from training.ope import incremental_value

    ws, catalogue = Workspace(workspace), load_catalogue()
    base, c = inputs.base, inputs.base.customers
    ids = catalogue.contact_ids
    names = np.asarray([*ids, NO_ACTION], dtype=object)  # index -1: none
    values = customer_values(c, base.plan_prices, catalogue.value)
    cost = action_costs(catalogue.contact_actions, values.monthly_revenue)
    truth = ws.read_table(Table.GROUND_TRUTH, columns=["customer_id", "snapshot_date", "p_churn_90d", "p_upgrade_90d"])
    truth = truth[pd.to_datetime(truth.snapshot_date) == (base.as_of - pd.Timedelta(days=1)).tz_localize(None)]
    truth = truth.set_index("customer_id").reindex(c["customer_id"])
    p_churn = np.column_stack([truth.p_churn_90d.to_numpy()[:, None] + inputs.true_churn,
                               truth.p_churn_90d.to_numpy()]).clip(0, 1)  # columns: ids, then none
    p_upgrade = np.column_stack([truth.p_upgrade_90d.to_numpy()[:, None] + inputs.true_upgrade,
                                 truth.p_upgrade_90d.to_numpy()]).clip(0, 1)
    known = ~np.isnan(p_churn).any(axis=1)
    true_value = np.column_stack([expected_value(inputs.true_churn, inputs.true_upgrade, values, cost).total,
                                  np.zeros(len(c))])
    # The reward model of DR: the uplift model's control probabilities plus its effects.
    control = base.uplift.control_probabilities(c)
    q_churn = np.column_stack([control["churn"][:, None] + inputs.predicted_churn, control["churn"]])
    q_upgrade = np.column_stack([control["upgrade"][:, None] + inputs.predicted_upgrade, control["upgrade"]])
    full_cost = np.column_stack([cost, np.zeros(len(c))])
    q = np.nan_to_num(-q_churn * values.keep_value[:, None] + q_upgrade * values.upgrade_margin[:, None]) - full_cost
    budgeted = decide(catalogue, c, inputs.predicted_churn, inputs.predicted_upgrade, base.history, base.as_of,
                      base.plan_prices, budget=budget)
    per_customer = decide(catalogue, c, inputs.predicted_churn, inputs.predicted_upgrade, base.history, base.as_of,
                          base.plan_prices, per_customer=True)
    withheld = np.where(np.random.default_rng(3).random(len(c)) < 0.5, -1, budgeted.choice)
    targets = {"clm (budget)": budgeted.choice, "clm, half its contacts withheld": withheld,
               UNSUPPORTED: per_customer.choice}
    used = np.bincount(budgeted.choice[budgeted.choice >= 0], minlength=len(ids))
    left = budget - float(np.where(budgeted.choice >= 0, cost[np.arange(len(c)), np.maximum(budgeted.choice, 0)], 0).sum())
    covered: dict[str, list[bool]] = {}
    errors: dict[str, list[tuple[float, float]]] = {}
    rows = np.flatnonzero(known)
    for r in range(replications):
        rng = np.random.default_rng([7, r])
        final, propensity, _ = explore(budgeted.choice, budgeted.allowed, exploration, rng,
                                       catalogue.capacities - used, cost, left)
        churned = rng.random(len(c)) < p_churn[np.arange(len(c)), final]
        upgraded = rng.random(len(c)) < p_upgrade[np.arange(len(c)), final]
        reward = -churned.astype(float) * values.keep_value + upgraded.astype(float) * values.upgrade_margin - full_cost[np.arange(len(c)), final]
        for name, target in targets.items():
            estimates = incremental_value(reward[rows], names[final[rows]], names[target[rows]], propensity[rows],
                                          q[rows, target[rows]], q[rows, -1], q[rows, final[rows]], none=NO_ACTION,
                                          seed=r)
            truth_value = float(true_value[rows, target[rows]].mean())
            for estimator, e in estimates.items():
                if name != UNSUPPORTED:
                    covered.setdefault(estimator, []).append(e.covers(truth_value))
                covered.setdefault(f"{estimator} {name}", []).append(e.covers(truth_value))
                errors.setdefault(f"{estimator} {name}", []).append((e.value - truth_value, (e.high - e.low) / 2))
    for key, pairs in errors.items():  # why an interval misses: bias, or a spread wider than it says
        error, half_width = np.array(pairs).T
        print(f"  {key:<50}bias {error.mean() * 1000:>8,.0f} per 1,000; spread {error.std() * 1000:>7,.0f}, "
              f"interval's half-width / 1.96 {half_width.mean() / 1.96 * 1000:>7,.0f}")
    return {k: float(np.mean(v)) for k, v in covered.items()}


def one_base(spec: str, root: Path, args: argparse.Namespace) -> dict[str, object]:
    customers, _, end = spec.partition(":")
    workspace = root.with_name(f"{root.name}-{customers}")
    print(f"\n===== {int(customers):,} customers{f' through {end}' if end else ''} ({workspace}) =====")
    build(workspace, int(customers), end or None)
    fitted = None if args.skip_uplift else uplift_quality(workspace)
    figures = policy_value(workspace, fitted)
    offpolicy_coverage(workspace, args.ope_dates)
    started = time.perf_counter()
    coverage = own_log_coverage(workspace, figures["inputs"], float(figures["b10"]),  # type: ignore[arg-type]
                                args.exploration, args.replications)
    print(f"\nOff-policy on clm's own logged decisions (B10, exploration {args.exploration:.0%}, "
          f"{args.replications} replications of the outcomes and of exploration, "
          f"{time.perf_counter() - started:.0f} s): share of 95% intervals covering the truth")
    for name, share in coverage.items():
        if " " in name:
            print(f"  {name:<50}{share:>6.0%}")
    figures["coverage"] = coverage
    figures["spec"] = f"{int(customers):,}" + (f" (to {end})" if end else "")
    return figures


def summary(results: list[dict[str, object]]) -> None:
    print("\n===== Summary: goals of issue 26 =====")
    print(f"{'base':<22}{'clm/oracle B10':>16}{'clm/fair risk':>15}{'> random & nothing':>20}"
          f"{'IPS cover':>11}{'SNIPS cover':>13}{'DR cover':>10}")
    for r in results:
        by_factor: dict[float, dict[str, float]] = r["by_factor"]  # type: ignore[assignment]
        at = by_factor[1.0]
        oracle = at["clm"] / at["oracle"] if at["oracle"] > 0 else float("nan")
        risk = at["clm"] / at["churn_risk"] if at["churn_risk"] > 0 else float("inf")
        above = all(v["clm"] > max(v["random"], v["nothing"]) for v in by_factor.values())
        cover: dict[str, float] = r["coverage"]  # type: ignore[assignment]
        print(f"{r['spec']:<22}{oracle:>16.2f}{risk:>15.2f}{'yes' if above else 'NO':>20}"
              f"{cover['ips']:>11.0%}{cover['snips']:>13.0%}{cover['dr']:>10.0%}")
    print("(goals: >= 0.80, >= 1.5, yes, ~95%; clm/fair risk is inf where the fair baseline finds no retention "
          "action worth its cost)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bases", nargs="+", default=["20000:2025-09-30", "100000"],
                        help="Simulated bases: CUSTOMERS or CUSTOMERS:LAST_DAY (the simulation starts 2024-01-01).")
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/clm-bench-policy"),
                        help="Workspaces are this path with -CUSTOMERS appended.")
    parser.add_argument("--skip-uplift", action="store_true", help="Only the policy table.")
    parser.add_argument("--ope-dates", type=int, default=6, help="Decision dates for the off-policy check.")
    parser.add_argument("--exploration", type=float, default=0.02,
                        help="Exploration share of the batch whose own logs are judged (clm score's default).")
    parser.add_argument("--replications", type=int, default=100, help="Draws of clm's own logged decisions.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    summary([one_base(spec, args.workspace, args) for spec in args.bases])


if __name__ == "__main__":
    main()
