"""The bounds of every number a user gives clm (an option, a setting in a file): one place.

A number outside its bound is a typo or a placeholder (`--horizon-days 999999999`,
`keep_months: .inf`, `--seed -1`); left in, it ends deep inside a library (an overflowing
timedelta, a solver with no solution, a random generator's ValueError) instead of in one
sentence naming the option. The CLI checks options with `Bound.check`; the catalogue's
and the monitor's settings use the same bounds in their pydantic fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from clm.errors import ClmError


@dataclass(frozen=True)
class Bound:
    """Inclusive bounds of a finite number; `example` is a sensible value to suggest."""

    low: float
    high: float
    example: str

    def check(self, value: float, name: str) -> float:
        """`value` if finite and within the bound, else a ClmError naming `name`."""
        if not math.isfinite(value):
            raise ClmError(f"{name} must be a finite number (got {value}); e.g. {self.example}.")
        if not self.low <= value <= self.high:
            raise ClmError(f"{name} {_show(value)} is out of bounds: it must be from {_show(self.low)} to "
                           f"{_show(self.high)}, e.g. {self.example}.")
        return value


def _show(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


# Days ahead a label, an outcome window or a backtest looks: at least a week, at most ten years.
HORIZON_DAYS = Bound(7, 3653, "90")
# Any other span in days (a cooldown, a contact window), and the days one simulation covers.
DAYS = Bound(0, 3653, "30")
# Customers a simulation creates.
CUSTOMERS = Bound(1, 20_000_000, "5000")
# A random seed (numpy takes any non-negative integer; this many are plenty).
SEED = Bound(0, 2**63 - 1, "42")
# Money: a budget, a unit cost (an amount above is no customer's, see clm.contracts).
MONEY = Bound(0, 1e12, "5000")
# A share of something (exploration, a discount).
SHARE = Bound(0, 1, "0.02")
# Months of revenue an outcome is worth (the value rule's keep_months, upgrade_months), bills discounted.
VALUE_MONTHS = Bound(0, 120, "12")
# A count of things in a catalogue: contacts, a daily capacity.
COUNT = Bound(1, 1_000_000_000, "1000")
# Customers scored at a time (--chunk-rows), partitions of a Spark job, the API's worker processes.
CHUNK_ROWS = Bound(1, 1_000_000_000, "100000")
PARTITIONS = Bound(1, 100_000, "16")
WORKERS = Bound(1, 1_000, "2")
# A business weight, a context multiplier.
WEIGHT = Bound(0, 1_000_000, "1.0")
# Seconds between looks for a newly promoted champion (clm serve).
RELOAD_SECONDS = Bound(0.1, 86_400, "5")
# The largest request body the real-time API takes (bytes): from 1 KiB to 1 GiB.
BODY_BYTES = Bound(1024, 1 << 30, "1048576")
# Seconds the real-time API keeps answering after SIGTERM while saying it is not ready.
DRAIN_SECONDS = Bound(0, 3_600, "5")
