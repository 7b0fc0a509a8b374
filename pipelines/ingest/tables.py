"""What each table of a CRM export holds, and how one export file becomes that raw table.

Every table is described once, as fields (`FieldSpec`): a field's column in the file is
the one the user names (`--customer-col`, `--col plan=Tier`, a mapping file's `columns`),
else a column of the field's own name. A field is an id, a time, an amount of money, a
number within bounds, a text, one of a few values (`--map event:Cancelled=cancel` maps a
file's own words onto them) or a yes/no flag. One reader (`build_table`) reads every
table: the same file formats, the same date and number rules, the same report of rows
that cannot be used (file, column, examples) for all of them.

Campaigns become the raw `actions` table, the logged decisions the uplift models learn
from: the control group's rows (`--control-value`) are the action `none`, and each row
carries the probability with which it was assigned: a column of the file; for a
randomised test (`--randomised`), each arm's share of its campaign; for a targeted
campaign whose probabilities are unknown (`--targeted`), none: training estimates them
from the customers' features and checks their overlap (`training.propensity`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from clm.contracts import CONSENT_CHANNELS
from clm.domain import (
    ACTION_ID_PATTERN,
    CHANNELS,
    MAX_AMOUNT,
    NO_ACTION,
    SUBSCRIPTION_EVENTS,
    TICKET_SEVERITIES,
    TRANSACTION_KINDS,
    TRANSACTION_STATUSES,
    Table,
)
from clm.errors import ClmError
from features.groups import ATTRIBUTE_NAME, TAKEN_NAMES
from pipelines.ingest.reading import (
    ReadOptions,
    bad_row_report,
    parse_dates,
    parse_ids,
    parse_numbers,
    read_export,
    refuse_repeated_columns,
)

Kind = Literal["id", "time", "money", "number", "text", "choice", "flag"]
TRUE_WORDS = ("true", "t", "yes", "y", "1", "granted", "opt-in", "opted in")
FALSE_WORDS = ("false", "f", "no", "n", "0", "withdrawn", "opt-out", "opted out")


@dataclass(frozen=True)
class FieldSpec:
    """One field of a table: its raw column name, what it holds, and whether an export
    must have it (a field left out takes `default`, or is computed: see the table)."""

    name: str
    kind: Kind
    required: bool
    help: str
    values: tuple[str, ...] = ()  # a choice's values
    low: float | None = None  # a number's bounds
    high: float | None = None
    default: object = None


@dataclass(frozen=True)
class TableSpec:
    """A table a business can bring: its fields, and the raw table it becomes."""

    name: str
    raw: Table
    description: str
    fields: tuple[FieldSpec, ...]

    @property
    def time_field(self) -> str:
        return next(f.name for f in self.fields if f.kind == "time")

    def spec(self, name: str) -> FieldSpec:
        found = [f for f in self.fields if f.name == name]
        if not found:
            raise ClmError(f"Table '{self.name}' has no field '{name}'; its fields are: "
                           f"{', '.join(f.name for f in self.fields)}.")
        return found[0]


def _customer() -> FieldSpec:
    return FieldSpec("customer_id", "id", True, "the customer's id, as in every other table")


def _when(what: str) -> FieldSpec:
    return FieldSpec("event_time", "time", True, what)


TABLES: dict[str, TableSpec] = {t.name: t for t in (
    TableSpec("customers", Table.CUSTOMERS, "one row per customer: who they are and what they allow", (
        _customer(),
        FieldSpec("signup_time", "time", True, "when the customer signed up (became a customer)"),
        FieldSpec("acquisition_channel", "text", False, "how the customer was acquired"),
        FieldSpec("segment", "text", False, "the business's segment of the customer"),
        FieldSpec("region", "text", False, "sales region"),
        FieldSpec("consent_email", "flag", False, "may be e-mailed (yes/no); without it, and without a consents "
                  "table, no", default=False),
        FieldSpec("consent_phone", "flag", False, "may be called (yes/no); as consent_email", default=False),
    )),
    TableSpec("subscriptions", Table.SUBSCRIPTIONS, "plan changes: one row per start, upgrade, downgrade, cancel", (
        _customer(), _when("when the change took effect"),
        FieldSpec("event", "choice", True, "what happened", values=SUBSCRIPTION_EVENTS),
        FieldSpec("plan", "text", True, "the plan after the change (the plan left, for a cancel)"),
        FieldSpec("price", "money", True, "that plan's monthly price"),
    )),
    TableSpec("transactions", Table.TRANSACTIONS, "one row per payment or purchase", (
        _customer(), _when("when it was paid"),
        FieldSpec("amount", "money", True, "the amount paid"),
        FieldSpec("kind", "choice", False, "what was paid for", values=TRANSACTION_KINDS, default="purchase"),
        FieldSpec("status", "choice", False, "paid or failed", values=TRANSACTION_STATUSES, default="paid"),
        FieldSpec("discount", "money", False, "discount granted on it", default=0.0),
        FieldSpec("plan", "text", False, "the plan paid for (subscriptions)"),
    )),
    TableSpec("usage", Table.USAGE, "product use: one row per session, or per customer and day (summed by day)", (
        _customer(), _when("when it happened (its UTC day counts)"),
        FieldSpec("sessions", "number", False, "sessions; without it, each row is one session", low=0, high=1e6),
        FieldSpec("features_used", "number", False, "distinct features used", low=0, high=1e6, default=0),
        FieldSpec("active_minutes", "number", False, "minutes of active use", low=0, high=1e6, default=0.0),
    )),
    TableSpec("tickets", Table.TICKETS, "support tickets: one row per ticket", (
        _customer(), _when("when the ticket was opened"),
        FieldSpec("severity", "choice", False, "how serious; without it, every ticket is medium",
                  values=TICKET_SEVERITIES, default="medium"),
        FieldSpec("resolved_time", "time", False, "when it was resolved (empty: still open)"),
        FieldSpec("csat", "number", False, "satisfaction with the resolution, 1 to 5", low=1, high=5),
    )),
    TableSpec("nps", Table.NPS, "NPS survey answers: one row per answer", (
        _customer(), _when("when the customer answered"),
        FieldSpec("score", "number", True, "the score, 0 to 10", low=0, high=10),
    )),
    TableSpec("referrals", Table.REFERRALS, "friends the customer referred: one row per referral", (
        _customer(), _when("when the friend was referred"),
        FieldSpec("converted", "flag", True, "whether the friend became a customer (yes/no)"),
    )),
    TableSpec("consents", Table.CONSENTS, "marketing consents given and withdrawn, one row per change", (
        _customer(), _when("when it was given or withdrawn"),
        FieldSpec("channel", "choice", True, "the channel it is for", values=CONSENT_CHANNELS),
        FieldSpec("granted", "flag", True, "yes: given; no: withdrawn"),
    )),
    TableSpec("campaigns", Table.ACTIONS, "campaign history: one row per customer a campaign chose, its control group "
              "included", (
        _customer(), _when("when the customer was contacted (or held out)"),
        FieldSpec("action", "text", True, "the action sent, as the catalogue names it; --control-value marks the "
                  "control group"),
        FieldSpec("campaign_id", "text", False, "the campaign; without it, one campaign per day"),
        FieldSpec("propensity", "number", False, "the probability the customer had of getting this arm "
                  "(unknown: --randomised reads the arms' shares, --targeted has them estimated)", low=0, high=1),
        FieldSpec("channel", "choice", False, "the channel it went out on", values=CHANNELS),
    )),
    TableSpec("attribute_history", Table.ATTRIBUTE_HISTORY, "the business's own attributes that change (a tier, a "
              "score): one row per customer and change, each --attributes column holding its value from then on", (
        _customer(), _when("when the values took effect"),
    )),
)}
# The tables whose own further columns (--attributes) become features: static on customers,
# point in time on attribute_history.
ATTRIBUTE_TABLES = ("customers", "attribute_history")
INGEST_TABLES = tuple(TABLES)


@dataclass(frozen=True)
class ExportSource:
    """One export file of one table, and how to read it.

    columns: field -> the file's column (a field left out is read from a column of its own
    name, if the file has one); values: field -> {the file's word: clm's value};
    attributes: the business's own columns kept as they are, for the models (customers:
    static; attribute_history: from each row's time on);
    control_value / randomised / targeted: campaigns (see the module's docstring)."""

    table: str
    path: Path
    columns: dict[str, str] = field(default_factory=dict)
    options: ReadOptions = ReadOptions()
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    attributes: tuple[str, ...] = ()
    control_value: str | None = None
    randomised: bool = False
    targeted: bool = False

    @property
    def spec(self) -> TableSpec:
        if self.table not in TABLES:
            raise ClmError(f"'{self.table}' is not a table clm ingests; choose one of: {', '.join(INGEST_TABLES)}.")
        return TABLES[self.table]


@dataclass
class IngestSummary:
    rows_read: int
    rows_written: int
    customers: int
    first_event: pd.Timestamp
    last_event: pd.Timestamp
    separator: str | None
    skipped: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # rows identical in every column read to an earlier one
    duplicates_dropped: bool = False
    table: str = "transactions"
    columns: dict[str, str] = field(default_factory=dict)  # field -> the file's column read
    notes: list[str] = field(default_factory=list)  # what was assumed (defaults, derived values)
    warnings: list[str] = field(default_factory=list)  # what may mislead later steps (`business.ended_early`)


def _check_source(src: ExportSource) -> None:
    """Mistakes in the mapping itself, named before the file is read."""
    spec = src.spec
    for name in (*src.columns, *src.values):
        spec.spec(name)
    for name, words in src.values.items():
        f = spec.spec(name)
        if f.kind == "choice":
            wrong = sorted({v for v in words.values() if v not in f.values})
            if wrong:
                raise ClmError(f"{src.table}.{name}: cannot map onto {', '.join(map(repr, wrong))}; its values are "
                               f"{', '.join(f.values)}.")
    if src.table not in ATTRIBUTE_TABLES and src.attributes:
        raise ClmError(f"Attributes belong to the customers table (static) or to attribute_history (changing), not "
                       f"to {src.table}.")
    if src.table == "attribute_history" and not src.attributes:
        raise ClmError(f"{src.path} (attribute_history): name the attribute columns it holds with --attributes (e.g. "
                       "--attributes tier,score; a mapping file's `attributes: [tier, score]`).")
    twice = sorted({a.lower() for a in src.attributes if [b.lower() for b in src.attributes].count(a.lower()) > 1})
    if twice:
        raise ClmError(f"Attribute(s) {', '.join(map(repr, twice))} named twice (letter case aside): SQL and Spark "
                       "read names without case, so they would be one column; keep one, or rename a column in the file.")
    odd = [a for a in src.attributes if not re.fullmatch(ATTRIBUTE_NAME, a)]
    if odd:
        raise ClmError(f"Attribute column(s) {', '.join(map(repr, odd))} cannot name a feature: use letters, digits "
                       "and '_' (not first a digit), at most 63; rename the column in the file.")
    taken = {name.lower() for name in TAKEN_NAMES}
    clash = sorted(a for a in src.attributes if a.lower() in taken)
    if clash:
        raise ClmError(f"Attribute column(s) {', '.join(map(repr, clash))} share the name of a feature, a label or "
                       "a score clm computes itself; rename the column in the file (e.g. to 'crm_"
                       + clash[0] + "').")
    if src.table != "campaigns" and (src.control_value is not None or src.randomised or src.targeted):
        raise ClmError(f"--control-value, --randomised and --targeted belong to campaigns, not to {src.table}.")
    if src.randomised and src.targeted:
        raise ClmError(f"{src.path} (campaigns): randomised (assigned at random: --randomised, or `randomised: true` in "
                       "a mapping file) and targeted (chosen by a rule: --targeted, `targeted: true`) contradict each "
                       "other: choose the one that says how the campaign chose its customers.")


def _columns_read(src: ExportSource, columns: list[str]) -> dict[str, str]:
    """field -> the file's column, for every field the file has; a required field the file
    lacks is named with the options that name its column."""
    spec, found, missing = src.spec, {}, []
    for f in spec.fields:
        column = src.columns.get(f.name, f.name)
        if column in columns:
            found[f.name] = column
        elif f.name in src.columns or f.required:
            missing.append((f, column))
    absent = [a for a in src.attributes if a not in columns]
    if missing or absent:
        named = [f"column {column!r} (field {f.name}: {f.help})" for f, column in missing]
        named += [f"attribute column {a!r}" for a in absent]
        raise ClmError(
            f"{src.path} ({src.table}): {'; '.join(named)} not found. Its columns are: "
            f"{', '.join(repr(c) for c in columns)}. Name a field's column with --col FIELD=COLUMN (the customer and "
            f"the date also with --customer-col and --date-col; in a mapping file, under `columns`); `clm ingest "
            f"{src.table} --fields` lists the table's fields."
        )
    return found


def _flags(text: pd.Series) -> pd.Series:
    """yes/no words as True/False; anything else None (a bad row, or empty)."""
    lowered = text.str.strip().str.lower()
    flags = pd.Series([None] * len(text), index=text.index, dtype=object)
    flags[lowered.isin(TRUE_WORDS).fillna(False).to_numpy(dtype=bool)] = True
    flags[lowered.isin(FALSE_WORDS).fillna(False).to_numpy(dtype=bool)] = False
    return flags


@dataclass
class _Parsed:
    values: dict[str, pd.Series] = field(default_factory=dict)
    problems: dict[str, pd.Series] = field(default_factory=dict)


def _parse_field(f: FieldSpec, raw: pd.Series, src: ExportSource, out: _Parsed, now: pd.Timestamp) -> None:
    """One field's values from the file's column, and the rows it cannot use."""
    column, options = raw.name, src.options
    where = f"in column '{column}'"  # the report's heading names the file and the table
    text = raw if not pd.api.types.is_object_dtype(raw) and not pd.api.types.is_string_dtype(raw) \
        else raw.astype("string").str.strip()
    empty = raw.isna() | (raw.astype("string").str.strip() == "").fillna(True)
    words = src.values.get(f.name, {})
    if words and (pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)):
        text = text.replace(words)
    what = "customer id" if f.name == "customer_id" else f.name.replace("_", " ")
    if f.required:
        out.problems[f"empty {what} {where}"] = raw[empty]
    if f.kind == "id":
        ids = parse_ids(raw)
        control = ids.str.contains(r"[\x00-\x1f\x7f]", regex=True).fillna(False).astype(bool)
        out.problems[f"{what} with a line break or another control character {where}"] = raw[control]
        out.values[f.name] = ids
    elif f.kind == "time":
        when = parse_dates(raw, options.date_format, str(column))
        hint = f" with format '{options.date_format}'" if options.date_format else ""
        out.problems[f"date that does not parse {where}{hint}"] = raw[when.isna() & ~empty]
        out.problems[f"date after today ({now:%Y-%m-%d}) {where}"] = raw[when > now]
        out.problems[f"date before {options.earliest:%Y-%m-%d} {where} (a placeholder for a missing date, such as "
                     "1900-01-01 or 1970-01-01? If the data goes back that far, pass --earliest-date)"] = \
            raw[when < options.earliest]
        out.values[f.name] = when
    elif f.kind in ("money", "number"):
        number = parse_numbers(raw, options.decimal)
        mark = f" (decimal mark '{options.decimal}')"
        out.problems[f"{'amount' if f.kind == 'money' else 'value'} that is not a number {where}{mark}"] = \
            raw[number.isna() & ~empty]
        if f.kind == "money":
            out.problems[f"negative amount {where}"] = raw[number < 0]
            out.problems[f"amount that is infinite or implausibly large (>= {MAX_AMOUNT:.0e}) {where}"] = \
                raw[number.abs() >= MAX_AMOUNT]
        else:
            out.problems[f"value outside [{f.low:g}, {f.high:g}] {where}"] = \
                raw[(number < (f.low or 0.0)) | (number > (f.high if f.high is not None else np.inf))]
        out.values[f.name] = number
    elif f.kind == "choice":
        chosen = text.astype("string").str.lower()
        out.problems[f"value not one of {', '.join(f.values)} {where} (map the file's own words with --map "
                     f"{f.name}:WORD=VALUE)"] = raw[~chosen.isin(f.values).fillna(False).astype(bool) & ~empty]
        out.values[f.name] = chosen.where(~empty)
    elif f.kind == "flag":
        flags = _flags(text.astype("string"))
        out.problems[f"not a yes/no value {where} (yes, no, true, false, 1, 0; map the file's own words with --map "
                     f"{f.name}:WORD=yes)"] = raw[flags.isna() & ~empty]
        out.values[f.name] = flags
    else:
        out.values[f.name] = text.astype("string").where(~empty)


