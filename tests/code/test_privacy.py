"""Privacy (issue 30): `clm forget` erases customers from every file of the workspace and
from Redis, the API no longer knows them, an old export brought again leaves them out, a
killed erasure run again ends as one run; the main job keeps rows of customers only where
they are needed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import pipelines.jobs.forget as forget_module
from clm.workspace import Workspace
from decisions import log as decision_log
from decisions.catalogue import load_catalogue
from decisions.journal import ApiDecision
from features.build import build_features, snapshot_dates
from features.repo import OnlineStoreSettings
from features.store import apply, materialize
from pipelines.jobs.forget import forget
from tests.clirun import invoke
from tests.conftest import copy_trained
from tests.privacy_scan import files_holding

KEY = "k" * 32
WHEN = pd.Timestamp("2026-02-01", tz="UTC")


def treated_and_control(ws: Workspace) -> tuple[list[str], str]:
    """Two customers the batch contacted, the customer its manifest shows as the example
    (when there is one), and one more customer who stays."""
    batch = next((ws.root / "scores").glob("*.parquet"))
    scores = pd.read_parquet(batch)
    contacted = scores.loc[scores.action != "none", "customer_id"].head(2).tolist()
    showcase = (json.loads((batch / "_manifest.json").read_text())["decisions"] or {}).get("showcase")
    ids = contacted + ([showcase["customer_id"]] if showcase else [])
    control = scores.loc[~scores.customer_id.isin(ids) & (scores.action != "none"), "customer_id"].iloc[0]
    return list(dict.fromkeys(ids)), control


def journal_about(ws: Workspace, customer: str, other: str) -> None:
    """An API decision for `customer` with feedback, and feedback on `other`'s batch decision."""
    journal = decision_log.journal(ws)
    journal.ensure()
    journal.add_decisions([ApiDecision("api-00ff", customer, ["success_call"], 1.0, ["a reason"], WHEN, WHEN,
                                       {"churn": "1"})])
    journal.add_feedback("api-00ff", "accepted", "success_call", WHEN)
    day = pd.read_parquet(next((ws.root / "scores").glob("*.parquet"))).as_of.iloc[0]
    journal.add_feedback(decision_log.batch_decision_id(day, other), "rejected", None, WHEN)


def test_forget_erases_them_from_every_file_and_the_api_no_longer_knows_them(trained_copy):
    from serving.runtime import Runtime

    ws = trained_copy
    ids, control = treated_and_control(ws)
    journal_about(ws, ids[0], ids[1])
    leftover = ws.raw_dir / ".customers.parquet.tmp-99999"  # what a killed write leaves: their rows too
    shutil.copy(ws.table_path("customers"), leftover)
    before = files_holding(ws.root, [*ids, control])
    assert ids[0] in before[leftover.relative_to(ws.root).as_posix()]
    for place in ("raw/customers.parquet", "feature_repo/online.db", "decisions/journal.sqlite"):
        assert ids[0] in before[place], place  # the scan finds them where they are: it has teeth
    assert any(p.startswith("scores/") and ids[1] in h for p, h in before.items())

    result = invoke("forget", *ids, "-w", str(ws.root))
    assert result.exit_code == 0 and result.mentions(f"Forgot {len(ids)} customer(s)"), result.output

    assert files_holding(ws.root, ids) == {}  # every byte of every file, Parquet and SQLite decoded
    after = files_holding(ws.root, [control])
    assert {"raw/customers.parquet", "feature_repo/online.db"} <= set(after)  # only they went
    record = json.loads((ws.root / "privacy" / "erased.json").read_text())
    assert len(record["erased"]) == len(ids) and not any(i in json.dumps(record) for i in ids)
    runtime = Runtime(ws)
    answers, unknown = runtime.answer_ids([*ids, control], None, 1)
    assert unknown == ids and [a["customer_id"] for a in answers] == [control]  # /score: 404 for them
    from serving.errors import RequestError

    for write in (lambda: runtime.consent(ids[0], "email", True),
                  lambda: runtime.answer_features(ids[0], {}, None, None, 1)):
        with pytest.raises(RequestError) as refused:  # /consent, /score_features: nothing about them written again
            write()
        assert refused.value.status == 404
    again = invoke("forget", *ids, "-w", str(ws.root))  # nothing left to remove: said, not failed
    assert again.exit_code == 0 and again.mentions("(0 new to the erasure record)"), again.output


