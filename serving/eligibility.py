"""The first three steps of the decision funnel: who may get which action, now.

1. eligibility: the catalogue's rules about the customer (consent for the action's
   channel, stage, segment, tenure);
2. applicability: the contact history (the action's cooldown, and the contact policy's
   limit of contacts within a window, across actions);
3. suitability: the models' scores within the action's thresholds (churn and upsell
   probability ranges).

One vectorised implementation over a frame of customers: the nightly batch passes the
whole base, the real-time API a frame of one row, so both give the same answer. `none`
(do nothing) is always allowed. Each step counts what it dropped, per action.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clm.domain import CHANNEL_CONSENT_COLUMN, NO_ACTION
from clm.errors import ClmError
from decisions.catalogue import ActionEntry, Catalogue, Range
from training.models import SMALL_ROWS, Columns, Rows, column

# What the funnel reads about each customer (one row per customer).
CUSTOMER_COLUMNS = ("customer_id", "stage", "segment", "tenure_days", "consent_email", "consent_phone",
                    "churn_probability", "upsell_probability")
# Past contacts: one row per contact (any action but none), with its time.
HISTORY_COLUMNS = ("customer_id", "action", "event_time")
STEPS = ("eligibility", "applicability", "suitability")
NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Contacts:
    """Past contacts as arrays (customer, action, time in nanoseconds since the epoch, UTC):
    what the applicability step reads, converted from a history frame once."""

    customer_id: np.ndarray
    action: np.ndarray
    event_ns: np.ndarray

    @staticmethod
    def of(history: pd.DataFrame) -> "Contacts":
        """From a frame of HISTORY_COLUMNS (a contact without a time never counts)."""
        if history.empty:
            return Contacts(np.zeros(0, dtype=object), np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64))
        times = pd.DatetimeIndex(pd.to_datetime(history["event_time"], utc=True))
        known = ~times.isna()
        return Contacts(history["customer_id"].to_numpy(dtype=object)[known],
                        history["action"].to_numpy(dtype=object)[known], times.as_unit("ns").asi8[known])

    def __len__(self) -> int:
        return len(self.event_ns)

    def take(self, rows: np.ndarray) -> "Contacts":
        return Contacts(self.customer_id[rows], self.action[rows], self.event_ns[rows])


@dataclass
class Allowed:
    """matrix: bool (customers, `names`: every action id, `none` included, in the
    catalogue's order); dropped[step][action]: how many customers that step removed for that
    action (of those still in); steps[step]: bool (customers, contact action ids) of the
    pairs still in after that step. `allowed` and `survivors` give them as frames (on the
    customers' index)."""

    names: list[str]
    matrix: np.ndarray
    dropped: dict[str, dict[str, int]]
    steps: dict[str, np.ndarray]
    index: pd.Index | None = field(default=None)

    @property
    def allowed(self) -> pd.DataFrame:
        return pd.DataFrame(self.matrix, index=self.index, columns=self.names)

    @property
    def survivors(self) -> dict[str, pd.DataFrame]:
        contact = [a for a in self.names if a != NO_ACTION]
        return {step: pd.DataFrame(m, index=self.index, columns=contact) for step, m in self.steps.items()}


def _in_range(values: np.ndarray, bounds: Range | None) -> np.ndarray:
    """Bounds hold; a missing value fails any bound (unknown is not within a range)."""
    if bounds is None:
        return np.ones(len(values), dtype=bool)
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    if bounds.min is not None:
        ok &= v >= bounds.min
    if bounds.max is not None:
        ok &= v <= bounds.max
    return ok


def _flags(values: np.ndarray) -> np.ndarray:
    """Yes/no values as bools, a missing one as no."""
    if values.dtype == bool:
        return values.copy()
    return pd.Series(values).fillna(False).to_numpy(dtype=bool)


def _isin(values: np.ndarray, choices: list[str]) -> np.ndarray:
    """`pd.Series.isin`, by set for a few rows."""
    if len(values) <= SMALL_ROWS:
        wanted = set(choices)
        return np.fromiter((v in wanted for v in values), dtype=bool, count=len(values))
    return pd.Series(values).isin(choices).to_numpy()


def eligible(entry: ActionEntry, customers: Rows) -> np.ndarray:
    """The catalogue's rules about who the customer is, for one action."""
    consent = CHANNEL_CONSENT_COLUMN.get(entry.channel)
    ok = _flags(column(customers, consent)) if consent else np.ones(len(customers), dtype=bool)
    rules = entry.eligibility
    if rules.stages is not None:
        ok &= _isin(column(customers, "stage"), [s.value for s in rules.stages])
    if rules.segments is not None:
        ok &= _isin(column(customers, "segment"), rules.segments)
    ok &= _in_range(column(customers, "tenure_days"), rules.tenure_days)
    return ok


def suitable(entry: ActionEntry, customers: Rows) -> np.ndarray:
    """The action's score thresholds hold for the customer."""
    rules = entry.eligibility
    return (_in_range(column(customers, "churn_probability"), rules.churn_probability)
            & _in_range(column(customers, "upsell_probability"), rules.upsell_probability))


def _groups(ids: np.ndarray, contact_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Customers grouped by id: each customer's group, each contact's (-1: no customer
    given), and the number of groups."""
    if len(ids) <= SMALL_ROWS:
        first: dict[object, int] = {}
        group = np.array([first.setdefault(c, len(first)) for c in ids], dtype=np.int64)
        return group, np.array([first.get(c, -1) for c in contact_ids], dtype=np.int64), len(first)
    codes, uniques = pd.factorize(ids)
    return codes.astype(np.int64), pd.Index(uniques).get_indexer(contact_ids).astype(np.int64), len(uniques)


def _contacts(history: pd.DataFrame | Contacts) -> Contacts:
    return history if isinstance(history, Contacts) else Contacts.of(history)


def contact_counts(history: pd.DataFrame | Contacts, customers: np.ndarray | pd.Series, now: pd.Timestamp,
                   days: int, grouped: tuple[np.ndarray, np.ndarray, int] | None = None) -> np.ndarray:
    """Contacts (any action but none) of each customer in the `days` days before now."""
    contacts, ids = _contacts(history), np.asarray(customers, dtype=object)
    if not len(contacts):
        return np.zeros(len(ids), dtype=int)
    group, of_contact, size = grouped or _groups(ids, contacts.customer_id)
    t, end = contacts.event_ns, now.value
    recent = (t > end - days * NS_PER_DAY) & (t <= end) & (contacts.action != NO_ACTION) & (of_contact >= 0)
    return np.bincount(of_contact[recent], minlength=size)[group]


def days_since(history: pd.DataFrame | Contacts, customers: np.ndarray | pd.Series, action: str, now: pd.Timestamp,
               grouped: tuple[np.ndarray, np.ndarray, int] | None = None) -> np.ndarray:
    """Days since each customer last got `action` before now (inf if never)."""
    contacts, ids = _contacts(history), np.asarray(customers, dtype=object)
    if not len(contacts):
        return np.full(len(ids), np.inf)
    group, of_contact, size = grouped or _groups(ids, contacts.customer_id)
    end = now.value
    past = (contacts.action == action) & (contacts.event_ns <= end) & (of_contact >= 0)
    last = np.full(size, np.iinfo(np.int64).min)
    np.maximum.at(last, of_contact[past], contacts.event_ns[past])
    seen = np.zeros(size, dtype=bool)
    seen[of_contact[past]] = True
    days = np.where(seen, (end - last) / 1e9 / 86_400, np.inf)
    return days[group]


def allowed_actions(catalogue: Catalogue, customers: Rows, history: pd.DataFrame | Contacts,
                    now: pd.Timestamp) -> Allowed:
    """Which actions each customer may get at `now`, and what each step dropped. customers:
    a DataFrame or `Columns`; history: a frame of HISTORY_COLUMNS, or `Contacts`."""
    given: list[tuple[str, list[str], tuple[str, ...]]] = [("customers", list(customers.columns), CUSTOMER_COLUMNS)]
    if not isinstance(history, Contacts):
        given.append(("history", list(history.columns), HISTORY_COLUMNS))
    for name, columns, needed in given:
        missing = [c for c in needed if c not in columns]
        if missing:
            raise ClmError(f"The {name} given to the decision funnel lack column(s) {', '.join(missing)} "
                           f"(needed: {', '.join(needed)}).")
    contacts = _contacts(history)
    ids = column(customers, "customer_id")
    n = len(customers)
    grouped = _groups(np.asarray(ids, dtype=object), contacts.customer_id) if len(contacts) else None
    policy = catalogue.contact_policy
    under_limit = contact_counts(contacts, ids, now, policy.window_days, grouped) < policy.max_contacts
    names = [entry.id for entry in catalogue.actions]
    matrix = np.ones((n, len(names)), dtype=bool)
    contact = [j for j, name in enumerate(names) if name != NO_ACTION]
    dropped: dict[str, dict[str, int]] = {step: {} for step in STEPS}
    steps = {step: np.zeros((n, len(contact)), dtype=bool) for step in STEPS}
    for k, j in enumerate(contact):
        entry, name = catalogue.actions[j], names[j]
        ok = eligible(entry, customers)
        dropped["eligibility"][name] = int((~ok).sum())
        steps["eligibility"][:, k] = ok
        applicable = under_limit & (days_since(contacts, ids, name, now, grouped) >= entry.cooldown_days)
        dropped["applicability"][name] = int((ok & ~applicable).sum())
        ok &= applicable
        steps["applicability"][:, k] = ok
        fits = suitable(entry, customers)
        dropped["suitability"][name] = int((ok & ~fits).sum())
        matrix[:, j] = ok & fits
        steps["suitability"][:, k] = matrix[:, j]
    return Allowed(names, matrix, dropped, steps, None if isinstance(customers, Columns) else customers.index)
