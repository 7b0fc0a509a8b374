"""Benchmark: next-best-action policy value against the oracle and churn-risk targeting,
and uplift quality against the simulator's true effects.

1. Builds (once, kept in --workspace) a simulated base of N customers end to end with
   `clm run` (churn, upsell, stage, CLV and uplift trained as of the data's end).
2. Uplift: fits both learners (T- and DR-learner, `training.uplift`) on the logged
   decisions, times them, and scores each against the true effects on the test cutoff:
   Spearman of predicted and true value per action, and the true value captured by the
   top 10% / 30% by predicted value as a fraction of the oracle's top 10% / 30%.
3. Policy: at the data's end (a month start), every policy of `clm evaluate-policy`
   decides for the base at five budgets: B10 (the budget at which the oracle treats about
   10% of the base, found by bisection) x 0.25, 0.5, 1, 2, 4; each judged by the true
   effects. Prints value per 1,000 customers, and clm / oracle and clm / churn_risk, for
   the registered uplift model, and at B10 for each learner fitted in step 2.

4. Off-policy: at the latest matured decision dates, IPS, SNIPS and DR estimates (with 95%
   bootstrap intervals) of fixed policies and of clm's (after its training window) from the
   logged decisions alone, beside the truth; how often each interval covers it.

Goals (issue 11), at B10 on 100,000 customers: clm >= 0.80 x oracle, >= 1.5 x churn_risk.

    .venv/bin/python benchmarks/policy.py [--customers 100000] [--workspace /tmp/clm-bench-policy]
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


def build(workspace: Path, customers: int) -> None:
    built = workspace.with_name(workspace.name + f".built-{customers}")  # written once `clm run` has finished
    if built.exists() and (workspace / "raw").exists():
        print(f"Reusing the simulated base in {workspace}")
        return
    started = time.perf_counter()
    subprocess.run([str(ROOT / ".venv" / "bin" / "clm"), "run", "-n", str(customers), "-w", str(workspace)],
                   check=True, stdout=subprocess.DEVNULL)
    built.touch()
    print(f"clm run -n {customers:,}: {time.perf_counter() - started:.0f} s")


def uplift_quality(workspace: Path):  # type: ignore[no-untyped-def]
    from clm.workspace import Workspace
    from training.config import TrainConfig
    from training.train_uplift import fit_uplift, true_effects
    from training.uplift import truth_quality

    ws = Workspace(workspace)
    started = time.perf_counter()
    fitted = fit_uplift(ws, TrainConfig(), True, ws.read_manifest().end, {})
    print(f"\nUplift: both learners fitted in {time.perf_counter() - started:.0f} s on "
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


def policy_value(workspace: Path, fitted) -> None:  # type: ignore[no-untyped-def]
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
    candidates = {f"registered v{registered.base.uplift_version}": registered}
    if fitted is not None:
        for name, model in fitted.learners.items():
            effects = model.effects(registered.base.customers, catalogue.contact_ids)
            candidates[name] = replace(registered, predicted_churn=effects["churn"], predicted_upgrade=effects["upgrade"])
    print(f"{'uplift model':<16}{'budget':>10}" + "".join(f"{p:>12}" for p in POLICIES)
          + f"{'clm/oracle':>12}{'clm/risk':>10}{'treated':>9}")
    for label, inputs in candidates.items():
        for factor in (0.25, 0.5, 1.0, 2.0, 4.0) if label.startswith("registered") else (1.0,):
            started = time.perf_counter()
            results = evaluate(catalogue, inputs, b10 * factor)
            value = {p: results[p].as_dict()["value_per_1000"] for p in POLICIES}
            ratio_oracle = value["clm"] / value["oracle"] if value["oracle"] > 0 else float("nan")
            ratio_risk = value["clm"] / value["churn_risk"] if value["churn_risk"] > 0 else float("inf")
            print(f"{label:<16}{b10 * factor:>10,.0f}" + "".join(f"{value[p]:>12,.0f}" for p in POLICIES)
                  + f"{ratio_oracle:>12.2f}{ratio_risk:>10.2f}{results['clm'].treated:>9,}"
                  f"  ({time.perf_counter() - started:.1f} s)")
            if factor == 1.0:
                print(f"{'':<16}actions at B10: clm {results['clm'].actions}; oracle {results['oracle'].actions}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/clm-bench-policy"))
    parser.add_argument("--skip-uplift", action="store_true", help="Only the policy table.")
    parser.add_argument("--ope-dates", type=int, default=6, help="Decision dates for the off-policy check.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    build(args.workspace, args.customers)
    fitted = None if args.skip_uplift else uplift_quality(args.workspace)
    policy_value(args.workspace, fitted)
    offpolicy_coverage(args.workspace, args.ope_dates)


if __name__ == "__main__":
    main()
