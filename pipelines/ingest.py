"""Real exports in: a transactions file with any column names becomes a raw workspace.

A transactions-only business is non-contractual: there are no subscriptions, customers
are inferred from their first purchase (signup_time = first purchase), and churn is the
absence of purchases within a horizon. Rows that cannot be used (no customer, a date that
does not parse, an amount that is not a non-negative number) stop the ingest with a
report naming each problem, unless skip_bad_rows is set, in which case they are left out
and counted. The workspace's raw/ folder is replaced in one rename, after the new tables
pass their contracts, so a failed ingest leaves the previous data untouched.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from clm.contracts import MAX_AMOUNT, record_valid, validate_raw_dir
from clm.domain import Table
from clm.errors import ClmError
from clm.files import check_path_length
from clm.workspace import RawManifest, Workspace, write_manifest

SEPARATORS = {",": ",", ";": ";", "tab": "\t", "\\t": "\t", "whitespace": r"\s+"}
SNIFF_LINES = 50
MAX_EXAMPLES = 5
# Purchases before this day are taken for placeholders (1900-01-01, 1970-01-01: an empty
# date in many systems' exports) unless --earliest-date says the data goes back further.
EARLIEST_PLAUSIBLE = pd.Timestamp("1990-01-01", tz="UTC")


@dataclass(frozen=True)
class TransactionsSource:
    """How to read one transactions export."""

    path: Path
    customer_col: str
    date_col: str
    amount_col: str
    date_format: str | None = None  # strptime format, e.g. "%d/%m/%Y"; inferred if None
    sep: str | None = None  # ",", ";", "tab" or "whitespace"; detected if None
    decimal: str = "."
    skip_bad_rows: bool = False
    encoding: str = "utf-8-sig"  # of text files; e.g. "latin-1" for older spreadsheet exports
    drop_duplicates: bool = False  # leave out rows identical in customer, time and amount
    earliest: pd.Timestamp = EARLIEST_PLAUSIBLE  # a purchase before it is a placeholder date


@dataclass
class IngestSummary:
    rows_read: int
    rows_written: int
    customers: int
    first_event: pd.Timestamp
    last_event: pd.Timestamp
    separator: str | None
    skipped: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # rows identical in customer, time and amount to an earlier one
    duplicates_dropped: bool = False


# Day/month/year or month/day/year with '/', '.' or '-': the first two fields tell which.
DAY_MONTH = r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}"
# Year first (2024-05-03, 2024/05/03 2:15 PM): always year, month, day.
YEAR_FIRST = r"^\s*\d{4}[/.-]\d{1,2}[/.-]\d{1,2}"


def detect_separator(sample: str) -> str:
    """The separator of a delimited text sample: ',', ';', tab, or runs of whitespace."""
    lines = [ln for ln in sample.splitlines() if ln.strip()][:SNIFF_LINES]
    if not lines:
        raise ClmError("the file is empty: no header line to read.")
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t").delimiter
    except csv.Error:
        pass
    # The sniffer wants the same count on every line; a ragged export (a row with a missing
    # trailing field) still has one candidate that the header and every line contain.
    present = [c for c in ",;\t" if all(c in ln for ln in lines)]
    if present:
        return max(present, key=lambda c: lines[0].count(c))
    counts = {len(ln.split()) for ln in lines}
    if len(counts) == 1 and counts.pop() >= 2:
        return r"\s+"
    raise ClmError(
        "Could not detect the column separator from the first lines of the file. "
        "Pass --sep with one of: ',', ';', 'tab', 'whitespace'."
    )


def _sample_lines(path: Path, encoding: str) -> str:
    """The first lines of a text file, compressed (.gz, .bz2, .xz, .zip) or not."""
    suffix = path.suffix.lower()
    openers: dict[str, Callable[..., IO[str]]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if len(names) != 1:
                    raise ClmError(f"{path} holds {len(names)} files; a zip to ingest must hold exactly one.")
                raw = archive.open(names[0]).read(1 << 16)
            return raw.decode(encoding, errors="replace")
        with openers.get(suffix, open)(path, "rt", encoding=encoding, errors="replace") as fh:
            return "".join(fh.readline() for _ in range(SNIFF_LINES))
    except UnicodeError as err:  # e.g. utf-16 without its byte-order mark
        raise ClmError(f"{path} cannot be read as {encoding} text ({err}). Check --encoding (e.g. utf-8, latin-1, "
                       "cp1252, utf-16).") from None
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as err:
        raise ClmError(f"Could not read {path}: {err}") from err


def _read_raw(src: TransactionsSource) -> tuple[pd.DataFrame, str | None, list[str]]:
    """The export as text columns, its separator, and its header's names as written
    (pandas renames a repeated name, `customer` to `customer.1`)."""
    path = check_path_length(src.path, "The export")
    if not path.exists():
        raise ClmError(f"Input file not found: {path}")
    if path.is_dir():
        raise ClmError(f"{path} is a folder; give the export file itself, e.g. {path / 'orders.csv'}.")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
            return frame, None, [str(c) for c in frame.columns]
        except Exception as err:  # pyarrow raises several types for a bad file
            raise ClmError(f"Could not read {path} as Parquet: {err}") from err
    if src.sep is not None and src.sep not in SEPARATORS:
        raise ClmError(f"--sep '{src.sep}' is not supported; use one of: ',', ';', 'tab', 'whitespace'.")
    try:
        "".encode(src.encoding)
    except LookupError:
        raise ClmError(f"--encoding '{src.encoding}' is not a known text encoding (e.g. utf-8, latin-1, cp1252).") from None
    if src.sep:
        sep = SEPARATORS[src.sep]
    else:
        sample = _sample_lines(path, src.encoding)
        try:
            sep = detect_separator(sample)
        except ClmError as err:
            raise ClmError(f"{path}: {err}") from None
    try:
        with warnings.catch_warnings():
            # A row longer than the header would silently become an index or lose its tail.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            options = {"sep": sep, "dtype": str, "keep_default_na": False, "encoding": src.encoding,
                       "engine": "python" if sep == r"\s+" else "c", "skipinitialspace": True}
            frame = pd.read_csv(path, index_col=False, **options)
            header = pd.read_csv(path, header=None, nrows=1, **options).iloc[0].str.strip().tolist()
    except pd.errors.ParserWarning:
        raise ClmError(
            f"{path}: a row has more fields than the header line (separator {sep!r}). Check --sep, or quote "
            "values that contain the separator."
        ) from None
    except UnicodeDecodeError as err:
        raise ClmError(
            f"{path} is not {src.encoding} text ({err.reason} at byte {err.start}). "
            "Pass its encoding, e.g. --encoding latin-1 (or cp1252 for Windows exports)."
        ) from err
    except UnicodeError as err:  # e.g. utf-16 without its byte-order mark
        raise ClmError(f"{path} cannot be read as {src.encoding} text ({err}). Check --encoding.") from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError) as err:
        raise ClmError(f"Could not parse {path} as delimited text (separator {sep!r}): {err}") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, sep, header


def _parse_dates(values: pd.Series, date_format: str | None, column: str) -> pd.Series:
    """UTC instants. Times with a UTC offset are converted (offsets may differ within a file,
    e.g. summer and winter time); times without one are taken as UTC. Without a format,
    day/month and month/day are told apart by the file itself (a first field above 12 is a
    day, a second above 12 is a month); a file that does not say is refused."""
    text = values.astype("string").str.strip()
    if date_format:
        return pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
    month_first = pd.to_datetime(text, format="mixed", errors="coerce", utc=True, dayfirst=False)
    year_first = text.str.match(YEAR_FIRST).fillna(False).to_numpy(dtype=bool)
    if year_first.all():
        return month_first  # dayfirst would swap month and day of '2024-05-03 2:15 PM'
    day_first = pd.to_datetime(text, format="mixed", errors="coerce", utc=True, dayfirst=True)
    day_first[year_first] = month_first[year_first]
    differ = month_first.notna() & day_first.notna() & (month_first != day_first)
    if not differ.any():
        return month_first
    fields = text.str.extract(DAY_MONTH).astype(float)
    says_day_first = bool((fields[0] > 12).any())
    says_month_first = bool((fields[1] > 12).any())
    if says_day_first != says_month_first:
        return day_first if says_day_first else month_first
    examples = ", ".join(repr(v) for v in text[differ].head(MAX_EXAMPLES))
    raise ClmError(
        f"Dates in column '{column}' are ambiguous: {int(differ.sum())} row(s) read differently as day/month and "
        f"as month/day (e.g. {examples}), and the file "
        + ("uses both orders" if says_day_first else "does not show which it uses")
        + ". Pass --date-format, e.g. --date-format '%d/%m/%Y' or '%m/%d/%Y'."
    )


def _parse_dates_any(values: pd.Series, date_format: str | None, column: str) -> pd.Series:
    """Dates from text, or already-typed datetimes (Parquet), as UTC."""
    if pd.api.types.is_datetime64_any_dtype(values):
        s = pd.to_datetime(values)
        return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    try:
        return _parse_dates(values, date_format, column)
    except (ValueError, TypeError) as err:
        raise ClmError(f"--date-format '{date_format}' is not a valid format: {err}") from err


def _parse_amounts(values: pd.Series, decimal: str) -> pd.Series:
    """Amounts from text with `decimal` as the decimal mark. The other mark ('.' or ',') is
    a thousands separator only where it groups digits by three (1,234.56; 1.234,56):
    '1.5' with --decimal ',' does not parse (it is not read as 15), nor '1,234.56' with
    --decimal ',' (it is not read as 1.23456). What does not parse is a bad row, named."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    thousands = "," if decimal == "." else "."
    d, t = re.escape(decimal), re.escape(thousands)
    grouped = rf"[+-]?\d{{1,3}}(?:{t}\d{{3}})+(?:{d}\d*)?"
    plain = rf"[+-]?(?:\d+(?:{d}\d*)?|{d}\d+)(?:[eE][+-]?\d+)?|[+-]?(?i:inf|infinity)"  # inf: refused as such
    text = values.astype("string").str.strip().str.replace(r"\s", "", regex=True)
    readable = text.str.fullmatch(f"{grouped}|{plain}").fillna(False).astype(bool)
    normal = text.str.replace(thousands, "", regex=False).str.replace(decimal, ".", regex=False)
    return pd.to_numeric(normal.where(readable), errors="coerce").astype(float)