def build_table(src: ExportSource) -> tuple[pd.DataFrame, IngestSummary]:
    """Read, check and convert one export into its raw table; rows that cannot be used stop
    it with a report naming each problem (or are left out with skip_bad_rows)."""
    _check_source(src)
    spec, options = src.spec, src.options
    raw, sep, header = read_export(src.path, options)
    raw.columns = [str(c) for c in raw.columns]
    columns = _columns_read(src, list(raw.columns))
    taken = sorted({a for a in src.attributes if a in columns.values() or a in {f.name for f in spec.fields}})
    if taken:
        raise ClmError(f"{src.path} ({src.table}): attribute(s) {', '.join(map(repr, taken))} are already read as "
                       f"fields of {src.table} ({', '.join(f'{f} <- {c!r}' for f, c in columns.items())}) or share a "
                       "field's name: attributes are the business's further columns (rename the column in the file "
                       "if it must be both).")
    refuse_repeated_columns(src.path, header, [*columns.values(), *src.attributes])
    if raw.empty:
        raise ClmError(f"{src.path} has a header and no rows: nothing to ingest.")
    raw = raw.reset_index(drop=True)
    parsed, now = _Parsed(), pd.Timestamp.now(tz="UTC")
    for name, column in columns.items():
        _parse_field(spec.spec(name), raw[column].rename(column), src, parsed, now)
    if src.table == "campaigns":
        _check_actions(raw, columns, parsed, src)
    problems = {k: v for k, v in parsed.problems.items() if len(v)}
    bad = np.zeros(len(raw), dtype=bool)
    for rows in problems.values():
        bad[rows.index] = True
    if problems and not options.skip_bad_rows:
        raise ClmError(bad_row_report(problems, src.path, src.table))
    if bad.all():
        raise ClmError(f"{src.path}: no usable rows (all {len(raw)} rows had problems).")
    good = ~bad
    frame = pd.DataFrame({name: values[good].to_numpy() for name, values in parsed.values.items()})
    for a in src.attributes:
        frame[a] = raw[a][good].to_numpy()
    key = [*columns, *src.attributes]
    duplicated = frame.duplicated(key).to_numpy()
    if options.drop_duplicates:
        frame = frame[~duplicated].reset_index(drop=True)
    notes: list[str] = []
    table = BUILDERS[src.table](frame, src, notes)
    when = spec.time_field
    summary = IngestSummary(
        rows_read=len(raw), rows_written=len(table), customers=int(table["customer_id"].nunique()),
        first_event=table[when].min(), last_event=table[when].max(), separator=sep,
        skipped={k: len(v) for k, v in problems.items()}, duplicates=int(duplicated.sum()),
        duplicates_dropped=options.drop_duplicates, table=src.table, columns=columns, notes=notes,
    )
    return table, summary


