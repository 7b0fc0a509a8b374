"""Data contracts for every raw table, and the validator that enforces them.

Column rules (types, nulls, ranges, allowed values) are pandera schemas, checked chunk by
chunk so that a table of tens of millions of rows validates in bounded memory. Rules that
span rows or tables (duplicated keys, unknown customers, events before signup or after
the data's end, tickets resolved before they opened) run as DuckDB queries over the
Parquet files. Every violation is reported with its table, column, problem, number of
rows and example values; `clm validate` prints them and every later command refuses
invalid data before writing anything.

Over 500 lines on purpose: every table's contract is here, one schema per table, so that a
reader sees what clm requires of its input in one file.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.parquet as pq

from clm.domain import (
    ACTION_ID_PATTERN,
    CHANNEL_CONSENT_COLUMN,
    CHANNELS,
    CSAT_SCALE,
    EVENT_TABLES,
    MAX_AMOUNT,
    NPS_SCALE,
    STAGES,
    SUBSCRIPTION_EVENTS,
    TICKET_SEVERITIES,
    TRANSACTION_KINDS,
    TRANSACTION_STATUSES,
    TRUTH_TABLES,
    Table,
)
from clm.errors import DataContractError
from clm.files import write_text_atomically
from clm.workspace import RawManifest, Workspace

CHUNK_ROWS = 1_000_000
# Channels that need a consent (in-app needs none).
CONSENT_CHANNELS = tuple(c for c, column in CHANNEL_CONSENT_COLUMN.items() if column)
MAX_EXAMPLES = 5


# ----------------------------------------------------------------- column helpers
def _is_utc(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.DatetimeTZDtype) and str(series.dtype.tz) == "UTC"


def utc_time(nullable: bool = False) -> pa.Column:
    """A timezone-aware UTC timestamp column (any resolution)."""
    return pa.Column(
        None,
        pa.Check(_is_utc, element_wise=False, error="not timezone-aware UTC timestamps"),
        nullable=nullable,
    )


def key(dtype: object = str) -> pa.Column:
    return pa.Column(dtype, nullable=False)


def text(values: tuple[str, ...] | None = None, nullable: bool = False) -> pa.Column:
    checks = [pa.Check.isin(list(values), error=f"value not one of {', '.join(values)}")] if values else []
    return pa.Column(str, checks, nullable=nullable)


def action_id() -> pa.Column:
    """An action's id: the business's own (`spring_email`), or `none` for no contact."""
    return pa.Column(str, pa.Check.str_matches(f"^{ACTION_ID_PATTERN}$", error="not an action id (letters, digits, "
                                               "'_' and '-', at most 64)"))


def non_negative(dtype: object = float, nullable: bool = False, what: str = "negative values") -> pa.Column:
    return pa.Column(dtype, pa.Check.ge(0, error=what), nullable=nullable)




def money(what: str) -> pa.Column:
    """A non-negative, finite amount of money below MAX_AMOUNT."""
    return pa.Column(float, [
        pa.Check.ge(0, error=what),
        pa.Check(lambda s: np.isfinite(s) & (s < MAX_AMOUNT), error=f"infinite or implausibly large (>= {MAX_AMOUNT:.0e}) values"),
    ])


def in_range(lo: float, hi: float, dtype: object = float, nullable: bool = False) -> pa.Column:
    return pa.Column(dtype, pa.Check.in_range(lo, hi, error=f"value outside [{lo}, {hi}]"), nullable=nullable)


def probability(nullable: bool = False) -> pa.Column:
    return in_range(0.0, 1.0, nullable=nullable)


def effect() -> pa.Column:
    return in_range(-1.0, 1.0)


# ----------------------------------------------------------------- contracts
@dataclass(frozen=True)
class TableContract:
    """The rules for one raw table.

    key: columns that identify a row (must be unique and not null);
    time_columns: UTC timestamps that may not lie after the data's end;
    required_for: workspace sources ("simulator", "ingest") that must hold this table.
    """

    table: Table
    schema: pa.DataFrameSchema
    key: tuple[str, ...]
    time_columns: tuple[str, ...] = ()
    required_for: tuple[str, ...] = ("simulator",)

    @property
    def has_customer_events(self) -> bool:
        return self.table in EVENT_TABLES


def _schema(columns: dict[str, pa.Column]) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(columns, strict=False, coerce=False)


CONTRACTS: dict[Table, TableContract] = {
    c.table: c
    for c in (
        TableContract(
            Table.CUSTOMERS,
            _schema({
                "customer_id": key(),
                "signup_time": utc_time(),
                "acquisition_channel": text(nullable=True),
                "segment": text(nullable=True),
                "region": text(nullable=True),
                "consent_email": pa.Column(bool),
                "consent_phone": pa.Column(bool),
            }),
            key=("customer_id",),
            time_columns=("signup_time",),
            required_for=("simulator", "ingest"),
        ),
        TableContract(
            Table.SUBSCRIPTIONS,
            _schema({
                "customer_id": key(),
                "event_time": utc_time(),
                "event": text(SUBSCRIPTION_EVENTS),
                "plan": text(),
                "price": non_negative(what="negative prices"),
            }),
            key=("customer_id", "event_time", "event"),
            time_columns=("event_time",),
        ),
        TableContract(
            Table.TRANSACTIONS,
            _schema({
                "transaction_id": key("int64"),
                "customer_id": key(),
                "event_time": utc_time(),
                "kind": text(TRANSACTION_KINDS),
                "amount": money("negative amounts"),
                "discount": money("negative discounts"),
                "status": text(TRANSACTION_STATUSES),
                "plan": text(nullable=True),
            }),
            key=("transaction_id",),
            time_columns=("event_time",),
        ),
        TableContract(
            Table.USAGE,
            _schema({
                "customer_id": key(),
                "event_time": utc_time(),
                "sessions": non_negative("int32", what="negative session counts"),
                "features_used": non_negative("int32", what="negative feature counts"),
                "active_minutes": non_negative(what="negative minutes"),
            }),
            key=("customer_id", "event_time"),
            time_columns=("event_time",),
        ),
        TableContract(
            Table.TICKETS,
            _schema({
                "ticket_id": key("int64"),
                "customer_id": key(),
                "event_time": utc_time(),
                "severity": text(TICKET_SEVERITIES),
                "resolved_time": utc_time(nullable=True),
                "csat": in_range(*CSAT_SCALE, nullable=True),
            }),
            key=("ticket_id",),
            time_columns=("event_time", "resolved_time"),
        ),
        TableContract(
            Table.NPS,
            _schema({"customer_id": key(), "event_time": utc_time(), "score": in_range(*NPS_SCALE, dtype="int32")}),
            key=("customer_id", "event_time"),
            time_columns=("event_time",),
        ),
        TableContract(
            Table.REFERRALS,
            _schema({
                "referral_id": key("int64"),
                "customer_id": key(),
                "event_time": utc_time(),
                "converted": pa.Column(bool),
            }),
            key=("referral_id",),
            time_columns=("event_time",),
        ),
        TableContract(
            Table.CONSENTS,
            _schema({
                "customer_id": key(),
                "event_time": utc_time(),
                "channel": text(CONSENT_CHANNELS),
                "granted": pa.Column(bool),
            }),
            key=("customer_id", "event_time", "channel"),
            time_columns=("event_time",),
            required_for=(),  # workspaces simulated before the simulator wrote it are valid without it
        ),
        TableContract(
            Table.ACTIONS,
            _schema({
                "decision_id": key("int64"),
                "customer_id": key(),
                "event_time": utc_time(),
                "action": action_id(),
                "channel": text(CHANNELS, nullable=True),
                # Missing: a targeted campaign's, estimated when learned from (`training.propensity`).
                "propensity": pa.Column(float, pa.Check.in_range(0, 1, include_min=False, error="propensity outside (0, 1]"),
                                        nullable=True),
                "is_control": pa.Column(bool),
            }),
            key=("decision_id",),
            time_columns=("event_time",),
        ),
        TableContract(
            Table.ATTRIBUTE_HISTORY,  # and the business's attribute columns, as they are
            _schema({"customer_id": key(), "event_time": utc_time()}),
            key=("customer_id", "event_time"),
            time_columns=("event_time",),
            required_for=(),
        ),
        TableContract(
            Table.GROUND_TRUTH,
            _schema({
                "customer_id": key(),
                "snapshot_date": pa.Column(None, nullable=False),
                "p_churn_30d": probability(nullable=True),
                "p_churn_90d": probability(nullable=True),
                "p_upgrade_30d": probability(nullable=True),
                "p_upgrade_90d": probability(nullable=True),
                "stage": text(STAGES),
            }),
            key=("customer_id", "snapshot_date"),
        ),
        TableContract(
            Table.GROUND_TRUTH_EFFECTS,
            _schema({
                "customer_id": key(),
                "snapshot_date": pa.Column(None, nullable=False),
                "action": action_id(),
                "effect_churn_90d": effect(),
                "effect_upgrade_90d": effect(),
            }),
            key=("customer_id", "snapshot_date", "action"),
        ),
    )
}


# ----------------------------------------------------------------- the report
@dataclass(frozen=True)
class Violation:
    table: str
    column: str
    problem: str
    rows: int
    examples: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        ex = f"; e.g. {'; '.join(self.examples)}" if self.examples else ""
        count = f"{self.rows} row{'s' if self.rows != 1 else ''}" if self.rows else "table"
        return f"{where}: {self.problem} ({count}){ex}"


@dataclass
class ValidationReport:
    workspace: Path
    violations: list[Violation] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    advice: str = "Fix the source data (or re-run `clm ingest` / `clm simulate`), then `clm validate` again."

    @property
    def ok(self) -> bool:
        return not self.violations

    def text(self) -> str:
        lines = [f"Raw data in {self.workspace} breaks its contract ({len(self.violations)} problem(s)):"]
        lines += [f"  - {v.describe()}" for v in self.violations]
        lines.append(self.advice)
        return "\n".join(lines)

    def raise_if_invalid(self) -> None:
        if not self.ok:
            raise DataContractError(self.text())


def _examples(values: pd.Series) -> tuple[str, ...]:
    return tuple(str(v) for v in values.drop_duplicates().head(MAX_EXAMPLES))


# ----------------------------------------------------------------- column checks
def _chunks(path: Path) -> Iterator[pd.DataFrame]:
    pf = pq.ParquetFile(path)
    if pf.metadata.num_rows == 0:
        yield pf.schema_arrow.empty_table().to_pandas()
        return
    for batch in pf.iter_batches(batch_size=CHUNK_ROWS):
        yield batch.to_pandas()


def _parse_problems(contract: TableContract, chunk: pd.DataFrame) -> dict[tuple[str, str], list[pd.Series]]:
    """Timestamps stored as text: report the ones that do not parse (the rest still fail
    the UTC type rule, which tells the user to convert the column)."""
    found: dict[tuple[str, str], list[pd.Series]] = {}
    for col in contract.time_columns:
        if col in chunk and chunk[col].dtype == object:
            values = chunk[col].dropna()
            parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
            bad = values[parsed.isna()]
            if len(bad):
                found.setdefault((col, "unparseable dates"), []).append(bad)
    return found


def check_columns(contract: TableContract, path: Path) -> tuple[list[Violation], int]:
    """pandera's column rules over every chunk; returns violations and the row count.

    A column that is missing or of the wrong type gets that one violation: its value
    checks would only repeat it less clearly.
    """
    grouped: dict[tuple[str, str], list[pd.Series]] = {}
    structural: dict[str, str] = {}  # column -> missing / wrong type / not UTC
    rows = 0
    for chunk in _chunks(path):
        rows += len(chunk)
        for k, v in _parse_problems(contract, chunk).items():
            grouped.setdefault(k, []).extend(v)
        try:
            contract.schema.validate(chunk, lazy=True)
        except pa.errors.SchemaErrors as err:
            for (column, check), part in err.failure_cases.groupby(["column", "check"], dropna=False, sort=False):
                check = str(check)
                if check == "column_in_dataframe":
                    for name in part["failure_case"]:
                        structural[str(name)] = "missing column"
                    continue
                column = "" if pd.isna(column) else str(column)
                problem = _problem_text(check, column, chunk)
                if problem.startswith(("wrong type", "not timezone")):
                    structural[column] = problem
                else:
                    grouped.setdefault((column, problem), []).append(part["failure_case"])
    name = contract.table.value
    out = [Violation(name, column, problem, 0) for column, problem in structural.items()]
    for (column, problem), parts in grouped.items():
        if column in structural and problem != "unparseable dates":
            continue
        values = pd.concat(parts, ignore_index=True)
        out.append(Violation(name, column, problem, len(values), _examples(values.dropna())))
    return out, rows


def _problem_text(check: str, column: str, chunk: pd.DataFrame) -> str:
    if check == "column_in_dataframe":
        return "missing column"
    if check == "not_nullable":
        return "null values in a column that must always be set"
    if check.startswith("dtype("):
        found = chunk[column].dtype if column in chunk else "?"
        return f"wrong type: expected {check[6:-1]}, found {found}"
    return check


# ----------------------------------------------------------------- cross checks
def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[int, tuple[str, ...]]:
    """Runs a query returning rows of one example column; returns (count, examples)."""
    counted = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    assert counted is not None  # count(*) always returns one row
    total = counted[0]
    if not total:
        return 0, ()
    ex = con.execute(f"SELECT * FROM ({sql}) LIMIT {MAX_EXAMPLES}").fetchall()
    return int(total), tuple("(" + ", ".join(str(v) for v in row) + ")" if len(row) > 1 else str(row[0]) for row in ex)


def check_relations(
    contract: TableContract,
    path: Path,
    customers_path: Path | None,
    manifest: RawManifest,
    con: duckdb.DuckDBPyConnection,
) -> list[Violation]:
    """Rules across rows and tables, run by DuckDB over the Parquet files."""
    name = contract.table.value
    src = f"read_parquet('{path}')"
    out: list[Violation] = []

    def add(column: str, problem: str, sql: str) -> None:
        n, ex = _fetch(con, sql)
        if n:
            out.append(Violation(name, column, problem, n, ex))

    keys = ", ".join(contract.key)
    add(
        keys,
        f"duplicated key ({keys}) (rows identical in every column are left out by ingesting with "
        "--drop-duplicates)",
        f"SELECT {keys} FROM {src} WHERE {' AND '.join(f'{k} IS NOT NULL' for k in contract.key)} "
        f"GROUP BY {keys} HAVING count(*) > 1",
    )
    end = manifest.end.isoformat()
    for col in contract.time_columns:
        add(
            col,
            f"timestamp after the data's end ({manifest.data_end})",
            f"SELECT {col} FROM {src} WHERE {col} >= TIMESTAMPTZ '{end}'",
        )
    if contract.table is Table.TICKETS:
        add(
            "resolved_time",
            "ticket resolved before it was opened",
            f"SELECT ticket_id, event_time, resolved_time FROM {src} WHERE resolved_time < event_time",
        )
    if contract.has_customer_events and customers_path is not None:
        cust = f"read_parquet('{customers_path}')"
        add(
            "customer_id",
            "events for unknown customers (not in the customers table)",
            f"SELECT DISTINCT e.customer_id FROM {src} e ANTI JOIN {cust} c USING (customer_id)",
        )
        add(
            "event_time",
            "events before the customer's signup",
            f"SELECT e.customer_id, e.event_time, c.signup_time FROM {src} e JOIN {cust} c USING (customer_id) "
            "WHERE e.event_time < c.signup_time",
        )
    if contract.table in TRUTH_TABLES and customers_path is not None:
        add(
            "customer_id",
            "rows for unknown customers (not in the customers table)",
            f"SELECT DISTINCT e.customer_id FROM {src} e ANTI JOIN read_parquet('{customers_path}') c USING (customer_id)",
        )
    return out


# ----------------------------------------------------------------- workspace
def validate_raw_dir(
    raw_dir: Path, manifest: RawManifest, progress: Callable[[str], None] | None = None
) -> ValidationReport:
    """Check every raw table in raw_dir against its contract.

    progress: optional callable told each table's name as its check starts.
    """
    report = ValidationReport(raw_dir)
    con = duckdb.connect()
    customers_path = raw_dir / f"{Table.CUSTOMERS.value}.parquet"
    column_ok: dict[Table, bool] = {}
    for table, contract in CONTRACTS.items():
        path = raw_dir / f"{table.value}.parquet"
        if not path.exists():
            if manifest.source in contract.required_for or table.value in manifest.tables:
                report.violations.append(Violation(table.value, "", "table missing from the workspace", 0))
            continue
        if progress is not None:
            progress(table.value)
        try:
            found, rows = check_columns(contract, path)
        except (pyarrow.ArrowException, OSError) as err:  # truncated or damaged: no rule can be checked
            found, rows = [Violation(table.value, "", f"unreadable Parquet file {path.name} (damaged or "
                                     f"truncated: {str(err).splitlines()[0][:120]}); recreate the raw data "
                                     "with --replace", 0)], 0
        report.rows[table.value] = rows
        report.violations.extend(found)
        column_ok[table] = not found
    customers_usable = column_ok.get(Table.CUSTOMERS, False)
    for table, ok in column_ok.items():
        if not ok:
            continue  # relations need well-typed columns; the column report says what to fix
        report.violations.extend(
            check_relations(
                CONTRACTS[table], raw_dir / f"{table.value}.parquet",
                customers_path if customers_usable else None, manifest, con,
            )
        )
    con.close()
    return report


def validate_workspace(workspace: Workspace, progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Check a workspace's raw data; raises ClmError if it has none."""
    report = validate_raw_dir(workspace.raw_dir, workspace.read_manifest(), progress)
    report.workspace = workspace.root
    return report