def test_a_killed_erasure_run_again_ends_as_one_run(main_job, tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_PRIVACY_KEY", KEY)
    killed, whole = copy_trained(main_job, tmp_path / "killed"), copy_trained(main_job, tmp_path / "whole")
    ids, _ = treated_and_control(killed)
    calls = {"n": 0}
    remove = forget_module.remove_rows

    def killed_after_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return remove(*args, **kwargs)

    monkeypatch.setattr(forget_module, "remove_rows", killed_after_five)
    with pytest.raises(KeyboardInterrupt):
        forget(killed, ids, when=WHEN)
    assert files_holding(killed.root / "raw", ids)  # the kill left the job half done
    monkeypatch.setattr(forget_module, "remove_rows", remove)
    forget(killed, ids, when=WHEN)
    forget(whole, ids, when=WHEN)

    assert files_holding(killed.root, ids) == {}
    files = sorted(p.relative_to(whole.root) for p in whole.root.rglob("*.parquet") if p.is_file())
    assert files == sorted(p.relative_to(killed.root) for p in killed.root.rglob("*.parquet") if p.is_file())
    for relative in files:
        assert pq.read_table(killed.root / relative).equals(pq.read_table(whole.root / relative)), relative
    manifests = sorted(p.relative_to(whole.root) for p in whole.root.glob("scores/*/_manifest.json"))
    for relative in [Path("privacy/erased.json"), *manifests]:
        assert (killed.root / relative).read_text() == (whole.root / relative).read_text(), relative


def test_an_old_export_brought_again_leaves_the_forgotten_out(tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text("who,day,paid\n" + "".join(f"shopper-{i % 5},2024-0{1 + i % 6}-{1 + i:02d},{10 + i}\n"
                                                 for i in range(25)))
    ws = tmp_path / "shop"
    ingest = ("ingest", "transactions", str(orders), "--customer-col", "who", "--date-col", "day", "--amount-col",
              "paid", "-w", str(ws))
    assert invoke(*ingest).exit_code == 0
    assert invoke("forget", "shopper-1", "shopper-3", "-w", str(ws)).exit_code == 0
    assert set(pd.read_parquet(ws / "raw" / "transactions.parquet").customer_id) == {"shopper-0", "shopper-2",
                                                                                    "shopper-4"}

    again = invoke(*ingest, "--replace")
    assert again.exit_code == 0 and again.mentions("10 row(s) of 2 customer(s) erased by `clm forget` left out"), \
        again.output
    for table in ("transactions", "customers"):
        assert set(pd.read_parquet(ws / "raw" / f"{table}.parquet").customer_id) == {"shopper-0", "shopper-2",
                                                                                        "shopper-4"}
    assert files_holding(ws, ["shopper-1", "shopper-3"]) == {}


def test_a_file_of_ids_and_bad_input(tmp_path, workspace_copy):
    ws = workspace_copy.root
    listed = tmp_path / "erase.txt"
    listed.write_text("\ufeffC0000001\n\n  C0000002  \n")
    result = invoke("forget", "--file", str(listed), "-w", str(ws))
    assert result.exit_code == 0 and result.mentions("Forgot 2 customer(s)"), result.output
    assert files_holding(ws, ["C0000001", "C0000002"]) == {}
    nothing = invoke("forget", "-w", str(ws))
    assert nothing.exit_code == 2 and nothing.mentions("No customer id given") and "Traceback" not in nothing.output
    missing = invoke("forget", "--file", str(tmp_path / "none.txt"), "-w", str(ws))
    assert missing.exit_code == 2 and missing.mentions("cannot be read")


def test_redis_loses_only_this_workspaces_keys(small_workspace, tmp_path, redis_url):
    import redis

    from features.repo import redis_namespace

    workspaces = []
    for name in ("mine", "theirs"):  # two workspaces with the same customers, one Redis database
        ws = Workspace(tmp_path / name)
        shutil.copytree(small_workspace.root, ws.root)
        build_features(ws)
        apply(ws, OnlineStoreSettings("redis", f"{redis_url},db=5"))
        materialize(ws, snapshot_dates(ws.read_manifest())[-1])
        workspaces.append(ws)
    mine, theirs = workspaces
    ids = ["C0000001", "C0000002"]
    assert forget(mine, ids).online == 2
    host, port = redis_url.split(":")
    client = redis.Redis(host=host, port=int(port), db=5)

    def held(namespace: str) -> set[str]:
        found: set[str] = set()
        for key in client.scan_iter(match=f"{namespace}:*", count=10_000):
            fields = client.hkeys(key) if client.type(key) == b"hash" else []
            values = client.hvals(key) if fields else [client.get(key) or b""]
            text = b" ".join([key, *fields, *values])
            found.update(i for i in ids if i.encode() in text)
        return found

    namespaces = [redis_namespace(ws) for ws in workspaces]
    assert namespaces[0] != namespaces[1] and {k.decode().split(":")[0] for k in client.scan_iter()} == set(namespaces)
    assert held(namespaces[0]) == set() and held(namespaces[1]) == set(ids)  # every key and value; theirs untouched
    assert not files_holding(mine.root, ids) and files_holding(theirs.root, ids)
    client.flushdb()


def test_the_main_job_keeps_customers_rows_only_where_they_are_needed(main_job):
    """Every file the main job writes, outside the places that hold customers by design
    (raw/, features/, the online store, the decision log and the batch outputs), searched
    for customer ids and for customers' own values (signup times, behaviour to the last
    digit): model artifacts, monitoring references, the Feast registry, MLflow's store, the
    report (which lists at-risk customers by id only)."""
    root, outcome = main_job
    assert outcome.exit_code == 0
    ws = Workspace(root)
    customers = ws.read_table("customers")
    snapshot = pd.read_parquet(next((root / "features" / "engagement").glob("*.parquet")))
    own_values = [repr(float(v)) for v in snapshot.sessions_decayed_30d.dropna() if len(repr(float(v))) >= 12]
    signups = [f"{t:%Y-%m-%d %H:%M:%S}" for t in customers.signup_time] + [t.isoformat() for t in customers.signup_time]
    assert len(own_values) > 500  # values that can only be someone's
    named = ("raw/", "features/", "feature_repo/online.db", "decisions/", "scores/")
    assert files_holding(root, [*own_values, *signups], skip=named) == {}
    ids = files_holding(root, customers.customer_id.tolist(), skip=(*named, "reports/"))
    assert ids == {}


def email_actions(answer: dict) -> list[str]:
    catalogue = load_catalogue()
    return [a["action"] for a in answer["actions"]
            if a["action"] != "none" and catalogue.entry(a["action"]).channel == "email"]


def test_a_consent_withdrawn_counts_from_the_next_decision_of_the_api_and_the_batch(trained_copy):
    """A withdrawal ingested (the consents table) and one sent to the API (`Runtime.consent`,
    what POST /consent calls): the API's next answer, without a reload, and the next batch
    contact neither customer by e-mail."""
    from serving.runtime import Runtime

    ws = trained_copy
    runtime = Runtime(ws)
    batch = next((ws.root / "scores").glob("*.parquet"))
    scores = pd.read_parquet(batch)
    emailed = scores.loc[scores.action.isin(["upgrade_offer", "retention_offer", "referral_invite", "win_back"]),
                         "customer_id"].tolist()
    answers, _ = runtime.answer_ids(emailed[:60], None, 3)
    both = [a["customer_id"] for a in answers if email_actions(a)][:2]
    assert len(both) == 2  # e-mailed by the batch and offered e-mail by the API: the test has teeth
    ingested, sent = both

    consents = ws.read_table("consents")
    withdrawal = pd.DataFrame({"customer_id": [ingested], "channel": ["email"], "granted": [False],
                               "event_time": [ws.read_manifest().end - pd.Timedelta(hours=1)]})
    pd.concat([consents, withdrawal], ignore_index=True).to_parquet(ws.table_path("consents"), index=False)
    runtime.consent(sent, "email", False)

    answers, _ = runtime.answer_ids([ingested, sent], None, 3)
    assert [email_actions(a) for a in answers] == [[], []]
    as_of = f"{scores.as_of.iloc[0]:%Y-%m-%d}"
    out = ws.root.parent / "rescored.parquet"
    rescored = invoke("score", "--as-of", as_of, "--out", str(out), "-w", str(ws.root))
    assert rescored.exit_code == 0, rescored.output
    after = pd.read_parquet(out).set_index("customer_id")
    assert not after.loc[[ingested, sent], "action"].isin(["upgrade_offer", "retention_offer", "referral_invite",
                                                           "win_back"]).any()
    runtime.consent(sent, "email", True)  # given again: e-mail is offered again
    assert email_actions(runtime.answer_ids([sent], None, 3)[0][0])


def test_pseudonymised_ingest_keeps_e_mail_ids_out_and_forget_takes_them(tmp_path, monkeypatch):
    orders = tmp_path / "orders.csv"
    people = [f"ann.{i}@example.com" for i in range(5)]
    orders.write_text("who,day,paid\n" + "".join(f"{people[i % 5]},2024-0{1 + i % 6}-{1 + i:02d},{10 + i}\n"
                                                 for i in range(25)))
    ws = tmp_path / "shop"
    ingest = ("ingest", "transactions", str(orders), "--customer-col", "who", "--date-col", "day", "--amount-col",
              "paid", "-w", str(ws))
    refused = invoke(*ingest)  # e-mail addresses as ids, not pseudonymised
    assert refused.exit_code == 2 and refused.mentions("column 'who' holds e-mail addresses") and refused.mentions("--pseudonymise")
    assert not (ws / "raw").exists()
    no_key = invoke(*ingest, "--pseudonymise")
    assert no_key.exit_code == 2 and no_key.mentions("CLM_PRIVACY_KEY")

    monkeypatch.setenv("CLM_PRIVACY_KEY", KEY)
    done = invoke(*ingest, "--pseudonymise")
    assert done.exit_code == 0, done.output
    ids = pd.read_parquet(ws / "raw" / "transactions.parquet").customer_id
    assert ids.str.fullmatch(r"p-[0-9a-f]{24}").all() and ids.nunique() == 5
    assert files_holding(ws, [*people, "example.com"]) == {}  # no address entered the workspace
    mixed = invoke(*ingest, "--replace")  # the same workspace without pseudonyms: its ids would not join
    assert mixed.exit_code == 2 and mixed.mentions("holds pseudonymised ids")

    assert invoke("forget", people[1], "-w", str(ws)).exit_code == 0  # the CRM's id, pseudonymised the same way
    assert pd.read_parquet(ws / "raw" / "transactions.parquet").customer_id.nunique() == 4
    again = invoke(*ingest, "--pseudonymise", "--replace")
    assert again.exit_code == 0 and again.mentions("5 row(s) of 1 customer(s) erased by `clm forget` left out")
    monkeypatch.setenv("CLM_PRIVACY_KEY", "another key, long enough")
    other = invoke(*ingest, "--pseudonymise", "--replace")
    assert other.exit_code == 2 and other.mentions("another key")


def test_a_column_of_phone_numbers_is_refused_unless_allowed(tmp_path):
    people = tmp_path / "people.csv"
    people.write_text("id,since,phone\n" + "".join(f"c-{i},2024-01-0{1 + i},+44 20 7946 09{i:02d}\n" for i in range(5)))
    ws = tmp_path / "shop"
    ingest = ("ingest", "customers", str(people), "--customer-col", "id", "--date-col", "since", "--attributes",
              "phone", "-w", str(ws))
    refused = invoke(*ingest)
    assert refused.exit_code == 2 and refused.mentions("column 'phone' holds phone numbers") and refused.mentions("--allow-personal phone")
    kept = invoke(*ingest, "--allow-personal", "phone")
    assert kept.exit_code == 0, kept.output
    assert pd.read_parquet(ws / "raw" / "customers.parquet").phone.iloc[0] == "+44 20 7946 0900"  # text, not a number


def test_what_only_looks_like_a_phone_number_is_not_one():
    from clm.privacy import personal_kind

    def kind(*values: str) -> str | None:
        return personal_kind(pd.Series(list(values), dtype=object))

    assert kind("(555) 123-4567", "555.123.4567", "+1 415 555 0100") == "phone numbers"
    assert kind("06.12.34.56.78", "06 12 34 56 78") == "phone numbers"  # French, five groups
    assert kind("192.168.100.200", "10.250.100.199", "172.16.254.101") is None  # IPv4 addresses
    assert kind("2024-01-15", "15.01.2024") is None and kind("123456789012") is None  # dates, an id
    assert kind("a@example.com", "b@example.org") == "e-mail addresses"


def same_features(plain: Path, private: Path) -> None:
    """Every feature snapshot of the two workspaces holds the same rows, value for value
    (the ids aside)."""
    snapshots = sorted(p.relative_to(plain) for p in (plain / "features").glob("*/*.parquet"))
    assert snapshots and snapshots == sorted(p.relative_to(private) for p in (private / "features").glob("*/*.parquet"))
    for relative in snapshots:
        a, b = (pd.read_parquet(root / relative).drop(columns="customer_id") for root in (plain, private))
        columns = list(a.columns)
        pd.testing.assert_frame_equal(a.sort_values(columns, ignore_index=True),
                                      b.sort_values(columns, ignore_index=True), check_exact=True, obj=str(relative))


def rows_without_ids(path: Path) -> list[str]:
    """A batch output's rows, the customer id left out, each written exactly (repr), sorted."""
    frame = pd.read_parquet(path).drop(columns="customer_id")
    return sorted(repr(tuple(row)) for row in frame.itertuples(index=False))


def same_figures(plain: Path, private: Path) -> None:
    """Every figure the two workspaces' main jobs wrote is the same: every metric of every
    registered model version, every batch output row (ids aside), the policy's figures."""
    from training import registry

    figures = {}
    for root in (plain, private):
        client = registry.connect(Workspace(root))
        figures[root] = {(model.name, version.version): client.get_run(version.run_id).data.metrics
                         for model in client.search_registered_models()
                         for version in client.search_model_versions(f"name='{model.name}'")}
    assert figures[plain] and figures[plain] == figures[private]
    batches = sorted(p.name for p in (plain / "scores").glob("*.parquet"))
    assert batches and batches == sorted(p.name for p in (private / "scores").glob("*.parquet"))
    for name in batches:
        assert rows_without_ids(plain / "scores" / name) == rows_without_ids(private / "scores" / name), name
    policy = [root / "reports" / "policy.json" for root in (plain, private)]
    assert policy[0].exists() == policy[1].exists()
    if policy[0].exists():
        assert json.loads(policy[0].read_text()) == json.loads(policy[1].read_text())


@pytest.mark.slow
def test_a_pseudonymised_shop_has_the_same_features_and_figures(shop_and_sim, retrained_shop, tmp_path, monkeypatch):
    """The same export ingested with --pseudonymise and retrained: every feature snapshot
    holds the same values and every figure is the same, to the last bit (BG/NBD, Pareto/NBD,
    their stack and the blend included), though every id and so every row's place differs."""
    shop, sim = shop_and_sim
    plain, outcome = retrained_shop
    assert outcome.exit_code == 0, outcome.output
    export = tmp_path / "export.csv"
    tx = sim.read_table("transactions", columns=["customer_id", "event_time", "amount", "status"])
    tx[tx.status == "paid"][["customer_id", "event_time", "amount"]].to_csv(export, index=False)
    monkeypatch.setenv("CLM_PRIVACY_KEY", KEY)
    private = tmp_path / "private"
    assert invoke("ingest", "transactions", str(export), "--customer-col", "customer_id", "--date-col", "event_time",
                  "--amount-col", "amount", "--pseudonymise", "-w", str(private)).exit_code == 0
    assert invoke("retrain", "-w", str(private)).exit_code == 0
    ids = pd.read_parquet(private / "raw" / "customers.parquet").customer_id
    assert ids.str.startswith("p-").all() and len(ids) == len(plain.read_table("customers"))
    same_features(plain.root, private)
    same_figures(plain.root, private)


@pytest.mark.slow
def test_the_main_job_on_a_pseudonymised_crm_gives_every_figure_the_plain_one_gives(tmp_path, monkeypatch):
    """A whole CRM (campaigns, consents, usage, tickets, ...) ingested plain and with
    --pseudonymise, the main job run on each, and the uplift model promoted for a batch that
    decides and explores: the same features, models, figures and decisions."""
    from simulator.crm_export import export_crm
    from tests.conftest import simulate

    mapping = export_crm(simulate(tmp_path / "sim", 500, 3, "2024-01-01", "2025-06-30"), tmp_path / "export")
    monkeypatch.setenv("CLM_PRIVACY_KEY", KEY)
    roots = {"plain": tmp_path / "plain", "private": tmp_path / "private"}
    for name, root in roots.items():
        extra = ["--pseudonymise"] if name == "private" else []
        assert invoke("ingest", "--mapping", str(mapping), *extra, "-w", str(root)).exit_code == 0
        ran = invoke("run", "-w", str(root))
        assert ran.exit_code == 0, ran.output
        assert invoke("models", "promote", "uplift", "1", "-w", str(root)).exit_code == 0
        scored = invoke("score", "--out", str(tmp_path / f"{name}.parquet"), "-w", str(root))
        assert scored.exit_code == 0, scored.output
    customers = pd.read_parquet(roots["private"] / "raw" / "customers.parquet").customer_id
    assert customers.str.startswith("p-").all()
    same_features(roots["plain"], roots["private"])
    same_figures(roots["plain"], roots["private"])
    decided = [pd.read_parquet(tmp_path / f"{name}.parquet") for name in roots]
    assert decided[0].explored.any() and (decided[0].action.dropna() != "none").any()  # decided and explored
    assert rows_without_ids(tmp_path / "plain.parquet") == rows_without_ids(tmp_path / "private.parquet")


def test_a_consent_sent_after_a_batch_makes_its_rerun_decide_again(trained_copy):
    """The batch's output is kept when run again on the same inputs (`keep_current`, the
    retrain's rerun); a consent change since is an input: the rerun decides again."""
    from pipelines.score import prepare

    ws = trained_copy
    batch = next((ws.root / "scores").glob("*.parquet"))
    as_of = pd.read_parquet(batch).as_of.iloc[0]

    def inputs() -> str:
        return prepare(ws, as_of, batch, None, None, None, 0.02).fingerprint

    first = inputs()
    assert inputs() == first  # the same inputs: the output would be kept
    decision_log.journal(ws).add_consent("C0000001", "email", False, WHEN)
    assert inputs() != first