def _bad_row_report(problems: dict[str, pd.Series], path: Path) -> str:
    lines = [f"{path}: rows that cannot be ingested (row numbers count the header as row 1):"]
    for problem, rows in problems.items():
        ex = ", ".join(f"row {i + 2}: {v!r}" for i, v in rows.head(MAX_EXAMPLES).items())
        lines.append(f"  - {problem}: {len(rows)} row(s); e.g. {ex}")
    lines.append("Fix these rows, or pass --skip-bad-rows to leave them out.")
    return "\n".join(lines)


def _customer_ids(values: pd.Series) -> pd.Series:
    """Customer ids as text: whole numbers stored as floats (a Parquet export's 213.0) are
    written as whole numbers, as the source system wrote them."""
    if pd.api.types.is_float_dtype(values) and bool(((values % 1 == 0) | values.isna()).all()):
        return values.astype("Int64").astype("string")
    return values.astype("string").str.strip()


def renamed_twin(column: str) -> str | None:
    """The column pandas renamed `customer.1` is a twin of: `customer` (None for another name)."""
    found = re.fullmatch(r"(.*)\.\d+", column)
    return found.group(1) if found else None


def _refuse_repeated_columns(src: TransactionsSource, header: list[str]) -> None:
    """A header naming a chosen column twice is ambiguous: refused, not the first one taken
    (nor its renamed twin, `customer.1`, accepted)."""
    repeated = {name for name in header if header.count(name) > 1}
    chosen = (src.customer_col, src.date_col, src.amount_col)
    clash = sorted({c for c in chosen if c in repeated or renamed_twin(c) in repeated})
    if clash:
        raise ClmError(f"{src.path}: the header names {', '.join(repr(c) for c in sorted(repeated))} more than once, "
                       f"so column(s) {', '.join(repr(c) for c in clash)} cannot be told apart. Rename the repeated "
                       "columns in the file so that each has its own name.")