# A record, inside raw/, that the data as it is now passed its contracts: written where raw
# data is validated whole (ingest, `clm validate`), so that the commands that read it
# (nightly scoring above all) need not check millions of rows again.
VALIDATED_NAME = "_validated.json"


def raw_fingerprint(raw_dir: Path) -> str:
    """Changes with any raw file (name, size, modification time) and with the contracts."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted(raw_dir.iterdir()):
        if path.is_file() and path.name != VALIDATED_NAME:
            stat = path.stat()
            h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return h.hexdigest()


def record_valid(raw_dir: Path) -> None:
    """Record that raw_dir, as it is now, is valid (call only after a full validation)."""
    write_text_atomically(raw_dir / VALIDATED_NAME, json.dumps({"fingerprint": raw_fingerprint(raw_dir)}))


def recorded_valid(raw_dir: Path) -> bool:
    marker = raw_dir / VALIDATED_NAME
    try:
        return json.loads(marker.read_text()).get("fingerprint") == raw_fingerprint(raw_dir)
    except (OSError, ValueError, AttributeError):
        return False


def require_valid(workspace: Workspace) -> RawManifest:
    """For every command that reads raw data: refuse invalid data before writing anything.
    Data recorded valid as it is now (`record_valid`) is not checked again; data found
    valid here is recorded, so that it is checked once per change, whichever command
    meets it first."""
    manifest = workspace.read_manifest()
    if not recorded_valid(workspace.raw_dir):
        validate_workspace(workspace).raise_if_invalid()
        record_valid(workspace.raw_dir)
    return manifest