def _check_actions(raw: pd.DataFrame, columns: dict[str, str], parsed: _Parsed, src: ExportSource) -> None:
    """A campaign's actions must be ids the catalogue can name; the control value is `none`."""
    action = parsed.values["action"]
    if src.control_value is not None:
        action = action.mask(action == src.control_value, NO_ACTION)
        parsed.values["action"] = action
    bad = ~action.str.fullmatch(ACTION_ID_PATTERN).fillna(True).astype(bool)
    column = columns["action"]
    parsed.problems[f"action that is not an id (letters, digits, '_' and '-') in column '{column}' "
                    f": map it with --map action:WORD=id"] = raw[column][bad]


# ------------------------------------------------------------------ each table's raw form
def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")


def _text(frame: pd.DataFrame, name: str, default: object = None) -> pd.Series:
    if name in frame:
        return frame[name].astype(object).where(frame[name].notna(), default)
    return pd.Series([default] * len(frame), index=frame.index, dtype=object)


def _number(frame: pd.DataFrame, spec: TableSpec, name: str) -> pd.Series:
    default = spec.spec(name).default
    values = frame[name] if name in frame else pd.Series(np.nan, index=frame.index)
    return values.astype(float).fillna(np.nan if default is None else float(default))  # type: ignore[arg-type]