def build_tables(src: TransactionsSource) -> tuple[pd.DataFrame, pd.DataFrame, IngestSummary]:
    """Read and clean the export; returns (customers, transactions, summary)."""
    raw, sep, header = _read_raw(src)
    missing = [c for c in (src.customer_col, src.date_col, src.amount_col) if c not in raw.columns]
    if missing:
        raise ClmError(
            f"Column(s) {', '.join(repr(c) for c in missing)} not found in {src.path}. "
            f"Its columns are: {', '.join(repr(c) for c in raw.columns)}. "
            "Name them with --customer-col, --date-col and --amount-col."
        )
    _refuse_repeated_columns(src, header)
    if raw.empty:
        raise ClmError(f"{src.path} has a header and no rows: nothing to ingest.")
    raw = raw.reset_index(drop=True)
    customer = _customer_ids(raw[src.customer_col])
    when = _parse_dates_any(raw[src.date_col], src.date_format, src.date_col)
    amount = _parse_amounts(raw[src.amount_col], src.decimal)
    now = pd.Timestamp.now(tz="UTC")

    problems = {
        f"empty customer id in column '{src.customer_col}'": raw[src.customer_col][customer.isna() | (customer == "")],
        f"customer id with a line break or another control character in column '{src.customer_col}'":
            raw[src.customer_col][customer.str.contains(r"[\x00-\x1f\x7f]", regex=True).fillna(False).astype(bool)],
        f"date that does not parse in column '{src.date_col}'"
        + (f" with format '{src.date_format}'" if src.date_format else ""): raw[src.date_col][when.isna()],
        f"amount that is not a number in column '{src.amount_col}' (decimal mark '{src.decimal}')": raw[src.amount_col][amount.isna()],
        f"negative amount in column '{src.amount_col}'": raw[src.amount_col][amount < 0],
        f"amount that is infinite or implausibly large (>= {MAX_AMOUNT:.0e}) in column '{src.amount_col}'":
            raw[src.amount_col][amount.abs() >= MAX_AMOUNT],
        f"date after today ({now:%Y-%m-%d}) in column '{src.date_col}'": raw[src.date_col][when > now],
        f"date before {src.earliest:%Y-%m-%d} in column '{src.date_col}' (a placeholder for a missing date, such "
        f"as 1900-01-01 or 1970-01-01? If the data goes back that far, pass --earliest-date)":
            raw[src.date_col][when < src.earliest],
    }
    problems = {k: v for k, v in problems.items() if len(v)}
    bad = np.zeros(len(raw), dtype=bool)
    for rows in problems.values():
        bad[rows.index] = True
    if problems and not src.skip_bad_rows:
        raise ClmError(_bad_row_report(problems, src.path))
    good = ~bad
    if not good.any():
        raise ClmError(f"{src.path}: no usable rows (all {len(raw)} rows had problems).")

    transactions = pd.DataFrame({
        "customer_id": customer[good].astype(str).to_numpy(),
        "event_time": when[good].to_numpy(),
        "amount": amount[good].round(2).to_numpy(),
    })
    transactions["event_time"] = pd.to_datetime(transactions["event_time"], utc=True).astype("datetime64[us, UTC]")
    duplicated = transactions.duplicated(["customer_id", "event_time", "amount"])
    if src.drop_duplicates:
        transactions = transactions[~duplicated]
    transactions = transactions.sort_values(["event_time", "customer_id"], kind="stable").reset_index(drop=True)
    transactions.insert(0, "transaction_id", np.arange(len(transactions), dtype=np.int64))
    transactions["kind"] = "purchase"
    transactions["discount"] = 0.0
    transactions["status"] = "paid"
    transactions["plan"] = pd.Series([None] * len(transactions), dtype=object)

    first = transactions.groupby("customer_id", sort=True)["event_time"].min()
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
    summary = IngestSummary(
        rows_read=len(raw),
        rows_written=len(transactions),
        customers=len(customers),
        first_event=transactions["event_time"].min(),
        last_event=transactions["event_time"].max(),
        separator=sep,
        skipped={k: len(v) for k, v in problems.items()},
        duplicates=int(duplicated.sum()),
        duplicates_dropped=src.drop_duplicates,
    )
    return customers, transactions, summary


