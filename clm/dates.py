"""The one reader of a day given on the command line (`--as-of`, `--start`, `--end`, ...).

A day is written the ISO way, `YYYY-MM-DD`, and nothing else: `01/06/2025` is 1 June in
one country and 6 January in the next, and a time (`2025-06-01T12:00`) would be dropped
without a word, so both are refused with what to write instead. A day is midnight UTC.
"""
from __future__ import annotations

import re
from datetime import date

import pandas as pd

from clm.errors import ClmError

ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Days clm can hold (pandas' nanosecond timestamps end in 2262) and that make sense for
# customer data; a day outside is a typo (0202-06-01) or a placeholder (0001-01-01).
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)
SLASHED = re.compile(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})")


def parse_day(text: str, option: str) -> pd.Timestamp:
    """`text` as a calendar day (midnight UTC); a ClmError naming `option` and saying
    what to write otherwise."""
    value = str(text).strip()
    if not ISO_DAY.fullmatch(value):
        raise ClmError(f"{option} '{text}' is not a day written YYYY-MM-DD{_hint(value)}.")
    try:
        day = date.fromisoformat(value)
    except ValueError as err:
        raise ClmError(f"{option} '{text}' is not a day of the calendar ({err}); write YYYY-MM-DD, "
                       "e.g. 2025-06-01.") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ClmError(f"{option} {value} is outside the days clm handles ({FIRST_DAY} to {LAST_DAY}): a typo in "
                       "the year?")
    return pd.Timestamp(day, tz="UTC")


def _hint(value: str) -> str:
    """What to write instead, when the text says it."""
    if ISO_DAY.match(value):  # a day followed by a time or anything else
        return f" alone: write {value[:10]} (a day has no time; clm's days start at 00:00 UTC)"
    slashed = SLASHED.fullmatch(value)
    if slashed:
        a, b, year = slashed.groups()
        readings = sorted({f"{year}-{int(m):02d}-{int(d):02d}" for d, m in ((a, b), (b, a)) if int(m) <= 12})
        if len(readings) == 2:
            return f": it reads as {readings[0]} or {readings[1]} depending on the country; write the one you mean"
        if readings:
            return f": write {readings[0]}"
    return ", e.g. 2025-06-01"