def _sorted(frame: pd.DataFrame, time: str = "event_time") -> pd.DataFrame:
    return frame.sort_values([time, "customer_id"], kind="stable").reset_index(drop=True)


def _customers(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    out = pd.DataFrame({"customer_id": frame["customer_id"].astype(str), "signup_time": _utc(frame["signup_time"])})
    for name in ("acquisition_channel", "segment", "region"):
        out[name] = _text(frame, name)
    for name in ("consent_email", "consent_phone"):
        out[name] = _text(frame, name, False).astype(bool)
    if "consent_email" not in frame and "consent_phone" not in frame:
        notes.append("no consent columns: nobody may be e-mailed or called unless a consents table says so")
    for a in src.attributes:
        out[a] = _attribute(frame[a], src.options.decimal)
    return _sorted(out, "signup_time")


def _attribute_history(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    out = pd.DataFrame({"customer_id": frame["customer_id"].astype(str), "event_time": _utc(frame["event_time"])})
    for a in src.attributes:
        out[a] = _attribute(frame[a], src.options.decimal)
    notes.append("each attribute's value holds from its row's time until the customer's next row: a feature at a "
                 "moment reads the latest row before it")
    return _sorted(out)


def _attribute(values: pd.Series, decimal: str) -> pd.Series:
    """An attribute as numbers where every value given reads as one, else as text (a
    category); empty values are missing either way."""
    text = values.astype("string").str.strip()
    empty = text.isna() | (text == "")
    numbers = parse_numbers(values, decimal)
    if bool((numbers.notna() | empty).all()):
        return numbers.where(~empty.to_numpy())
    return text.astype(object).where(~empty, None)


def _subscriptions(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    return _sorted(pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str), "event_time": _utc(frame["event_time"]),
        "event": frame["event"].astype(str), "plan": frame["plan"].astype(str), "price": frame["price"].astype(float),
    }))


