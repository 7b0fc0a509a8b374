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
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

NAME = "journal.sqlite"
API_PREFIX = "api-"
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_decisions (
    decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, action TEXT NOT NULL, actions TEXT NOT NULL,
    expected_value REAL, reasons TEXT, decided_at TEXT NOT NULL, feature_timestamp TEXT, model_versions TEXT
);
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL, response TEXT NOT NULL, action TEXT, reported_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_decision ON feedback (decision_id);
"""


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


class Journal:
    """The journal of one workspace's decisions folder (created on first write)."""

    def __init__(self, folder: Path):
        self.path = folder / NAME

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(SCHEMA)
            with con:  # one transaction
                yield con
        finally:
            con.close()

    def add_decisions(self, decisions: Sequence[ApiDecision]) -> None:
        if not decisions:
            return
        with self._connect() as con:
            con.executemany(
                "INSERT INTO api_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.decision_id, d.customer_id, d.actions[0], json.dumps(list(d.actions)), float(d.expected_value),
                  json.dumps(list(d.reasons), ensure_ascii=False), d.decided_at.isoformat(),
                  d.feature_timestamp.isoformat(), json.dumps(d.model_versions)) for d in decisions])

    def api_actions(self, decision_id: str) -> list[str] | None:
        """The actions an API decision recommended (best first), None for an unknown id."""
        if not self.path.exists():
            return None
        with self._connect() as con:
            row = con.execute("SELECT actions FROM api_decisions WHERE decision_id = ?", (decision_id,)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def add_feedback(self, decision_id: str, response: str, action: str | None, when: pd.Timestamp) -> None:
        with self._connect() as con:
            con.execute("INSERT INTO feedback VALUES (?, ?, ?, ?)", (decision_id, response, action, when.isoformat()))

    def read(self, table: str) -> pd.DataFrame:
        """A table as a frame (empty when nothing was written); times as UTC timestamps."""
        if table not in ("api_decisions", "feedback"):
            raise ValueError(table)
        if not self.path.exists():
            return pd.DataFrame()
        with self._connect() as con:
            frame = pd.read_sql_query(f"SELECT * FROM {table}", con)
        for column in ("decided_at", "feature_timestamp", "reported_at"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame
