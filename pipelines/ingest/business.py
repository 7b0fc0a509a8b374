"""One business's tables into its workspace, in one call or several.

A workspace holding ingested data gains each table brought to it; a table it holds
already is refused unless `replace`, which replaces that table only (the rest of the
business, its feature snapshots and its models stay: snapshots are rebuilt from the new
raw data). A workspace holding something else (a simulation) is started over only with
`replace`. Without a customers table, the customers are the ids the event tables name,
each signed up at their first event; a customers table brought later takes their place.
The business is contractual when it has subscriptions (churn is a cancellation), else
non-contractual (churn is no purchase within the horizon). The new raw folder is checked
whole against the contracts (every id known in customers, no event before signup, ...)
before it replaces the old one in one rename: a refused ingest changes nothing.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Collection

import pandas as pd
import pyarrow.parquet as pq

from clm.contracts import CONTRACTS, record_valid, validate_raw_dir
from clm.domain import Table
from clm.errors import ClmError
from clm.privacy import KEY_VARIABLE, Erased, key_id, personal_kind, pseudonyms, required_key
from clm.workspace import RawManifest, Workspace, write_manifest
from pipelines.ingest.tables import TABLES, ExportSource, IngestSummary, build_table

INGEST_SOURCE = "ingest"
INFERRED = "customers_inferred"  # manifest detail: the customers table was made from the events
OBSERVED_UNTIL = "observed_until"  # manifest detail: the last day the exports cover (`until`)


def _ingested(workspace: Workspace) -> RawManifest | None:
    """The manifest of ingested data this call adds to (None: a new business)."""
    if not workspace.has_raw():
        return None
    manifest = workspace.read_manifest()
    return manifest if manifest.source == INGEST_SOURCE else None


def _held_tables(manifest: RawManifest) -> dict[str, str]:
    """Raw table -> the table name the user brought it as, for the tables the user brought
    (inferred customers are not the user's)."""
    brought = {TABLES[name].raw.value: name for name in TABLES}
    held = {t: brought.get(t, t) for t in manifest.tables}
    if manifest.details.get(INFERRED, True):  # ingests before the flag existed always inferred them
        held.pop(Table.CUSTOMERS.value, None)
    return held


def check_before_reading(sources: list[ExportSource], workspace: Workspace, replace: bool) -> RawManifest | None:
    """Everything that can be refused without reading a file; returns the ingested data
    this call adds to (None: a new business)."""
    names = [s.table for s in sources]
    if not sources:
        raise ClmError("Nothing to ingest: name a table and its file, or a mapping file with --mapping.")
    for s in sources:
        s.spec  # noqa: B018 - an unknown table is named here
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ClmError(f"Table(s) {', '.join(repeated)} given more than once in one ingest: give each table once.")
    current = _ingested(workspace)
    if current is None:
        workspace.check_new_business(replace)
        return None
    workspace.check_ours()
    workspace.check_folders()
    held = _held_tables(current)
    clash = [s.table for s in sources if TABLES[s.table].raw.value in held]
    if clash and not replace:
        raise ClmError(
            f"Workspace '{workspace.root}' already holds the table(s) {', '.join(clash)}. Pass --replace to replace "
            f"{'it' if len(clash) == 1 else 'them'} (only {'it' if len(clash) == 1 else 'them'}: the other tables, "
            "features and models stay), or choose another --workspace."
        )
    return current


def _times(workspace: Workspace, table: str) -> pd.DataFrame:
    """A kept table's customers and times: what the period and inferred customers need."""
    names = pq.read_schema(workspace.table_path(table)).names
    wanted = ("customer_id", *CONTRACTS[Table(table)].time_columns)
    return workspace.read_table(table, columns=[c for c in wanted if c in names])


def inferred_customers(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Customers from the event tables: every id they name, signed up at its first event."""
    firsts = [frame[["customer_id", "event_time"]] for frame in tables.values() if "event_time" in frame and len(frame)]
    if not firsts:
        raise ClmError("No customers table, and no events to find the customers in: bring the customers table "
                       "(clm ingest customers FILE ...).")
    first = pd.concat(firsts, ignore_index=True).groupby("customer_id", sort=True)["event_time"].min()
    customers = pd.DataFrame({
        "customer_id": first.index.astype(str),
        "signup_time": first.to_numpy(),
        "acquisition_channel": pd.Series([None] * len(first), dtype=object),
        "segment": pd.Series([None] * len(first), dtype=object),
        "region": pd.Series([None] * len(first), dtype=object),
        "consent_email": False,
        "consent_phone": False,
    })
    customers["signup_time"] = customers["signup_time"].astype("datetime64[us, UTC]")
    return customers


def _bounds(tables: dict[str, pd.DataFrame]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The observed period: from the day of the first event (the first signup when there
    are no events; a signup may lie before the events) to the day after the last moment any
    table records (a signup, an event, a ticket's resolution)."""
    events = [frame["event_time"] for frame in tables.values() if "event_time" in frame and len(frame)]
    first = pd.concat(events or [tables[Table.CUSTOMERS.value]["signup_time"]], ignore_index=True).min()
    every = [frame[c].dropna() for name, frame in tables.items() for c in CONTRACTS[Table(name)].time_columns
             if c in frame and len(frame)]
    return first.normalize(), pd.concat(every, ignore_index=True).max().normalize() + pd.Timedelta(days=1)


STALE_DAYS = 31  # an activity table ending this much before the data's end is said to end early
# Tables whose silence means inactivity (a change log, a survey, a consent, is silent anyway).
ACTIVITY_TABLES = (Table.TRANSACTIONS.value, Table.USAGE.value)


def ended_early(tables: dict[str, pd.DataFrame], end: pd.Timestamp) -> dict[str, str]:
    """Activity tables whose last row lies more than STALE_DAYS before the data's end, in
    words: after its last row, such a table reads as no activity (for a shop's transactions,
    as churn), so an export older than the others misleads every later step."""
    out = {}
    for name, frame in tables.items():
        if name not in ACTIVITY_TABLES or not len(frame):
            continue
        last = frame["event_time"].max()
        gap = (end - pd.Timedelta(days=1) - last.normalize()).days
        if gap > STALE_DAYS:
            out[name] = (f"its last row is on {last:%Y-%m-%d}, {gap} days before the data's end "
                         f"({end - pd.Timedelta(days=1):%Y-%m-%d}): after it, clm reads no activity; if this export "
                         "is older than the others, bring a newer one")
    return out


def _attribute_names(workspace: Workspace, built: dict[str, pd.DataFrame], table: Table) -> set[str]:
    """The business's own columns of a table being brought (built) or held."""
    if table.value in built:
        names = list(built[table.value].columns)
    elif workspace.table_path(table).exists():
        names = pq.read_schema(workspace.table_path(table)).names
    else:
        return set()
    return set(names) - set(CONTRACTS[table].schema.columns)


def _refuse_attributes_twice(workspace: Workspace, built: dict[str, pd.DataFrame]) -> None:
    """An attribute both static (customers) and changing (attribute_history) would be two
    features of one name: refused, naming both."""
    both = sorted({a.lower() for a in _attribute_names(workspace, built, Table.CUSTOMERS)}
                  & {a.lower() for a in _attribute_names(workspace, built, Table.ATTRIBUTE_HISTORY)})
    if both:
        raise ClmError(f"Attribute(s) {', '.join(map(repr, both))} are both on customers (static) and in "
                       "attribute_history (changing over time): keep each in one table (a value that changes "
                       "belongs in attribute_history; bring the other table again without it, with --replace).")


def _without_forgotten(frame: pd.DataFrame, summary: IngestSummary, erased: Erased) -> tuple[pd.DataFrame, IngestSummary]:
    """The export without the customers `clm forget` erased (an old export brings them
    back otherwise), said in the summary."""
    gone = erased.mask(frame["customer_id"])
    if gone.any():
        customers = frame.loc[gone, "customer_id"].nunique()
        frame = frame[~gone].reset_index(drop=True)
        summary.rows_written, summary.customers = len(frame), int(frame["customer_id"].nunique())
        summary.notes.append(f"{int(gone.sum()):,} row(s) of {customers:,} customer(s) erased by `clm forget` "
                             "left out")
    return frame, summary


PSEUDONYMISED = "pseudonymised"  # manifest detail: the key's fingerprint (`clm.privacy.key_id`)


def _pseudonymisation(workspace: Workspace, current: RawManifest | None, pseudonymise: bool) -> bytes | None:
    """The key ids are pseudonymised with (None: they are kept), refused when the workspace
    was brought in the other way or with another key: its tables would name no one alike."""
    before = current.details.get(PSEUDONYMISED) if current is not None else None
    if not pseudonymise:
        if before:
            raise ClmError(f"Workspace '{workspace.root}' holds pseudonymised ids: ingest with --pseudonymise (and the "
                           f"same {KEY_VARIABLE}), so that the new table names the same customers.")
        return None
    key = required_key()
    if current is not None and before != key_id(key):
        raise ClmError(f"Workspace '{workspace.root}' holds ids "
                       + ("that were not pseudonymised: ingest without --pseudonymise, or start a new workspace."
                          if not before else f"pseudonymised with another key (fingerprint {before}): set "
                          f"{KEY_VARIABLE} to that key."))
    return key


def _private(frame: pd.DataFrame, summary: IngestSummary, src: ExportSource, key: bytes | None,
             allow_personal: Collection[str]) -> pd.DataFrame:
    """The export with its customer ids pseudonymised (a key given), after refusing columns
    that hold e-mail addresses or phone numbers unless allowed (the ids themselves when
    pseudonymised)."""
    for column in frame.columns:
        if column in allow_personal or (column == "customer_id" and key is not None):
            continue
        kind = personal_kind(frame[column])
        if kind is not None:
            read = summary.columns.get(column, column)
            raise ClmError(f"{src.table} ({src.path}): column '{read}' holds {kind}, personal data clm does not need. "
                           + ("Pseudonymise the ids (--pseudonymise, with CLM_PRIVACY_KEY set)"
                              if column == "customer_id" else "Leave the column out of the export")
                           + f", or keep it knowingly with --allow-personal {column}.")
    if key is not None:
        frame = frame.assign(customer_id=pseudonyms(key, frame["customer_id"]).to_numpy())
        summary.notes.append("customer ids pseudonymised (keyed hashes: CLM_PRIVACY_KEY)")
    return frame


def ingest_tables(sources: list[ExportSource], workspace: Workspace, replace: bool = False,
                  progress: Callable[[str], None] | None = None, until: pd.Timestamp | None = None,
                  until_from: str = "--until", pseudonymise: bool = False,
                  allow_personal: Collection[str] = ()) -> list[IngestSummary]:
    """Bring the exports into the workspace (see the module's docstring); one summary per
    export, in the order given. until: the last day the exports cover (the day they were
    taken), when later than their last row: the data's end (a quiet last week is then seen
    as quiet, not as the end of the data); kept for later calls unless one gives another.
    until_from: where the user gave it, for a message."""
    current = check_before_reading(sources, workspace, replace)
    key = _pseudonymisation(workspace, current, pseudonymise)
    erased = Erased.of(workspace)
    built = {}
    for src in sources:
        if progress is not None:
            progress(f"Reading {src.table} from {src.path}")
        frame, summary = build_table(src)
        frame = _private(frame, summary, src, key, allow_personal)
        built[TABLES[src.table].raw.value] = _without_forgotten(frame, summary, erased)
    held = _held_tables(current) if current is not None else {}
    kept = {t: _times(workspace, t) for t in held if t not in built}  # copied as they are; read for their times
    tables = {**kept, **{t: frame for t, (frame, _) in built.items()}}
    inferred = Table.CUSTOMERS.value not in tables
    if inferred:
        tables[Table.CUSTOMERS.value] = inferred_customers(tables)
    _refuse_attributes_twice(workspace, {t: frame for t, (frame, _) in built.items()})
    start, end = _bounds(tables)
    details: dict[str, object] = dict(current.details) if current is not None else {}
    kept_until = details.get(OBSERVED_UNTIL)
    observed = until if until is not None else pd.Timestamp(str(kept_until), tz="UTC") if kept_until else None
    if observed is not None:
        if observed + pd.Timedelta(days=1) < end:
            said = until_from if until is not None else "by an earlier ingest's --until, kept"
            raise ClmError(f"The exports run to {end - pd.Timedelta(days=1):%Y-%m-%d}, after the day they are said to "
                           f"cover until ({observed:%Y-%m-%d}, {said}): give a day on or after their last row "
                           "(--until, or until: in a mapping file).")
        end = observed.normalize() + pd.Timedelta(days=1)
        details[OBSERVED_UNTIL] = f"{observed:%Y-%m-%d}"
    early = ended_early(tables, end)
    for raw_name, (_, summary) in built.items():
        if raw_name in early:
            summary.warnings.append(f"ends early: {early[raw_name]}")
    last = list(built.values())[-1][1]
    last.warnings.extend(f"the workspace's {name} table ends early: {why}" for name, why in early.items() if name in kept)
    earlier = details.get("files")
    files: dict[str, object] = dict(earlier) if isinstance(earlier, dict) else {}
    for src, (_, summary) in zip(sources, built.values(), strict=True):
        files[src.table] = {"file": str(src.path), "columns": summary.columns, "rows_read": summary.rows_read,
                            "rows_skipped": summary.skipped}
    details.update({"files": files, INFERRED: inferred})
    if key is not None:
        details[PSEUDONYMISED] = key_id(key)
    manifest = RawManifest(
        source=INGEST_SOURCE,
        business="contractual" if Table.SUBSCRIPTIONS.value in tables else "non_contractual",
        data_start=start.isoformat(),
        data_end=end.isoformat(),
        tables=sorted(tables),
        details=details,
    )
    if progress is not None:
        progress("Checking the tables against each other")
    with workspace.writing_raw(replace, same_business=current is not None) as staging:
        for name, frame in tables.items():
            if name in kept:
                shutil.copy2(workspace.table_path(name), staging / f"{name}.parquet")
            else:
                frame.to_parquet(staging / f"{name}.parquet", index=False)
        write_manifest(staging, manifest)
        report = validate_raw_dir(staging, manifest)
        report.workspace = workspace.root  # what the user knows, not the staging folder's name
        report.advice = ("Nothing was written. Fix the export files ("
                         + ", ".join(f"{s.table}: {s.path}" for s in sources)
                         + ") or bring the missing table, then ingest again (--skip-bad-rows leaves out rows a "
                         "file cannot read, not rows that disagree with another table).")
        report.raise_if_invalid()
        record_valid(staging)
    return [summary for _, summary in built.values()]
