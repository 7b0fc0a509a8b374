"""Turn the simulation's column arrays into the raw tables of the workspace contract."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clm.domain import TICKET_SEVERITIES, Table
from simulator.engine import SECONDS_PER_DAY, SimulationOutput

# The tables the simulator writes: all but a business's attribute history (its customers
# have no attributes of their own).
SIMULATED_TABLES: tuple[Table, ...] = tuple(t for t in Table if t is not Table.ATTRIBUTE_HISTORY)


class _NoRows(dict[str, np.ndarray]):
    def __missing__(self, key: str) -> np.ndarray:
        return np.zeros(0, dtype=object)


UTC_MICROS = pa.timestamp("us", tz="UTC")
MICROS = 1_000_000


def customer_ids(n: int) -> pa.Array:
    width = max(7, len(str(n)))
    return pa.array([f"C{i + 1:0{width}d}" for i in range(n)], type=pa.string())


class TableBuilder:
    """Shared conversions for one simulation output."""

    def __init__(self, out: SimulationOutput):
        self.out = out
        self.ids = customer_ids(out.config.n_customers)
        self.start_us = int(out.config.start.value // 1000)
        p = out.config.params
        self.plan_names = np.array([pl.name for pl in p.plans], dtype=object)

    def _columns(self, name: str) -> Mapping[str, np.ndarray]:
        """A table's columns; a table with no rows yields empty columns."""
        return self.out.tables.get(name) or _NoRows()

    def cust(self, idx: np.ndarray) -> pa.Array:
        return self.ids.take(pa.array(idx.astype(np.int64)))

    def time(self, day: np.ndarray, second: np.ndarray | None = None) -> pa.Array:
        secs = day.astype(np.int64) * SECONDS_PER_DAY + (0 if second is None else second.astype(np.int64))
        return pa.array(self.start_us + secs * MICROS, type=pa.int64()).cast(UTC_MICROS)

    def date(self, day: np.ndarray) -> pa.Array:
        epoch_days = int(self.out.config.start.value // (86_400 * 10**9))
        return pa.array((epoch_days + day).astype(np.int32), type=pa.int32()).cast(pa.date32())

    def customers(self) -> pa.Table:
        c, p = self.out.customers, self.out.config.params
        return pa.table({
            "customer_id": self.ids,
            "signup_time": self.time(c["signup_day"], c["signup_second"]),
            "acquisition_channel": pa.array(np.asarray(p.channels, dtype=object)[c["channel"]], pa.string()),
            "segment": pa.array(np.asarray(p.segments, dtype=object)[c["segment"]], pa.string()),
            "region": pa.array(np.asarray(p.regions, dtype=object)[c["region"]], pa.string()),
            "consent_email": pa.array(c["consent_email"]),
            "consent_phone": pa.array(c["consent_phone"]),
        })

    def consents(self) -> pa.Table:
        """The consent log a CRM keeps: each consent the customer gave, at signup."""
        c = self.out.customers
        signup = self.time(c["signup_day"], c["signup_second"])
        parts = []
        for channel in ("email", "phone"):
            given = np.flatnonzero(c[f"consent_{channel}"])
            parts.append(pa.table({
                "customer_id": self.ids.take(pa.array(given.astype(np.int64))),
                "event_time": signup.take(pa.array(given.astype(np.int64))),
                "channel": pa.array([channel] * given.size, pa.string()),
                "granted": pa.array(np.ones(given.size, dtype=bool)),
            }))
        return pa.concat_tables(parts)

    def subscriptions(self) -> pa.Table:
        s = self._columns("subscriptions")
        return pa.table({
            "customer_id": self.cust(s["cust"]),
            "event_time": self.time(s["day"], s["second"]),
            "event": pa.array(s["event"], pa.string()),
            "plan": pa.array(self.plan_names[s["tier"]], pa.string()),
            "price": pa.array(s["price"], pa.float64()),
        })

    def transactions(self) -> pa.Table:
        t = self._columns("transactions")
        return pa.table({
            "transaction_id": pa.array(np.arange(t["cust"].size, dtype=np.int64)),
            "customer_id": self.cust(t["cust"]),
            "event_time": self.time(t["day"], t["second"]),
            "kind": pa.array(t["kind"], pa.string()),
            "amount": pa.array(np.round(t["amount"], 2), pa.float64()),
            "discount": pa.array(np.round(t["discount"], 2), pa.float64()),
            "status": pa.array(t["status"], pa.string()),
            "plan": pa.array(self.plan_names[t["tier"]], pa.string()),
        })

    def usage(self) -> pa.Table:
        u = self._columns("usage")
        return pa.table({
            "customer_id": self.cust(u["cust"]),
            "event_time": self.time(u["day"]),
            "sessions": pa.array(u["sessions"].astype(np.int32)),
            "features_used": pa.array(u["features_used"].astype(np.int32)),
            "active_minutes": pa.array(u["active_minutes"].astype(np.float64)),
        })

    def tickets(self) -> pa.Table:
        t = self._columns("tickets")
        n = t["ticket"].size
        resolved_us = np.zeros(n, dtype=np.int64)
        resolved = np.zeros(n, dtype=bool)
        csat = np.full(n, np.nan)
        r = self.out.tables.get("ticket_resolutions")
        if r:
            resolved[r["ticket"]] = True
            resolved_us[r["ticket"]] = self.start_us + (r["day"] * SECONDS_PER_DAY + r["second"]) * MICROS
            csat[r["ticket"]] = r["csat"]
        return pa.table({
            "ticket_id": pa.array(t["ticket"].astype(np.int64)),
            "customer_id": self.cust(t["cust"]),
            "event_time": self.time(t["day"], t["second"]),
            "severity": pa.array(np.asarray(TICKET_SEVERITIES, dtype=object)[t["severity"]], pa.string()),
            "resolved_time": pa.array(resolved_us, mask=~resolved).cast(UTC_MICROS),
            "csat": pa.array(csat, from_pandas=True),
        })

    def nps(self) -> pa.Table:
        t = self._columns("nps")
        return pa.table({
            "customer_id": self.cust(t["cust"]),
            "event_time": self.time(t["day"], t["second"]),
            "score": pa.array(t["score"].astype(np.int32)),
        })

    def referrals(self) -> pa.Table:
        t = self._columns("referrals")
        return pa.table({
            "referral_id": pa.array(np.arange(t["cust"].size, dtype=np.int64)),
            "customer_id": self.cust(t["cust"]),
            "event_time": self.time(t["day"], t["second"]),
            "converted": pa.array(t["converted"], pa.bool_()),
        })

    def actions(self) -> pa.Table:
        t = self._columns("actions")
        return pa.table({
            "decision_id": pa.array(t["decision"].astype(np.int64)),
            "customer_id": self.cust(t["cust"]),
            "event_time": self.time(t["day"], t["second"]),
            "action": pa.array(t["action"], pa.string()),
            "channel": pa.array(t["channel"], pa.string()),
            "propensity": pa.array(t["propensity"], pa.float64()),
            "is_control": pa.array(t["action"] == "none", pa.bool_()),
        })

    def ground_truth(self) -> pa.Table:
        t = self._columns("ground_truth")
        return pa.table({
            "customer_id": self.cust(t["cust"]),
            "snapshot_date": self.date(t["day"]),
            "p_churn_30d": pa.array(t["p_churn_30d"], from_pandas=True),
            "p_churn_90d": pa.array(t["p_churn_90d"], from_pandas=True),
            "p_upgrade_30d": pa.array(t["p_upgrade_30d"], from_pandas=True),
            "p_upgrade_90d": pa.array(t["p_upgrade_90d"], from_pandas=True),
            "stage": pa.array(t["stage"], pa.string()),
        })

    def ground_truth_effects(self) -> pa.Table:
        t = self._columns("ground_truth_effects")
        return pa.table({
            "customer_id": self.cust(t["cust"]),
            "snapshot_date": self.date(t["day"]),
            "action": pa.array(t["action"], pa.string()),
            "effect_churn_90d": pa.array(t["effect_churn"], pa.float64()),
            "effect_upgrade_90d": pa.array(t["effect_upgrade"], pa.float64()),
        })


def write_table(table: pa.Table, path: Path) -> None:
    """Deterministic Parquet: same table, same bytes."""
    pq.write_table(table, path, compression="zstd", row_group_size=1_000_000, write_statistics=True)


def write_all(out: SimulationOutput, raw_dir: Path) -> dict[str, int]:
    """Write every raw table into raw_dir; returns rows per table."""
    builder = TableBuilder(out)
    rows: dict[str, int] = {}
    for table in SIMULATED_TABLES:
        arrow = getattr(builder, table.value)()
        write_table(arrow, raw_dir / f"{table.value}.parquet")
        rows[table.value] = arrow.num_rows
        out.tables.release(table.value)
        if table is Table.TICKETS:
            out.tables.release("ticket_resolutions")
    return rows