def ingest_transactions(src: TransactionsSource, workspace: Workspace, replace: bool = False) -> IngestSummary:
    """Write a non-contractual raw workspace from a transactions export, atomically.

    A workspace already holding a business is refused unless replace, which starts it over
    (see `Workspace.writing_raw`)."""
    workspace.check_new_business(replace)  # before reading the file: say it at once
    customers, transactions, summary = build_tables(src)
    start = summary.first_event.normalize()
    end_exclusive = summary.last_event.normalize() + pd.Timedelta(days=1)
    manifest = RawManifest(
        source="ingest",
        business="non_contractual",
        data_start=start.isoformat(),
        data_end=end_exclusive.isoformat(),
        tables=[Table.CUSTOMERS.value, Table.TRANSACTIONS.value],
        details={
            "file": str(src.path),
            "customer_col": src.customer_col,
            "date_col": src.date_col,
            "amount_col": src.amount_col,
            "rows_read": summary.rows_read,
            "rows_skipped": summary.skipped,
        },
    )
    with workspace.writing_raw(replace) as staging:
        customers.to_parquet(staging / f"{Table.CUSTOMERS.value}.parquet", index=False)
        transactions.to_parquet(staging / f"{Table.TRANSACTIONS.value}.parquet", index=False)
        write_manifest(staging, manifest)
        validate_raw_dir(staging, manifest).raise_if_invalid()
        record_valid(staging)
    return summary


def ingest_exported_transactions(simulated: Workspace, export: Path, workspace: Workspace) -> IngestSummary:
    """Export a simulated business's paid transactions to the CSV `export` and ingest it as
    a user would: a transactions-only (non-contractual) workspace whose truth lives on in
    `simulated`. For tests and benchmarks of the real-data path."""
    tx = simulated.read_table(Table.TRANSACTIONS, columns=["customer_id", "event_time", "amount", "status"])
    tx[tx.status == "paid"][["customer_id", "event_time", "amount"]].to_csv(export, index=False)
    return ingest_transactions(TransactionsSource(export, "customer_id", "event_time", "amount"), workspace)
