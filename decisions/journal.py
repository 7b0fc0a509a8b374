"""The append-only journal of what happens one call at a time: every decision the API
returns, and every feedback a CRM reports (for the API's decisions and the batch's). One
SQLite file, WORKSPACE/decisions/journal.sqlite (write-ahead log: a writer does not block
readers, several service workers append at once), so a call adds a row, never a file, and
reading it back stays fast however many calls there were.

  api_decisions  decision_id (`api-<32 hex>`, unique), customer_id, action (the first
                 recommended), actions (JSON list of every recommended id, best first),
                 expected_value, reasons (JSON), decided_at, feature_timestamp,
                 model_versions (JSON)
  feedback       decision_id, response (accepted | rejected), action (the one the CRM
                 acted on; null: the decision's first), reported_at

The API's decisions are recommendations the caller may or may not act on, without
exploration: they are kept for feedback and audit, and are not contacts nor training
rows (the batch's log is: `decisions.log`).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clm.errors import ClmError
from clm.files import checkpoint_fully

NAME = "journal.sqlite"
API_PREFIX = "api-"
# Consent changes a CRM sends to the API (`POST /consent`): honoured by the API's next
# answer and the next batch (`serving.scoring.consents_of`). Added to a journal made before.
CONSENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    customer_id TEXT NOT NULL, channel TEXT NOT NULL, granted INTEGER NOT NULL, reported_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consents_by_customer ON consents (customer_id);
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_decisions (
    decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, action TEXT NOT NULL, actions TEXT NOT NULL,
    expected_value REAL, reasons TEXT, decided_at TEXT NOT NULL, feature_timestamp TEXT, model_versions TEXT
);
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL, response TEXT NOT NULL, action TEXT, reported_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_decision ON feedback (decision_id);
""" + CONSENTS_SCHEMA


def new_decision_id() -> str:
    return API_PREFIX + uuid.uuid4().hex


@dataclass(frozen=True)
class ApiDecision:
    decision_id: str
    customer_id: str
    actions: Sequence[str]  # recommended, best first (at least one: `none` when nothing pays)
    expected_value: float
    reasons: Sequence[str]
    decided_at: pd.Timestamp
    feature_timestamp: pd.Timestamp
    model_versions: dict[str, str | None]


class JournalUnavailable(ClmError):
    """The journal cannot be read or written (a read-only workspace, a full disk, a lock held
    too long)."""