def _transactions(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    spec = src.spec
    out = _sorted(pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str),
        "event_time": _utc(frame["event_time"]),
        "kind": _text(frame, "kind", "purchase").astype(str),
        "amount": frame["amount"].astype(float).round(2),
        "discount": _number(frame, spec, "discount"),
        "status": _text(frame, "status", "paid").astype(str),
        "plan": _text(frame, "plan"),
    }))
    out.insert(0, "transaction_id", np.arange(len(out), dtype=np.int64))
    return out


def _usage(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    spec = src.spec
    if "sessions" not in frame:
        notes.append("no sessions column: each row is one session")
    day = _utc(frame["event_time"]).dt.floor("D")
    per_row = pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str), "event_time": day,
        "sessions": _number(frame, spec, "sessions").fillna(1.0) if "sessions" in frame else 1.0,
        "features_used": _number(frame, spec, "features_used").fillna(0.0),
        "active_minutes": _number(frame, spec, "active_minutes").fillna(0.0),
    })
    out = per_row.groupby(["customer_id", "event_time"], as_index=False, sort=False).agg(
        sessions=("sessions", "sum"), features_used=("features_used", "max"), active_minutes=("active_minutes", "sum"))
    out["sessions"] = out["sessions"].round().astype("int32")
    out["features_used"] = out["features_used"].round().astype("int32")
    return _sorted(out)


def _tickets(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    if "severity" not in frame:
        notes.append("no severity column: every ticket counts as medium")
    resolved = _utc(frame["resolved_time"]) if "resolved_time" in frame else pd.Series(pd.NaT, index=frame.index)
    out = _sorted(pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str), "event_time": _utc(frame["event_time"]),
        "severity": _text(frame, "severity", "medium").astype(str),
        "resolved_time": _utc(resolved),
        "csat": frame["csat"].astype(float) if "csat" in frame else np.nan,
    }))
    out.insert(0, "ticket_id", np.arange(len(out), dtype=np.int64))
    return out


def _nps(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    return _sorted(pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str), "event_time": _utc(frame["event_time"]),
        "score": frame["score"].astype(float).round().astype("int32"),
    }))


def _referrals(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    out = _sorted(pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str), "event_time": _utc(frame["event_time"]),
        "converted": frame["converted"].astype(bool),
    }))
    out.insert(0, "referral_id", np.arange(len(out), dtype=np.int64))
    return out


def _consents(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    return _sorted(pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str), "event_time": _utc(frame["event_time"]),
        "channel": frame["channel"].astype(str), "granted": frame["granted"].astype(bool),
    }))


def _campaigns(frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> pd.DataFrame:
    when = _utc(frame["event_time"])
    campaign = _text(frame, "campaign_id")
    if "campaign_id" not in frame:
        notes.append("no campaign_id column: each day's rows are one campaign")
        campaign = when.dt.strftime("%Y-%m-%d").astype(object)
    out = pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str), "event_time": when,
        "action": frame["action"].astype(str), "channel": _text(frame, "channel"),
        "campaign_id": campaign.astype(str),
    })
    out["is_control"] = out["action"] == NO_ACTION
    if not out["is_control"].any():
        seen = ", ".join(repr(v) for v in out["action"].value_counts().index[:8])
        raise ClmError(f"{src.path} (campaigns): no control group: no row is the control value"
                       + (f" {src.control_value!r}" if src.control_value is not None else "")
                       + f" (the action column holds {seen}). Without customers held out, what an action changes "
                       "cannot be learned; name the control group's value with --control-value (e.g. --control-value "
                       "No; it is matched exactly).")
    out["propensity"] = _propensities(out, frame, src, notes)
    out = _sorted(out)
    out.insert(0, "decision_id", np.arange(len(out), dtype=np.int64))
    return out[["decision_id", "customer_id", "event_time", "action", "channel", "propensity", "is_control",
                "campaign_id"]]


