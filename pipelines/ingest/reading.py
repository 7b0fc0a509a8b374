"""Reading an export: a delimited text (compressed or not) or Parquet file as text columns,
and the values every table shares read from text: ids, dates (UTC), amounts and numbers.

What cannot be read is named, with the file, the column and example rows; the tables'
own rules (which columns, which values) are in `pipelines.ingest.tables`.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd

from clm.errors import ClmError
from clm.files import check_path_length

SEPARATORS = {",": ",", ";": ";", "tab": "\t", "\\t": "\t", "whitespace": r"\s+"}
SNIFF_LINES = 50
MAX_EXAMPLES = 5
# Purchases before this day are taken for placeholders (1900-01-01, 1970-01-01: an empty
# date in many systems' exports) unless --earliest-date says the data goes back further.
EARLIEST_PLAUSIBLE = pd.Timestamp("1990-01-01", tz="UTC")


@dataclass(frozen=True)
class ReadOptions:
    """How to read one export file (every table alike)."""

    date_format: str | None = None  # strptime format, e.g. "%d/%m/%Y"; inferred if None
    sep: str | None = None  # ",", ";", "tab" or "whitespace"; detected if None
    decimal: str = "."
    skip_bad_rows: bool = False
    encoding: str = "utf-8-sig"  # of text files; e.g. "latin-1" for older spreadsheet exports
    drop_duplicates: bool = False  # leave out rows identical in every column read
    earliest: pd.Timestamp = EARLIEST_PLAUSIBLE  # an event before it is a placeholder date


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


def read_export(path: Path, src: ReadOptions) -> tuple[pd.DataFrame, str | None, list[str]]:
    """The export as text columns, its separator, and its header's names as written
    (pandas renames a repeated name, `customer` to `customer.1`)."""
    path = check_path_length(path, "The export")
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


def _parse_text_dates(values: pd.Series, date_format: str | None, column: str) -> pd.Series:
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


def parse_dates(values: pd.Series, date_format: str | None, column: str) -> pd.Series:
    """Dates from text, or already-typed datetimes (Parquet), as UTC."""
    if pd.api.types.is_datetime64_any_dtype(values):
        s = pd.to_datetime(values)
        return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    try:
        return _parse_text_dates(values, date_format, column)
    except (ValueError, TypeError) as err:
        raise ClmError(f"--date-format '{date_format}' is not a valid format: {err}") from err


def parse_numbers(values: pd.Series, decimal: str) -> pd.Series:
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
    stripped = values.astype("string").str.strip()
    # Spaces inside a number group its digits by three (1 234,56); others make it text: a phone
    # number (+44 20 7946 0958) is not read as 442079460958.
    spaced = stripped.str.contains(r"\s", regex=True).fillna(False).astype(bool)
    by_three = stripped.str.fullmatch(rf"[+-]?\d{{1,3}}(?:[\s{t}]\d{{3}})+(?:{d}\d*)?").fillna(False).astype(bool)
    text = stripped.str.replace(r"\s", "", regex=True)
    readable = text.str.fullmatch(f"{grouped}|{plain}").fillna(False).astype(bool) & (~spaced | by_three)
    normal = text.str.replace(thousands, "", regex=False).str.replace(decimal, ".", regex=False)
    # astype(float) reads each number correctly rounded (pd.to_numeric's fast parser may be one
    # unit in the last place off): an export written with full precision reads back exactly.
    return normal.where(readable).astype("float64").astype(float)


def bad_row_report(problems: dict[str, pd.Series], path: Path, table: str) -> str:
    lines = [f"{path} ({table}): rows that cannot be ingested (row numbers count the header as row 1):"]
    for problem, rows in problems.items():
        ex = ", ".join(f"row {i + 2}: {v!r}" for i, v in rows.head(MAX_EXAMPLES).items())
        lines.append(f"  - {problem}: {len(rows)} row(s); e.g. {ex}")
    lines.append("Fix these rows, or pass --skip-bad-rows to leave them out.")
    return "\n".join(lines)


def parse_ids(values: pd.Series) -> pd.Series:
    """Customer ids as text: whole numbers stored as floats (a Parquet export's 213.0) are
    written as whole numbers, as the source system wrote them."""
    if pd.api.types.is_float_dtype(values) and bool(((values % 1 == 0) | values.isna()).all()):
        return values.astype("Int64").astype("string")
    return values.astype("string").str.strip()


def renamed_twin(column: str) -> str | None:
    """The column pandas renamed `customer.1` is a twin of: `customer` (None for another name)."""
    found = re.fullmatch(r"(.*)\.\d+", column)
    return found.group(1) if found else None


def refuse_repeated_columns(path: Path, header: list[str], chosen: list[str]) -> None:
    """A header naming a chosen column twice is ambiguous: refused, not the first one taken
    (nor its renamed twin, `customer.1`, accepted)."""
    repeated = {name for name in header if header.count(name) > 1}
    clash = sorted({c for c in chosen if c in repeated or renamed_twin(c) in repeated})
    if clash:
        raise ClmError(f"{path}: the header names {', '.join(repr(c) for c in sorted(repeated))} more than once, "
                       f"so column(s) {', '.join(repr(c) for c in clash)} cannot be told apart. Rename the repeated "
                       "columns in the file so that each has its own name.")
