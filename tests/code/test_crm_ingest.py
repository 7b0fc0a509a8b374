"""A whole CRM in: every table from exports with other names and formats, in one call or
several, each refusal naming the table and the column, and the main job on what came in."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clm.domain import Table
from clm.errors import ClmError
from clm.workspace import Workspace
from pipelines.ingest import ExportSource, ReadOptions, ingest_tables
from serving.scoring import consents_of
from simulator.crm_export import export_crm
from simulator.tables import SIMULATED_TABLES
from tests.clirun import invoke, tree_digest
from tests.conftest import simulate
from tests.handmade import attribute_history_shop
from training import registry

GENERATED_IDS = {"transactions": "transaction_id", "tickets": "ticket_id", "referrals": "referral_id",
                 "actions": "decision_id"}


def same_rows(expected: pd.DataFrame, got: pd.DataFrame, table: str) -> None:
    """Equal value for value (and type for type), whatever the row order and the ids clm numbers itself."""
    drop = [GENERATED_IDS[table]] if table in GENERATED_IDS else []
    columns = [c for c in expected.columns if c not in drop]
    a = expected[columns].sort_values(columns).reset_index(drop=True)
    b = got[columns].sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_every_table_of_a_crm_export_comes_back_as_the_simulator_wrote_it(small_workspace, tmp_path):
    mapping = export_crm(small_workspace, tmp_path / "export")  # German headers, latin-1, offsets, gzip, ...
    ws = tmp_path / "ws"
    result = invoke("ingest", "--mapping", str(mapping), "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert result.mentions("Ingested campaigns:") and result.mentions("a contractual business")
    workspace = Workspace(ws)
    brought = [t for t in SIMULATED_TABLES if t.value not in ("ground_truth", "ground_truth_effects")]
    assert sorted(workspace.read_manifest().tables) == sorted(t.value for t in brought)
    for table in brought:
        same_rows(small_workspace.read_table(table), workspace.read_table(table), table.value)
    assert invoke("validate", "-w", str(ws)).exit_code == 0


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def source(table: str, path: Path, **columns: str) -> ExportSource:
    return ExportSource(table, path, columns)


def test_tables_arrive_in_several_calls_and_only_a_held_one_needs_replace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    sales = write(tmp_path / "sales.csv", "who,day,paid\na,2024-01-05,10\nb,2024-02-01,5\na,2024-03-01,7\n")
    ingest_tables([source("transactions", sales, customer_id="who", event_time="day", amount="paid")], ws)
    inferred = ws.read_table(Table.CUSTOMERS).set_index("customer_id").signup_time
    assert inferred.to_dict() == {"a": pd.Timestamp("2024-01-05", tz="UTC"), "b": pd.Timestamp("2024-02-01", tz="UTC")}

    # The customers table takes the inferred one's place without --replace: it was never the user's.
    people = write(tmp_path / "people.csv", "id;since;tier;mail\na;2023-11-30;gold;yes\nb;2024-01-20;;no\n")
    ingest_tables([ExportSource("customers", people, {"customer_id": "id", "signup_time": "since", "segment": "tier",
                                                      "consent_email": "mail"})], ws)
    customers = ws.read_table(Table.CUSTOMERS).set_index("customer_id")
    assert customers.signup_time["a"] == pd.Timestamp("2023-11-30", tz="UTC")  # before the data: allowed
    assert customers.segment.to_dict() == {"a": "gold", "b": None}
    assert customers.consent_email.to_dict() == {"a": True, "b": False}
    manifest = ws.read_manifest()
    assert manifest.tables == ["customers", "transactions"] and manifest.business == "non_contractual"
    assert manifest.start == pd.Timestamp("2024-01-05", tz="UTC")  # the first event, not the first signup

    # A held table is refused, named, unless --replace, which replaces it alone.
    before = tree_digest(ws.root)
    with pytest.raises(ClmError, match=r"already holds the table\(s\) transactions. Pass --replace"):
        ingest_tables([source("transactions", sales, customer_id="who", event_time="day", amount="paid")], ws)
    assert tree_digest(ws.root) == before
    fewer = write(tmp_path / "fewer.csv", "who,day,paid\nb,2024-04-01,9\n")
    (ws.root / "features").mkdir()
    (ws.root / "features" / "_build.json").write_text("{}")  # made from the old raw data: it stays
    ingest_tables([source("transactions", fewer, customer_id="who", event_time="day", amount="paid")], ws, replace=True)
    assert ws.read_table(Table.TRANSACTIONS).amount.tolist() == [9.0]
    assert sorted(ws.read_table(Table.CUSTOMERS).customer_id) == ["a", "b"]  # the user's customers stay
    assert (ws.root / "features" / "_build.json").exists()

    # Subscriptions make it contractual.
    plans = write(tmp_path / "plans.csv", "id,at,what,plan,price\nb,2024-01-20,Started,basic,\"9,5\"\n")
    ingest_tables([ExportSource("subscriptions", plans, {"customer_id": "id", "event_time": "at", "event": "what"},
                                ReadOptions(decimal=","), {"event": {"Started": "start"}})], ws)
    assert ws.read_manifest().business == "contractual"
    assert ws.read_table(Table.SUBSCRIPTIONS).price.tolist() == [9.5]


BAD_EXPORTS = {  # table -> (file text, columns, what the refusal must name)
    "customers": ("id,since\nx,yesterday\n", {"customer_id": "id", "signup_time": "since"},
                  ["(customers)", "date that does not parse in column 'since'"]),
    "subscriptions": ("id,at,Status,plan,price\nx,2024-01-02,paused,basic,9\n",
                      {"customer_id": "id", "event_time": "at", "event": "Status"},
                      ["(subscriptions)", "value not one of start, upgrade, downgrade, cancel in column 'Status'",
                       "--map event:WORD=VALUE", "'paused'"]),
    "usage": ("id,day,minutes\nx,2024-01-02,-4\n", {"customer_id": "id", "event_time": "day", "active_minutes": "minutes"},
              ["(usage)", "value outside [0, 1e+06] in column 'minutes'"]),
    "tickets": ("id,opened,stars\nx,2024-01-02,7\n", {"customer_id": "id", "event_time": "opened", "csat": "stars"},
                ["(tickets)", "value outside [1, 5] in column 'stars'"]),
    "nps": ("id,at,nps\nx,2024-01-02,eleven\n", {"customer_id": "id", "event_time": "at", "score": "nps"},
            ["(nps)", "value that is not a number in column 'nps'"]),
    "referrals": ("id,at,won\nx,2024-01-02,perhaps\n", {"customer_id": "id", "event_time": "at", "converted": "won"},
                  ["(referrals)", "not a yes/no value in column 'won'"]),
    "consents": ("id,at,medium,ok\nx,2024-01-02,fax,yes\n",
                 {"customer_id": "id", "event_time": "at", "channel": "medium", "granted": "ok"},
                 ["(consents)", "value not one of email, phone in column 'medium'"]),
    "campaigns": ("id,sent,offer\nx,2024-01-02,10% off\ny,2024-01-02,none\n",
                  {"customer_id": "id", "event_time": "sent", "action": "offer"},
                  ["(campaigns)", "action that is not an id", "column 'offer'", "--map action:WORD=id"]),
    "transactions": ("id,at,total\nx,2024-01-02,-3\n", {"customer_id": "id", "event_time": "at", "amount": "total"},
                     ["(transactions)", "negative amount in column 'total'"]),
}


@pytest.mark.parametrize("table", sorted(BAD_EXPORTS))
def test_a_bad_value_is_refused_naming_the_table_and_the_column(table, tmp_path):
    text, columns, named = BAD_EXPORTS[table]
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(ClmError) as err:
        ingest_tables([ExportSource(table, write(tmp_path / "export.csv", text), columns)], ws)
    for words in named:
        assert words in str(err.value), (words, str(err.value))
    assert not ws.raw_dir.exists()


def test_a_missing_column_names_the_field_and_the_option(tmp_path):
    path = write(tmp_path / "t.csv", "id,at\nx,2024-01-02\n")
    result = invoke("ingest", "nps", str(path), "--customer-col", "id", "--date-col", "at", "-w", str(tmp_path / "w"))
    assert result.exit_code == 2 and result.mentions("(nps): column 'score' (field score: the score, 0 to 10)")
    assert "--col FIELD=COLUMN" in result.output and "'id', 'at'" in result.output
    wrong = invoke("ingest", "nps", str(path), "--amount-col", "x", "-w", str(tmp_path / "w"))
    assert wrong.exit_code == 2 and wrong.mentions("--amount-col is for transactions")
    unknown = invoke("ingest", "orders", str(path), "-w", str(tmp_path / "w"))
    assert unknown.exit_code == 2 and unknown.mentions("'orders' is not a table clm ingests")
    assert "clm ingest nps --fields" in result.output
    listed = invoke("ingest", "nps", "--fields")
    assert listed.exit_code == 0 and "score" in listed.output and "the score, 0 to 10" in listed.output


def test_the_tables_are_checked_against_each_other(tmp_path):
    ws = Workspace(tmp_path / "ws")
    people = write(tmp_path / "people.csv", "id,since\na,2024-01-10\n")
    sales = write(tmp_path / "sales.csv", "id,at,total\na,2024-01-05,1\nzz,2024-01-12,2\n")
    with pytest.raises(ClmError) as err:
        ingest_tables([source("customers", people, customer_id="id", signup_time="since"),
                       source("transactions", sales, customer_id="id", event_time="at", amount="total")], ws)
    text = str(err.value)
    assert "transactions.customer_id: events for unknown customers (not in the customers table) (1 row); e.g. zz" in text
    assert "transactions.event_time: events before the customer's signup" in text
    assert f"Raw data in {ws.root} breaks its contract" in text and not ws.raw_dir.exists()


def test_campaign_assignment_must_be_known(tmp_path):
    ws = Workspace(tmp_path / "ws")
    log = write(tmp_path / "promo.csv", "id,sent,promo\na,2024-01-02,Yes\nb,2024-01-02,Yes\nc,2024-01-02,Yes\n"
                                        "d,2024-01-02,No\ne,2024-02-02,Yes\nf,2024-02-02,No\n")
    columns = {"customer_id": "id", "event_time": "sent", "action": "promo"}
    with pytest.raises(ClmError, match="no control group.*--control-value"):
        ingest_tables([ExportSource("campaigns", log, columns)], ws)
    with pytest.raises(ClmError, match="how customers were assigned is unknown.*--randomised"):
        ingest_tables([ExportSource("campaigns", log, columns, control_value="No")], ws)
    ingest_tables([ExportSource("campaigns", log, columns, values={"action": {"Yes": "voucher"}}, control_value="No",
                                randomised=True)], ws)
    actions = ws.read_table(Table.ACTIONS).set_index("customer_id")
    # Day one: 3 of 4 got the voucher, 1 of 4 was held out; day two: one each.
    assert actions.propensity.to_dict() == {"a": 0.75, "b": 0.75, "c": 0.75, "d": 0.25, "e": 0.5, "f": 0.5}
    assert actions.action.to_dict() == {"a": "voucher", "b": "voucher", "c": "voucher", "d": "none",
                                        "e": "voucher", "f": "none"}
    assert actions.is_control.sum() == 2 and set(actions.campaign_id) == {"2024-01-02", "2024-02-02"}


def test_consents_follow_the_latest_change_before_the_moment(tmp_path):
    ws = Workspace(tmp_path / "ws")
    people = write(tmp_path / "people.csv", "id,since,mail,phone\na,2024-01-01,yes,no\nb,2024-01-01,no,no\n")
    changes = write(tmp_path / "consents.csv", "id,at,channel,granted\na,2024-03-01,email,no\nb,2024-02-01,phone,yes\n"
                                               "b,2024-04-01,phone,no\n")
    ingest_tables([ExportSource("customers", people, {"customer_id": "id", "signup_time": "since",
                                                      "consent_email": "mail", "consent_phone": "phone"}),
                   source("consents", changes, customer_id="id", event_time="at")], ws)
    now = consents_of(ws)
    assert now.consent_email.to_dict() == {"a": False, "b": False}  # a withdrew on 1 March
    assert now.consent_phone.to_dict() == {"a": False, "b": False}  # b gave it, then withdrew it
    march = consents_of(ws, pd.Timestamp("2024-03-01", tz="UTC"))
    assert march.consent_email.to_dict() == {"a": True, "b": False}  # the withdrawal is at, not before, 1 March
    assert march.consent_phone.to_dict() == {"a": False, "b": True}
    january = consents_of(ws, pd.Timestamp("2024-01-15", tz="UTC"))
    assert january.consent_phone.to_dict() == {"a": False, "b": False}  # b gave it only on 1 February
    assert january.consent_email.to_dict() == {"a": True, "b": False}  # a withdrew later: it held before


# The business's own names for the simulator's six actions: nothing downstream may know those.
OWN_NAMES = {"retention_offer": "voucher_20", "success_call": "csm-call", "onboarding_nudge": "tour",
             "upgrade_offer": "pro_trial", "referral_invite": "refer_a_friend", "win_back": "come_back"}


def test_the_main_job_on_some_tables_of_a_crm_with_its_own_actions_never_simulates(tmp_path):
    from decisions.catalogue import DEFAULT_CATALOGUE
    from training import registry

    sim = simulate(tmp_path / "sim", 400, 5, "2024-01-01", "2025-06-30")
    mapping = export_crm(sim, tmp_path / "export")
    spec = yaml.safe_load(mapping.read_text())
    spec["tables"] = {k: v for k, v in spec["tables"].items() if k in ("customers", "subscriptions", "campaigns")}
    spec["tables"]["campaigns"]["values"] = {"action": OWN_NAMES}
    kunden = tmp_path / "export" / "kunden.csv"  # the business's own columns beside clm's
    people = pd.read_csv(kunden, sep=";", encoding="latin-1", dtype=str)
    rng = np.random.default_rng(3)
    people["V1"] = [f"{v:.3f}".replace(".", ",") for v in rng.random(len(people))]  # decimal commas, as the file has
    people["tier_b"] = rng.choice(["gold", "silver", ""], len(people))
    people.to_csv(kunden, sep=";", index=False, encoding="latin-1")
    spec["tables"]["customers"].update(attributes=["V1", "tier_b"], decimal=",")
    # A changing attribute beside them: each customer's loyalty level, from a day after signup, raised later.
    signup = pd.to_datetime(people["Angelegt"], format="%d.%m.%Y %H:%M:%S", utc=True)
    raised = signup + pd.to_timedelta(rng.integers(30, 400, len(people)), unit="D")
    pd.concat([pd.DataFrame({"Kunde": people.Kunde, "Ab": signup + pd.Timedelta(days=1), "Treue": 1}),
               pd.DataFrame({"Kunde": people.Kunde, "Ab": raised, "Treue": 2})[raised < "2025-06-30"]]).to_csv(
        tmp_path / "export" / "treue.csv", index=False)
    spec["tables"]["attribute_history"] = {"file": "treue.csv", "columns": {"customer_id": "Kunde", "event_time": "Ab"},
                                           "attributes": ["Treue"]}
    mapping.write_text(yaml.safe_dump(spec))
    catalogue = yaml.safe_load(DEFAULT_CATALOGUE.read_text())
    for entry in catalogue["actions"]:
        entry["id"] = OWN_NAMES.get(entry["id"], entry["id"])
    ours = tmp_path / "our_actions.yaml"
    ours.write_text(yaml.safe_dump(catalogue))
    ws = tmp_path / "crm"
    assert invoke("ingest", "--mapping", str(mapping), "-w", str(ws)).exit_code == 0
    assert set(Workspace(ws).read_table(Table.ACTIONS).action) <= {"none", *OWN_NAMES.values()}
    kept = Workspace(ws).read_table(Table.CUSTOMERS).set_index("customer_id")
    given = people.set_index("Kunde").V1.str.replace(",", ".").astype(float)
    assert kept.V1.dtype == float and kept.V1.sort_index().tolist() == given.sort_index().tolist()
    assert set(kept.tier_b.dropna()) == {"gold", "silver"} and kept.tier_b.isna().sum() == (people.tier_b == "").sum()
    raw = tree_digest(ws / "raw")

    result = invoke("run", "--catalogue", str(ours), "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert "Ingested data (no simulation)" in result.output and "Simulat" not in result.output.replace(
        "Ingested data (no simulation)", "")
    assert tree_digest(ws / "raw") == raw  # not a file of its data changed, none added (no ground truth)
    scores = pd.read_parquet(next((ws / "scores").glob("*.parquet")))
    client = registry.connect(Workspace(ws))
    # Without behaviour (no usage or billing) the models are close to chance and which pass the
    # gate is a draw; every champion scores.
    columns = {"churn": "churn_probability", "upsell": "upsell_probability", "stage": "predicted_stage"}
    champions = [m for m, version in registry.champion_versions(client).items() if version and m in columns]
    assert len(scores) and champions and all(scores[columns[m]].notna().any() for m in champions), champions
    for model in ("churn", "upsell", "uplift"):  # the attributes are features like the others
        assert {"V1", "tier_b", "Treue"} <= set(registry.load_version(client, model, 1).features), model
    uplift = registry.load_version(client, "uplift", 1)
    assert uplift.actions and set(uplift.actions) <= set(OWN_NAMES.values())  # learned under the business's names
    assert set(scores.action.dropna()) <= {"none", *OWN_NAMES.values()}

    # The API takes the business's attributes as it takes clm's own features (kinds from the Feast views).
    from decisions.catalogue import load_catalogue
    from serving.errors import RequestError
    from serving.runtime import Runtime

    runtime = Runtime(Workspace(ws), catalogue=load_catalogue(ours))
    assert (runtime.kinds["V1"], runtime.kinds["tier_b"], runtime.kinds["tenure_days"]) == ("float", "string", "float")
    answer = runtime.answer_features("new-1", {"V1": 0.5, "tier_b": "gold", "tenure_days": 30.0, "is_subscribed": 1.0},
                                     None, None, 3)
    assert answer["customer_id"] == "new-1" and answer["in_population"]
    with pytest.raises(RequestError, match="features.V1 must be a number"):
        runtime.answer_features("new-1", {"V1": "high", "is_subscribed": 1.0}, None, None, 3)

    # Scored with the shipped catalogue (the simulator's names), nothing could be recommended: said.
    assert invoke("models", "promote", "uplift", "1", "-w", str(ws)).exit_code == 0
    shipped = invoke("score", "--out", str(tmp_path / "s.parquet"), "-w", str(ws))
    assert shipped.exit_code == 0 and shipped.mentions("and the catalogue names none of them, so no action can be "
                                                       "recommended: pass the business's catalogue with --catalogue")


def test_a_shop_with_campaigns_and_no_subscriptions_gets_its_own_actions(retrained_shop, shop_and_sim, tmp_path):
    """A shop (transactions only) brings its campaign history, its own action names and
    logged propensities: the uplift model learns them (churn there: no purchase within the
    horizon) and the batch recommends them."""
    from decisions.catalogue import DEFAULT_CATALOGUE

    shop, _ = retrained_shop
    _, sim = shop_and_sim
    ws = tmp_path / "shop"
    shutil.copytree(shop.root, ws)
    buyers = set(Workspace(ws).read_table(Table.CUSTOMERS).customer_id)
    logged = sim.read_table(Table.ACTIONS)
    logged = logged[logged.customer_id.isin(buyers)]
    offer = logged.action.map({**OWN_NAMES, "none": "nothing sent"})
    write(tmp_path / "campaigns.csv", "Kunde;Versand;Angebot;Wahrscheinlichkeit\n" + "".join(
        f"{c};{t:%Y-%m-%d %H:%M:%S};{a};{p:.6f}\n" for c, t, a, p in zip(logged.customer_id, logged.event_time, offer,
                                                                      logged.propensity)))
    brought = invoke("ingest", "campaigns", str(tmp_path / "campaigns.csv"), "--sep", ";", "--customer-col", "Kunde",
                     "--date-col", "Versand", "--col", "action=Angebot", "--col", "propensity=Wahrscheinlichkeit",
                     "--control-value", "nothing sent", "-w", str(ws))
    assert brought.exit_code == 0, brought.output
    assert Workspace(ws).read_manifest().business == "non_contractual"
    consents = sim.read_table(Table.CONSENTS)  # without them no one may be contacted: the batch would say so
    consents = consents[consents.customer_id.isin(buyers)]
    write(tmp_path / "optin.csv", "id,at,channel,granted\n" + "".join(
        f"{c},{t:%Y-%m-%d %H:%M:%S},{ch},{'yes' if g else 'no'}\n"
        for c, t, ch, g in zip(consents.customer_id, consents.event_time, consents.channel, consents.granted)))
    assert invoke("ingest", "consents", str(tmp_path / "optin.csv"), "--customer-col", "id", "--date-col", "at",
                  "-w", str(ws)).exit_code == 0

    trained = invoke("train", "--models", "uplift", "-w", str(ws))
    assert trained.exit_code == 0, trained.output
    client = registry.connect(Workspace(ws))
    uplift = registry.load_version(client, "uplift", str(registry.latest_version(client, "uplift").version))
    # Every action the shop logged is learned under its own name, or left out with the reason (too little
    # support, or the gate per action: on this small base its effect may tell nothing on held-out decisions).
    assert set(uplift.actions) | set(uplift.unsupported) == {OWN_NAMES.get(a, a) for a in set(logged.action) - {"none"}}
    assert all(why for why in uplift.unsupported.values())
    if registry.alias_version(client, "uplift", registry.CHAMPION) is None:  # the gate's call; by hand otherwise
        assert invoke("models", "promote", "uplift", "1", "-w", str(ws)).exit_code == 0
    # Contacts that cost nothing: an action the model expects to keep a buyer buying pays (a year of their
    # spend), so the batch recommends it whatever the effects' size on a base this small.
    catalogue = yaml.safe_load(DEFAULT_CATALOGUE.read_text())
    for entry in catalogue["actions"]:
        entry.update(id=OWN_NAMES.get(entry["id"], entry["id"]), unit_cost=0)
        entry.pop("discount", None)
    ours = write(tmp_path / "ours.yaml", yaml.safe_dump(catalogue))
    scored = invoke("score", "--catalogue", str(ours), "--out", str(tmp_path / "s.parquet"), "-w", str(ws))
    assert scored.exit_code == 0, scored.output
    batch = pd.read_parquet(tmp_path / "s.parquet")
    recommended = batch[batch.action.notna() & (batch.action != "none") & ~batch.explored]
    assert set(recommended.action) <= set(uplift.actions), batch.action.value_counts()  # only what was learned
    assert (recommended.action_value > 0).all()
    assert len(recommended) or not uplift.actions  # an action learned and free pays for somebody


def test_the_readme_example_mapping_reads_and_a_wrong_one_is_named(tmp_path):
    from pipelines.ingest.mapping import Reading, read_mapping

    example = Path(__file__).parents[2] / "examples" / "crm_mapping.yaml"
    mapped = read_mapping(example)
    assert mapped.until == pd.Timestamp("2025-06-30", tz="UTC")
    sources = {s.table: s for s in mapped.sources}
    assert list(sources) == ["customers", "subscriptions", "transactions", "tickets", "campaigns"]
    assert sources["tickets"].options.decimal == "." and sources["customers"].options.decimal == ","  # table wins
    assert sources["customers"].options.date_format == "%d/%m/%Y %H:%M"
    assert sources["campaigns"].path == example.parent / "exports" / "spring_test.csv"
    assert sources["campaigns"].randomised and sources["campaigns"].control_value == "Holdout"
    # The command line's read options win over the file's top level, a table's own over both.
    given = {s.table: s.options for s in read_mapping(example, Reading(date_format="%Y/%m/%d", sep="tab",
                                                                       earliest_date="2001-02-03")).sources}
    assert given["transactions"].date_format == "%Y/%m/%d" and given["transactions"].sep == "tab"
    assert given["customers"].date_format == "%d/%m/%Y %H:%M" and given["tickets"].sep == ","  # their own
    assert given["transactions"].decimal == ","  # not given on the command line: the file's top level
    assert {o.earliest for o in given.values()} == {pd.Timestamp("2001-02-03", tz="UTC")}

    wrong = write(tmp_path / "m.yaml", "tables:\n  orders: {file: o.csv}\n")
    with pytest.raises(ClmError, match="orders is not a table clm ingests"):
        read_mapping(wrong)
    typo = write(tmp_path / "t.yaml", "tables:\n  nps: {file: n.csv, colums: {score: s}}\n")
    with pytest.raises(ClmError, match=r"tables.nps.colums: Extra inputs are not permitted"):
        read_mapping(typo)
    field = write(tmp_path / "f.yaml", "tables:\n  nps: {file: n.csv, columns: {stars: s}}\n")
    result = invoke("ingest", "--mapping", str(field), "-w", str(tmp_path / "w"))
    assert result.exit_code == 2 and result.mentions("Table 'nps' has no field 'stars'")


def test_what_a_first_user_got_wrong_is_refused_or_taken_right(tmp_path):
    people = write(tmp_path / "c.csv", "Id,Created,region,Country,signup_time,Churn,propensity\n"
                                        "C1,2023-01-05,north,DE,x,1,0.5\n")
    for attributes in ("signup_time", "Country", "Id"):  # a field's name, or a column read as a field
        with pytest.raises(ClmError, match=f"attribute\\(s\\) '{attributes}' are already read as fields"):
            ingest_tables([ExportSource("customers", people, {"customer_id": "Id", "signup_time": "Created",
                                                              "region": "Country"}, attributes=(attributes,))],
                          Workspace(tmp_path / "a"))
    for taken in ("region", "Churn", "propensity"):  # a feature, a label (in any case), a decision's column
        with pytest.raises(ClmError, match=f"'{taken}' share the name of a feature, a label or a score"):
            ingest_tables([ExportSource("customers", people, {"customer_id": "Id", "signup_time": "Created"},
                                        attributes=(taken,))], Workspace(tmp_path / "a"))
    log = write(tmp_path / "p.csv", "Id,Sent,Offer,propensity\nC1,2023-03-01,voucher_10,0.9\nC2,2023-03-01,Holdout,0.9\n")
    with pytest.raises(ClmError, match="propensity \\(column 'propensity'\\) and --randomised .* choose one"):
        ingest_tables([ExportSource("campaigns", log, {"customer_id": "Id", "event_time": "Sent", "action": "Offer"},
                                    control_value="Holdout", randomised=True)], Workspace(tmp_path / "b"))
    mapping = write(tmp_path / "m.yaml", f"tables:\n  campaigns: {{file: {log}}}\n")
    refused = invoke("ingest", "--mapping", str(mapping), "--randomised", "-w", str(tmp_path / "c"))
    assert refused.exit_code == 2 and refused.mentions("--randomised describes one table's file; with --mapping")

    # A customer who signed up after the last purchase, a ticket resolved after the last one opened: the
    # data's end is the last moment any table records.
    ws = Workspace(tmp_path / "d")
    signups = write(tmp_path / "s.csv", "Id,Created\nC1,2023-01-05\nC2,2023-03-15\n")
    sales = write(tmp_path / "t.csv", "Id,At,Total\nC1,2023-03-01,5\n")
    tickets = write(tmp_path / "k.csv", "Id,Opened,Solved\nC1,2023-02-01,2023-03-20\n")
    ingest_tables([ExportSource("customers", signups, {"customer_id": "Id", "signup_time": "Created"}),
                   source("transactions", sales, customer_id="Id", event_time="At", amount="Total"),
                   source("tickets", tickets, customer_id="Id", event_time="Opened", resolved_time="Solved")], ws)
    manifest = ws.read_manifest()
    assert (manifest.start, manifest.end) == (pd.Timestamp("2023-02-01", tz="UTC"), pd.Timestamp("2023-03-21", tz="UTC"))


def test_a_campaign_on_any_day_is_learned_at_its_month_start(tmp_path):
    from training.uplift import decision_rows

    ws = Workspace(tmp_path / "ws")
    log = write(tmp_path / "promo.csv", "id,sent,offer\na,2024-03-14 10:00,voucher\nb,2024-03-14 10:00,none\n"
                                        "a,2024-03-20,voucher\nc,2024-04-01,voucher\nd,2024-04-30 23:59,none\n")
    ingest_tables([ExportSource("campaigns", log, {"customer_id": "id", "event_time": "sent", "action": "offer"},
                                randomised=True)], ws)
    march, april = pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-04-01", tz="UTC")
    rows = decision_rows(ws, [march, april])
    got = {(r.customer_id, r.event_timestamp, r.action) for r in rows.itertuples()}
    # a's second contact in March is not a second decision: the first one in the month is.
    assert got == {("a", march, "voucher"), ("b", march, "none"), ("c", april, "voucher"), ("d", april, "none")}
    march_day = rows[rows.event_timestamp == march].set_index("customer_id").propensity
    # One campaign per day: on the 14th, a got the voucher and b was held out, a half each.
    assert march_day.to_dict() == {"a": 0.5, "b": 0.5}


def test_the_main_job_judges_the_policy_on_the_month_start_an_export_ends_in():
    from pipelines.jobs.run import decision_day

    assert decision_day(pd.Timestamp("2025-12-31", tz="UTC")) == pd.Timestamp("2025-12-01", tz="UTC")
    assert decision_day(pd.Timestamp("2026-01-01", tz="UTC")) == pd.Timestamp("2026-01-01", tz="UTC")  # a simulation's


def test_one_or_two_campaign_months_are_split_by_customer_more_by_time():
    from training.labels import NotEnoughHistory
    from training.train_uplift import customer_parts, uplift_split

    def month(text: str) -> pd.Timestamp:
        return pd.Timestamp(text, tz="UTC")

    split, by_customer = uplift_split([month("2024-10-01")], 90)
    assert by_customer and split.test == split.valid == month("2024-10-01")
    five = [month(d) for d in ("2024-01-01", "2024-03-01", "2024-06-01", "2024-09-01", "2024-12-01")]
    split, by_customer = uplift_split(five, 90)  # sporadic campaigns: by time, windows apart
    assert not by_customer and (split.train, split.valid, split.test) == (five[:3], five[3], five[4])
    with pytest.raises(NotEnoughHistory):
        uplift_split(five[:4], 90)  # several months, too few for a split by time: said, not mixed

    decided = pd.DataFrame({"customer_id": [f"c{i % 700}" for i in range(1000)], "event_timestamp": month("2024-10-01")})
    parts = customer_parts(decided)
    ids = [set(p.customer_id) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # a customer's rows in one part
    assert sum(len(p) for p in parts.values()) == 1000 and 0.5 < len(parts["train"]) / 1000 < 0.7


def promotion_shop(root: Path, attributes: dict[str, np.ndarray], arm: np.ndarray, bought: np.ndarray,
                   rng: np.random.Generator, **assignment: bool) -> Workspace:
    """A shop's exports in the shape of a promotion test (Starbucks'), ingested: customers
    s0.. with the attributes, all consenting to e-mail, each in the campaign of 2024-03-01
    with its arm (the file's word: Yes -> bogo, Call -> call, No: the control group), a
    $9.50 purchase within 80 days by those who bought, nobody buying before."""
    n, day = len(arm), pd.Timestamp("2024-03-01", tz="UTC")
    ids = [f"s{i}" for i in range(n)]
    names = list(attributes)
    write(root / "people.csv", ",".join(["id", "joined", *names]) + "\n" + "".join(
        ",".join([c, "2024-01-01", *(f"{attributes[a][i]:.4f}" for a in names)]) + "\n" for i, c in enumerate(ids)))
    write(root / "optin.csv", "id,at,channel,granted\n" + "".join(f"{c},2024-01-01,email,yes\n" for c in ids))
    write(root / "promo.csv", "id,sent,Promotion\n" + "".join(f"{c},2024-03-01,{a}\n" for c, a in zip(ids, arm)))
    later = day + pd.to_timedelta(rng.integers(1, 80, n), unit="D")
    write(root / "sales.csv", "id,at,total\n" + "".join(
        f"{c},{t:%Y-%m-%d},9.5\n" for c, t, b in zip(ids, later, bought) if b) + "s0,2024-07-31,1\n")
    ws = Workspace(root / "shop")
    ingest_tables([
        ExportSource("customers", root / "people.csv", {"customer_id": "id", "signup_time": "joined"},
                     attributes=tuple(names)),
        ExportSource("consents", root / "optin.csv", {"customer_id": "id", "event_time": "at"}),
        ExportSource("campaigns", root / "promo.csv", {"customer_id": "id", "event_time": "sent", "action": "Promotion"},
                     values={"action": {"Yes": "bogo", "Call": "call"}}, control_value="No", **assignment),
        source("transactions", root / "sales.csv", customer_id="id", event_time="at", amount="total"),
    ], ws)
    return ws


def test_a_shops_randomised_campaign_to_customers_who_never_bought_is_learned(tmp_path):
    """The shape of a real promotion test (Starbucks'): customers with attributes, one
    randomised campaign, purchases after it, no purchase before. The planted truth: the
    promotion lifts the chance of a purchase within 90 days from 0.10 to 0.30 where V1 > 0,
    and not at all elsewhere; churn (no purchase) falls by 0.20 there."""
    from training.config import TrainConfig
    from training.train_uplift import fit_uplift

    rng = np.random.default_rng(7)
    n = 6000
    v1 = rng.normal(size=n)
    promo = rng.random(n) < 0.5
    bought = rng.random(n) < np.where(promo & (v1 > 0), 0.30, 0.10)
    ws = promotion_shop(tmp_path, {"V1": v1}, np.where(promo, "Yes", "No"), bought, rng, randomised=True)
    fitted = fit_uplift(ws, TrainConfig(), False, ws.read_manifest().end)
    assert sum(len(p) for p in fitted.parts.values()) == n  # nobody had bought: every customer it chose is learned
    test = fitted.parts["test"]
    churn = fitted.model.effects(test, ["bogo"])["churn"][:, 0]
    high = test.V1.to_numpy() > 0
    # Most of the planted effect, where it was planted: the learners shrink effects towards none
    # (-0.12 to -0.18 over eight draws of the customer split), and none elsewhere.
    assert -0.26 < churn[high].mean() < -0.10
    assert churn[~high].mean() == pytest.approx(0.0, abs=0.05)

    # `clm train` registers it, its record saying how the one campaign month was split.
    trained = invoke("train", "--models", "uplift", "-w", str(ws.root))
    assert trained.exit_code == 0, trained.output
    client = registry.connect(ws)
    version = registry.latest_version(client, "uplift")
    assert version is not None and int(version.version) == 1
    said = client.get_run(version.run_id).data.params["split"]
    assert said == "by customer within the campaign month(s) 2024-03-01: 60% train, 20% validation, 20% test"
    # Judged on the purchases it wins (nobody has revenue on record), it tells more than "no effect": shipped.
    assert registry.alias_version(client, "uplift", registry.CHAMPION) == "1", registry.gate_reason(client, "uplift", "1")

    # Decided for, bought or not: a first purchase is worth $20 to this shop, the promotion costs $2, so it
    # pays where it lifts the chance of a purchase by more than 0.10: V1 > 0 (planted 0.20), not elsewhere (0).
    # Learned effects are shrunk and spread (above): some with V1 > 0.3 fall under 0.10.
    ours = write(tmp_path / "ours.yaml", yaml.safe_dump({
        "contact_policy": {"max_contacts": 2, "window_days": 30},
        "value": {"purchase_value": 20.0},
        "actions": [{"id": "none", "description": "no contact", "channel": "none", "unit_cost": 0, "target": "none",
                     "cooldown_days": 0},
                    {"id": "bogo", "description": "buy one get one", "channel": "email", "unit_cost": 2.0,
                     "target": "retain", "cooldown_days": 30}]}))
    scored = invoke("score", "--catalogue", str(ours), "--exploration", "0", "--budget", "1e6", "--out",
                    str(tmp_path / "s.parquet"), "-w", str(ws.root))
    assert scored.exit_code == 0, scored.output
    batch = pd.read_parquet(tmp_path / "s.parquet").set_index("customer_id")
    never = batch.loc[[f"s{i}" for i in range(1, n) if not bought[i]]]  # no purchase before the batch's day
    assert len(batch) == n and batch.action.notna().all()  # every customer on record is decided for
    v1_of = pd.Series(v1, index=[f"s{i}" for i in range(n)])
    promoted = never.action == "bogo"
    assert promoted[v1_of[never.index] > 0.3].mean() > 0.7 and promoted[v1_of[never.index] < -0.3].mean() < 0.1
    # The API answers the same for one of them, out of the model population.
    from decisions.catalogue import load_catalogue
    from serving.runtime import Runtime

    first = next(c for c in never.index if v1_of[c] > 0.5 and never.loc[c, "action"] == "bogo")
    materialized = invoke("features", "materialize", "-w", str(ws.root))
    assert materialized.exit_code == 0, materialized.output
    runtime = Runtime(ws, catalogue=load_catalogue(ours))
    assert runtime.ready()  # the uplift champion alone decides: ready for traffic
    answer = runtime.answer_ids([first], None, 3)[0][0]
    assert answer["in_population"] is False and answer["actions"][0]["action"] == "bogo"
    assert answer["stage"] == "onboarding"  # registered, no purchase yet: not churned


def test_a_targeted_campaign_is_learned_from_estimated_propensities_and_an_action_without_overlap_is_refused(
        tmp_path):
    """A targeted campaign logged without its probabilities (--targeted). Planted: the
    promotion went to 75% of the customers with V2 > 0 and 25% of the others, who buy less
    anyway (10% against 25% within 90 days: the targeting is confounded with the outcome);
    it lifts the chance of a purchase by 0.20 where V1 > 0 and not at all elsewhere. The
    call went to every customer with V1 > 1 the promotion missed, and to nobody else."""
    from training.config import TrainConfig
    from training.train_uplift import fit_uplift

    rng = np.random.default_rng(8)
    n = 6000
    v1, v2 = rng.normal(size=n), rng.normal(size=n)
    promo = rng.random(n) < np.where(v2 > 0, 0.75, 0.25)
    arm = np.where(promo, "Yes", np.where(v1 > 1, "Call", "No"))
    bought = rng.random(n) < np.where(v2 > 0, 0.25, 0.10) + np.where(promo & (v1 > 0), 0.20, 0.0)
    ws = promotion_shop(tmp_path, {"V1": v1, "V2": v2}, arm, bought, rng, targeted=True)
    assert ws.read_table(Table.ACTIONS).propensity.isna().all()  # unknown until learned from

    fitted = fit_uplift(ws, TrainConfig(), False, ws.read_manifest().end)
    assert fitted.model.actions == ["bogo"]
    why = fitted.model.unsupported["call"]
    assert "almost without chance" in why and "--col propensity=COLUMN" in why
    assert sum(len(p) for p in fitted.parts.values()) == n - int((arm == "Call").sum())
    test = fitted.parts["test"]
    churn = fitted.model.effects(test, ["bogo"])["churn"][:, 0]
    high = test.V1.to_numpy() > 0
    assert churn[high].mean() == pytest.approx(-0.20, abs=0.06)
    assert churn[~high].mean() == pytest.approx(0.0, abs=0.06)
    # The estimated probabilities near the planted ones (the control's: 1 - the promotion's, 0 beyond V1 > 1).
    rows = pd.concat(fitted.parts.values())
    planted_promo = np.where(rows.V2 > 0, 0.75, 0.25)
    truth = np.where(rows.action == "bogo", planted_promo, 1 - planted_promo)
    assert np.abs(rows.propensity.to_numpy() - truth).mean() < 0.06

    trained = invoke("train", "--models", "uplift", "-w", str(ws.root))
    assert trained.exit_code == 0, trained.output
    assert trained.mentions("never recommended, for call (its campaign chose its customers almost without chance")


def test_a_targeted_campaign_is_refused_beside_given_or_randomised_assignment(tmp_path):
    log = write(tmp_path / "promo.csv", "id,sent,promo,p\na,2024-01-02,Yes,0.5\nb,2024-01-02,No,0.5\n")
    columns = {"customer_id": "id", "event_time": "sent", "action": "promo"}
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(ClmError, match="contradict each other"):
        ingest_tables([ExportSource("campaigns", log, columns, control_value="No", randomised=True, targeted=True)], ws)
    with pytest.raises(ClmError, match="column 'p'.*--targeted says to estimate them.*leave out --targeted"):
        ingest_tables([ExportSource("campaigns", log, {**columns, "propensity": "p"}, control_value="No",
                                    targeted=True)], ws)
    with pytest.raises(ClmError, match="belong to campaigns, not to transactions"):
        ingest_tables([ExportSource("transactions", log, {"customer_id": "id", "event_time": "sent"}, targeted=True)],
                      ws)
    result = invoke("ingest", "campaigns", str(log), "--customer-col", "id", "--date-col", "sent", "--col",
                    "action=promo", "--control-value", "No", "--targeted", "-w", str(ws.root))
    assert result.exit_code == 0, result.output
    assert result.mentions("targeted: each customer's probability of its arm is estimated")
    assert ws.read_table(Table.ACTIONS).propensity.isna().all()


def test_a_table_ending_long_before_the_others_is_said(tmp_path):
    ws = Workspace(tmp_path / "ws")
    sales = write(tmp_path / "t.csv", "id,at,total\na,2024-01-05,5\nb,2024-03-01,7\n")
    later = write(tmp_path / "c.csv", "id,at,channel,granted\na,2024-06-30,email,yes\n")
    summaries = ingest_tables([source("transactions", sales, customer_id="id", event_time="at", amount="total"),
                               source("consents", later, customer_id="id", event_time="at")], ws)
    # The consents export runs to 30 June, the transactions to 1 March: 121 days without a purchase would read as churn.
    assert any("ends early: its last row is on 2024-03-01, 121 days before the data's end (2024-06-30" in n
               for n in summaries[0].warnings), summaries[0].warnings
    assert not summaries[1].warnings
    fresh = write(tmp_path / "t2.csv", "id,at,total\na,2024-06-20,5\n")
    again = ingest_tables([source("transactions", fresh, customer_id="id", event_time="at", amount="total")], ws,
                          replace=True)
    assert not again[0].warnings


def test_the_day_the_exports_were_taken_is_the_datas_end(tmp_path):
    ws = tmp_path / "ws"
    sales = write(tmp_path / "t.csv", "id,at,total\na,2024-01-05,5\nb,2024-03-01,7\n")
    args = ["--customer-col", "id", "--date-col", "at", "--amount-col", "total", "-w", str(ws)]
    result = invoke("ingest", "transactions", str(sales), "--until", "2024-03-31", *args)
    assert result.exit_code == 0, result.output
    assert Workspace(ws).read_manifest().end == pd.Timestamp("2024-04-01", tz="UTC")  # March's last day included
    people = write(tmp_path / "c.csv", "id,since\na,2024-01-01\nb,2024-01-01\n")
    assert invoke("ingest", "customers", str(people), "--customer-col", "id", "--date-col", "since",
                  "-w", str(ws)).exit_code == 0
    assert Workspace(ws).read_manifest().end == pd.Timestamp("2024-04-01", tz="UTC")  # kept by a later call
    before = tree_digest(ws)
    early = invoke("ingest", "transactions", str(sales), "--until", "2024-02-15", "--replace", *args)
    assert early.exit_code == 2 and early.mentions("The exports run to 2024-03-01, after the day they are said to "
                                                   "cover until (2024-02-15, --until)")
    assert tree_digest(ws) == before

    # A mapping file says it once for every table; a day that is none is named, as on the command line.
    mapping = write(tmp_path / "crm.yaml", "until: 2024-05-31\ntables:\n  transactions:\n    file: t.csv\n"
                                           "    columns: {customer_id: id, event_time: at, amount: total}\n")
    assert invoke("ingest", "--mapping", str(mapping), "-w", str(tmp_path / "m")).exit_code == 0
    assert Workspace(tmp_path / "m").read_manifest().end == pd.Timestamp("2024-06-01", tz="UTC")
    for day, said in [("2024-02-30", "until '2024-02-30' is not a day of the calendar"),
                      ("20240630", "until '20240630' is not a day written YYYY-MM-DD")]:
        wrong = write(tmp_path / "w.yaml", f"until: {day}\ntables:\n  transactions: {{file: t.csv}}\n")
        refused = invoke("ingest", "--mapping", str(wrong), "-w", str(tmp_path / "w"))
        assert refused.exit_code == 2 and refused.mentions(f"Mapping file {wrong}: {said}"), refused.output
        assert not (tmp_path / "w" / "raw").exists()
    early = write(tmp_path / "e.yaml", mapping.read_text().replace("2024-05-31", "2024-02-15"))
    refused = invoke("ingest", "--mapping", str(early), "-w", str(tmp_path / "e"))
    assert refused.exit_code == 2 and refused.mentions(f"cover until (2024-02-15, until: in {early})")


def test_changing_attributes_are_features_as_of_each_moment(tmp_path):
    from features.build import build_features
    from features.snapshots import read_snapshot

    ws = attribute_history_shop(tmp_path)  # tests/handmade.py
    history = ws.read_table(Table.ATTRIBUTE_HISTORY)
    assert history.Score.dtype == float and history.Tier.dtype == object  # numbers where every value is one
    cutoffs = [pd.Timestamp(d, tz="UTC") for d in ("2024-02-01", "2024-03-01", "2024-04-01")]
    build_features(ws, cutoffs)
    seen = {f"{c:%m}": read_snapshot(ws, "attributes", c).set_index("customer_id") for c in cutoffs}
    assert [seen[m].loc["a", "Tier"] for m in ("02", "03", "04")] == ["silver", "silver", "gold"]
    assert seen["02"].Score.isna()["a"] and seen["03"].Score.isna()["a"] and seen["04"].loc["a", "Score"] == 7.0
    assert seen["02"].Score.isna()["c"] and seen["03"].loc["c", "Score"] == 1.5  # 12:00 on the 1st: after the cutoff
    assert seen["04"].Tier.isna()["c"]  # its row gives a score, no tier
    assert all(seen[m].Tier.isna()["b"] and seen[m].Score.isna()["b"] for m in ("02", "03", "04"))  # no row
    assert [seen[m].loc["b", "V1"] for m in ("02", "03", "04")] == [1.5, 1.5, 1.5]  # static beside them

    with pytest.raises(ClmError, match="'tier' are both on customers \\(static\\) and in attribute_history"):
        write(tmp_path / "people2.csv", "Id,Joined,tier\na,2024-01-02,x\n")
        ingest_tables([ExportSource("customers", tmp_path / "people2.csv", {"customer_id": "Id",
                                                                             "signup_time": "Joined"},
                                    attributes=("tier",))], ws, replace=True)
    twice = write(tmp_path / "twice.csv", "Id;Changed;tier;Tier\na;2024-01-10 08:00;x;y\n")
    with pytest.raises(ClmError, match="'tier' named twice \\(letter case aside\\)"):
        ingest_tables([ExportSource("attribute_history", twice, {"customer_id": "Id", "event_time": "Changed"},
                                    attributes=("tier", "Tier"))], ws, replace=True)
    with pytest.raises(ClmError, match="name the attribute columns it holds with --attributes"):
        ingest_tables([ExportSource("attribute_history", tmp_path / "tiers.csv", {"customer_id": "Id",
                                                                                 "event_time": "Changed"})], ws,
                      replace=True)