def _propensities(out: pd.DataFrame, frame: pd.DataFrame, src: ExportSource, notes: list[str]) -> np.ndarray:
    """Each row's probability of its arm: the file's, a randomised campaign's arm share, or
    unknown (NaN) for a targeted campaign: estimated when the uplift models learn from it."""
    if "propensity" in frame:
        column = src.columns.get("propensity", "propensity")
        if src.randomised or src.targeted:
            option = "--randomised" if src.randomised else "--targeted"
            instead = ("to take each arm's share of its campaign" if src.randomised
                       else "to estimate them from the customers' features")
            raise ClmError(f"{src.path} (campaigns): the file gives each row's propensity (column {column!r}) and "
                           f"{option} says {instead} instead: choose one (leave out {option} to use the column).")
        given = frame["propensity"].astype(float).to_numpy()
        if np.isnan(given).any() or (given <= 0).any():
            raise ClmError(f"{src.path} (campaigns): {int(np.sum(~(given > 0)))} row(s) have no propensity above 0 "
                           f"in column {column!r}: a row its campaign could not have chosen teaches nothing. Fill "
                           "them in, or leave the column out and pass --randomised for a randomised test.")
        return given
    if src.targeted:
        notes.append("targeted: each customer's probability of its arm is estimated from its features when the uplift "
                     "models learn, and an action its campaign gave almost without chance is left out")
        return np.full(len(out), np.nan)
    if not src.randomised:
        raise ClmError(f"{src.path} (campaigns): how customers were assigned is unknown. For a randomised test (an "
                       "A/B test, a holdout drawn at random), pass --randomised: each arm's share of its campaign is "
                       "the probability; for a targeted campaign, give each row's assignment probability with --col "
                       "propensity=COLUMN, or pass --targeted to have them estimated from the customers' features.")
    counts = out.groupby(["campaign_id", "action"])["customer_id"].transform("size")
    totals = out.groupby("campaign_id")["customer_id"].transform("size")
    notes.append("randomised: each arm's share of its campaign is the probability of that arm")
    return (counts / totals).to_numpy(dtype=float)


BUILDERS = {
    "customers": _customers, "subscriptions": _subscriptions, "transactions": _transactions, "usage": _usage,
    "tickets": _tickets, "nps": _nps, "referrals": _referrals, "consents": _consents, "campaigns": _campaigns,
    "attribute_history": _attribute_history,
}
