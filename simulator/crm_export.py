"""A simulated business's tables written as a CRM would export them: its own column names,
separators, date formats, decimal commas, words for values, compression, and a mapping
file (`clm ingest --mapping`) that says how to read them.

What the simulator knows and a CRM does not (the ground truth) is not exported. For tests
and benchmarks of the real-data path: the data are the simulator's, so an ingest of these
files must give back the simulated workspace's tables, value for value.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from clm.domain import NO_ACTION, Table
from clm.workspace import Workspace

CONTROL_WORD = "holdout"
LOCAL_ZONE = "Europe/Berlin"  # times written with this zone's offset (summer and winter)


def _words(values: pd.Series, words: dict[str, str]) -> pd.Series:
    return values.map(lambda v: words.get(v, v))


def export_crm(simulated: Workspace, folder: Path) -> Path:
    """Write every table the business itself would have into `folder`; returns the mapping file."""
    folder.mkdir(parents=True, exist_ok=True)
    tables: dict[str, dict[str, object]] = {}

    c = simulated.read_table(Table.CUSTOMERS)
    pd.DataFrame({
        "Kunde": c.customer_id, "Angelegt": c.signup_time.dt.strftime("%d.%m.%Y %H:%M:%S"), "Stufe": c.segment,
        "Region": c.region, "Kanal": c.acquisition_channel,
        "Newsletter": c.consent_email.map({True: "ja", False: "nein"}), "Telefon": c.consent_phone.astype(int),
    }).to_csv(folder / "kunden.csv", sep=";", index=False, encoding="latin-1")
    tables["customers"] = {
        "file": "kunden.csv", "sep": ";", "encoding": "latin-1", "date_format": "%d.%m.%Y %H:%M:%S",
        "columns": {"customer_id": "Kunde", "signup_time": "Angelegt", "segment": "Stufe", "region": "Region",
                    "acquisition_channel": "Kanal", "consent_email": "Newsletter", "consent_phone": "Telefon"},
        "values": {"consent_email": {"ja": "yes", "nein": "no"}},
    }

    s = simulated.read_table(Table.SUBSCRIPTIONS)
    events = {"start": "Started", "upgrade": "Upgraded", "downgrade": "Downgraded", "cancel": "Cancelled"}
    pd.DataFrame({
        "Account": s.customer_id, "Effective": s.event_time.dt.tz_convert(LOCAL_ZONE).map(lambda t: t.isoformat()),
        "Status": _words(s.event, events), "Plan": s.plan,
        "Monthly fee": s.price.map(lambda v: repr(float(v)).replace(".", ",")),
    }).to_csv(folder / "plans.csv", sep=";", index=False)
    tables["subscriptions"] = {
        "file": "plans.csv", "decimal": ",",
        "columns": {"customer_id": "Account", "event_time": "Effective", "event": "Status", "plan": "Plan",
                    "price": "Monthly fee"},
        "values": {"event": {v: k for k, v in events.items()}},
    }

    t = simulated.read_table(Table.TRANSACTIONS)
    pd.DataFrame({
        "cust": t.customer_id, "paid_at": t.event_time.dt.strftime("%Y-%m-%d %H:%M:%S"), "type": t.kind,
        "total": t.amount, "rebate": t.discount, "result": _words(t.status, {"paid": "OK", "failed": "DECLINED"}),
        "plan": t.plan,
    }).to_csv(folder / "payments.tsv.gz", sep="\t", index=False)
    tables["transactions"] = {
        "file": "payments.tsv.gz", "sep": "tab",
        "columns": {"customer_id": "cust", "event_time": "paid_at", "kind": "type", "amount": "total",
                    "discount": "rebate", "status": "result"},
        "values": {"status": {"OK": "paid", "DECLINED": "failed"}},
    }

    u = simulated.read_table(Table.USAGE)
    u.rename(columns={"customer_id": "user", "event_time": "day", "sessions": "logins", "features_used": "features",
                      "active_minutes": "minutes"}).to_parquet(folder / "product_usage.parquet", index=False)
    tables["usage"] = {
        "file": "product_usage.parquet",
        "columns": {"customer_id": "user", "event_time": "day", "sessions": "logins", "features_used": "features",
                    "active_minutes": "minutes"},
    }

    k = simulated.read_table(Table.TICKETS)
    pd.DataFrame({
        "requester": k.customer_id, "opened": k.event_time.dt.strftime("%m/%d/%Y %H:%M:%S"),
        "priority": k.severity.str.capitalize(), "solved": k.resolved_time.dt.strftime("%m/%d/%Y %H:%M:%S"),
        "rating": k.csat,
    }).to_csv(folder / "tickets.csv", index=False)
    tables["tickets"] = {
        "file": "tickets.csv", "date_format": "%m/%d/%Y %H:%M:%S",
        "columns": {"customer_id": "requester", "event_time": "opened", "severity": "priority",
                    "resolved_time": "solved", "csat": "rating"},
    }

    n = simulated.read_table(Table.NPS)
    n.rename(columns={"customer_id": "respondent", "event_time": "answered", "score": "nps"}).to_csv(
        folder / "survey.csv", index=False)
    tables["nps"] = {"file": "survey.csv",
                     "columns": {"customer_id": "respondent", "event_time": "answered", "score": "nps"}}

    r = simulated.read_table(Table.REFERRALS)
    pd.DataFrame({"referrer": r.customer_id, "at": r.event_time, "won": r.converted.map({True: "Y", False: "N"})}
                 ).to_csv(folder / "referrals.csv", index=False)
    tables["referrals"] = {"file": "referrals.csv",
                           "columns": {"customer_id": "referrer", "event_time": "at", "converted": "won"}}

    g = simulated.read_table(Table.CONSENTS)
    pd.DataFrame({"contact": g.customer_id, "changed": g.event_time, "medium": g.channel.str.upper(),
                  "opt_in": g.granted}).to_csv(folder / "consents.csv", index=False)
    tables["consents"] = {"file": "consents.csv",
                          "columns": {"customer_id": "contact", "event_time": "changed", "channel": "medium",
                                      "granted": "opt_in"}}

    a = simulated.read_table(Table.ACTIONS)
    pd.DataFrame({
        "member": a.customer_id, "sent": a.event_time, "treatment": _words(a.action, {NO_ACTION: CONTROL_WORD}),
        "wave": a.event_time.dt.strftime("monthly-%Y-%m"), "p": a.propensity.map(repr), "via": a.channel,
    }).to_csv(folder / "campaign_log.csv", index=False)
    tables["campaigns"] = {
        "file": "campaign_log.csv", "control_value": CONTROL_WORD,
        "columns": {"customer_id": "member", "event_time": "sent", "action": "treatment", "campaign_id": "wave",
                    "propensity": "p", "channel": "via"},
    }
    mapping = folder / "crm.yaml"
    mapping.write_text(yaml.safe_dump({"tables": tables}, sort_keys=False, allow_unicode=True))
    return mapping