class Journal:
    """The journal of one workspace's decisions folder, created by `ensure` (the API calls it
    at start; a write calls it when the file is missing)."""

    def __init__(self, folder: Path):
        self.path = folder / NAME
        # Each thread keeps its write connection open (an open per call was ~1.4 ms of every API
        # answer), with the identity of the file it opened: a replaced or removed file, or an
        # error, opens a new one.
        self._kept = threading.local()

    def ensure(self) -> None:
        """Create the file with its tables in write-ahead mode, whole: built beside it and
        linked into place, so that a process that finds the file finds it complete (workers
        starting together race here; the first link wins, the others' copies are dropped)."""
        if self.path.exists():
            return
        tmp = self.path.with_name(f"{NAME}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(tmp)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)
            finally:
                con.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process's journal is in place
        except (sqlite3.Error, OSError) as err:
            raise JournalUnavailable(f"The decision journal {self.path} cannot be set up: {err}.") from err
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _writer(self) -> sqlite3.Connection:
        """This thread's write connection, opened again if the file is not the one it opened."""
        if not self.path.exists():
            self.ensure()
        try:
            stat = self.path.stat()
        except OSError as err:
            raise JournalUnavailable(f"The decision journal {self.path} cannot be opened: {err}.") from err
        identity = (stat.st_dev, stat.st_ino)
        kept: tuple[sqlite3.Connection, tuple[int, int]] | None = getattr(self._kept, "writer", None)
        if kept is not None and kept[1] == identity:
            return kept[0]
        self._drop_writer()
        try:
            con = sqlite3.connect(self.path, timeout=30, check_same_thread=True)
            con.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as err:
            raise JournalUnavailable(f"The decision journal {self.path} cannot be opened: {err}.") from err
        self._kept.writer = (con, identity)
        return con

    def _drop_writer(self) -> None:
        kept = getattr(self._kept, "writer", None)
        self._kept.writer = None
        if kept is not None:
            kept[0].close()

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction (a write: this thread's kept one; a read: its own);
        any SQLite or file error is JournalUnavailable."""
        if write:
            con = self._writer()
        else:
            try:
                con = sqlite3.connect(f"file:{self.path}?mode=ro", timeout=30, uri=True)
            except sqlite3.Error as err:
                raise JournalUnavailable(f"The decision journal {self.path} cannot be opened: {err}.") from err
        try:
            with con:  # one transaction
                yield con
        except sqlite3.Error as err:
            if write:
                self._drop_writer()  # the next write opens afresh
            raise JournalUnavailable(f"The decision journal {self.path} cannot be {'written' if write else 'read'}: "
                                     f"{err}.") from err
        finally:
            if not write:
                con.close()

    def add_decisions(self, decisions: Sequence[ApiDecision]) -> None:
        if not decisions:
            return
        with self._connect(write=True) as con:
            con.executemany(
                "INSERT INTO api_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.decision_id, d.customer_id, d.actions[0], json.dumps(list(d.actions)), float(d.expected_value),
                  json.dumps(list(d.reasons), ensure_ascii=False), d.decided_at.isoformat(),
                  d.feature_timestamp.isoformat(), json.dumps(d.model_versions)) for d in decisions])

    def forget(self, customer_ids: Sequence[str]) -> int:
        """Remove customers' API decisions and the feedback on any of their decisions (the
        API's, and the batch's, whose ids name the customer: `<YYYYMMDD>-<id>`); returns the
        rows removed. Deleted bytes are zeroed, the file rebuilt without them (VACUUM) and
        the write-ahead log emptied into it."""
        if not self.path.exists() or not customer_ids:
            return 0
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA secure_delete = ON")
            con.execute("CREATE TEMP TABLE forgotten (customer_id TEXT PRIMARY KEY)")
            con.executemany("INSERT OR IGNORE INTO forgotten VALUES (?)", [(c,) for c in customer_ids])
            con.execute("BEGIN IMMEDIATE")
            removed = con.execute(
                "DELETE FROM feedback WHERE decision_id IN (SELECT decision_id FROM api_decisions WHERE customer_id IN "
                "(SELECT customer_id FROM forgotten)) OR substr(decision_id, 10) IN (SELECT customer_id FROM forgotten)"
            ).rowcount
            removed += con.execute(
                "DELETE FROM api_decisions WHERE customer_id IN (SELECT customer_id FROM forgotten)").rowcount
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'consents'").fetchone() is not None:
                removed += con.execute(
                    "DELETE FROM consents WHERE customer_id IN (SELECT customer_id FROM forgotten)").rowcount
            con.execute("COMMIT")
            con.execute("DROP TABLE forgotten")
            con.execute("VACUUM")
            checkpoint_fully(con, self.path)
        except sqlite3.Error as err:
            raise JournalUnavailable(f"The decision journal {self.path} cannot be written: {err}.") from err
        finally:
            con.close()
        return removed

    def add_consent(self, customer_id: str, channel: str, granted: bool, when: pd.Timestamp) -> None:
        with self._connect(write=True) as con:
            for statement in filter(str.strip, CONSENTS_SCHEMA.split(";")):
                con.execute(statement)
            con.execute("INSERT INTO consents VALUES (?, ?, ?, ?)", (customer_id, channel, int(granted), when.isoformat()))

    def last_consent(self) -> int:
        """The number of the latest consent change received (0: none)."""
        if not self.path.exists():
            return 0
        with self._connect(write=False) as con:
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'consents'").fetchone() is None:
                return 0
            return int(con.execute("SELECT coalesce(max(rowid), 0) FROM consents").fetchone()[0])

    def consents(self, customer_ids: Sequence[str] | None = None, after: int = 0) -> pd.DataFrame:
        """Consent changes sent to the API (customer_id, channel, granted, reported_at), in
        the order received, those after change number `after`; only those of `customer_ids`
        when given (the API's hot path: one indexed lookup)."""
        columns = ["customer_id", "channel", "granted", "reported_at"]
        if not self.path.exists():
            return pd.DataFrame(columns=columns)
        # A few customers (an API answer): this thread's kept connection, not a new one per answer.
        with self._connect(write=customer_ids is not None) as con:
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'consents'").fetchone() is None:
                return pd.DataFrame(columns=columns)
            if customer_ids is None:
                rows = con.execute("SELECT * FROM consents WHERE rowid > ? ORDER BY rowid", (after,)).fetchall()
            else:
                ids = list(customer_ids)
                rows = con.execute(f"SELECT * FROM consents WHERE customer_id IN ({','.join('?' * len(ids))}) "
                                   "AND rowid > ? ORDER BY rowid", [*ids, after]).fetchall()
        frame = pd.DataFrame(rows, columns=columns)
        frame["granted"] = frame["granted"].astype(bool)
        frame["reported_at"] = pd.to_datetime(frame["reported_at"], utc=True, format="ISO8601")
        return frame

    def api_actions(self, decision_id: str) -> list[str] | None:
        """The actions an API decision recommended (best first), None for an unknown id."""
        if not self.path.exists():
            return None
        with self._connect(write=False) as con:
            row = con.execute("SELECT actions FROM api_decisions WHERE decision_id = ?", (decision_id,)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def add_feedback(self, decision_id: str, response: str, action: str | None, when: pd.Timestamp) -> None:
        with self._connect(write=True) as con:
            con.execute("INSERT INTO feedback VALUES (?, ?, ?, ?)", (decision_id, response, action, when.isoformat()))

    def read(self, table: str) -> pd.DataFrame:
        """A table as a frame (empty when nothing was written); times as UTC timestamps."""
        if table not in ("api_decisions", "feedback"):
            raise ValueError(table)
        if not self.path.exists():
            return pd.DataFrame()
        with self._connect(write=False) as con:
            frame = pd.read_sql_query(f"SELECT * FROM {table}", con)
        for column in ("decided_at", "feature_timestamp", "reported_at"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame
