"""The decision log: every decision clm made, what became of it, and the exploration that
keeps effects learnable. An append-only Parquet dataset in the workspace:

  WORKSPACE/decisions/batch-<YYYY-MM-DD>.parquet   the nightly batch's decisions for a date
  WORKSPACE/decisions/journal.sqlite                the API's decisions, and every feedback
                                                    (accepted / rejected, as a CRM reports it:
                                                    `decisions.journal`)

A decision row: decision_id (`<YYYYMMDD>-<customer_id>`), customer_id, action, propensity (the
probability that clm's decision process chose it: below 1 only where exploration could
have changed it), explored, expected_value, reasons (JSON list of strings), decided_at,
source. A batch file for a date is written whole and renamed in, so rerunning a date
replaces it with the same decisions (same ids) instead of adding duplicates; every other
write adds a file. Outcomes are not stored: they mature later and are read from the raw
tables like every label (`with_outcomes`), and the uplift models retrain on these
decisions with their propensities (`training.uplift.decision_rows`).

Exploration: a share of the decisions (default 2%) is replaced by a uniformly random
allowed action that capacity and budget still permit, `none` included (the control group
of clm's own decisions); the logged propensity is the probability of the action taken
under that process as it ran (`explore`).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clm.domain import NO_ACTION
from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.journal import API_PREFIX, Journal

FOLDER = "decisions"
COLUMNS = ("decision_id", "customer_id", "action", "propensity", "explored", "expected_value", "reasons",
           "decided_at", "source")
FEEDBACK_COLUMNS = ("decision_id", "response", "action", "reported_at")
RESPONSES = ("accepted", "rejected")
DEFAULT_EXPLORATION = 0.02


def log_dir(workspace: Workspace) -> Path:
    return workspace.root / FOLDER


def explore(choice: np.ndarray, allowed: np.ndarray, share: float, rng: np.random.Generator,
            spare: np.ndarray | None = None, cost: np.ndarray | None = None,
            budget_left: float = np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exploration over one batch. choice: index of clm's action per customer (-1 = none);
    allowed: (customers, actions) bool; spare: per action, how many more the capacities
    allow (inf where unlimited); cost: (customers, actions), with budget_left what the
    budget has left after clm's choices. Customers are taken in order; an explored one gets
    a uniformly random option among none, its own choice and the allowed actions that
    capacity and budget still permit then (its own choice's cost given back), and uses them
    up. Returns (final choice, its propensity, explored mask). The propensity is the
    probability of the final action under this process as it ran, given the customers
    before: (1 - share) 1[final = choice] + share / (the options at that point), for the
    explored and the others alike (whose options are counted at the state they were
    passed in: it changes only at an explored customer)."""
    n: int
    k: int
    n, k = allowed.shape
    spare = np.full(k, np.inf) if spare is None else spare.astype(float).copy()
    cost = np.zeros((n, k)) if cost is None else cost
    explored = rng.random(n) < share
    final = choice.copy()
    options_count = np.ones(n)
    start = 0
    for i in [*np.flatnonzero(explored), n]:
        passed = slice(start, i)  # not explored: their options at the current state, counted at once
        options_count[passed] = _options(allowed[passed], choice[passed], cost[passed], spare, budget_left).sum(axis=1)
        if i == n:
            break
        options = _options(allowed[i:i + 1], choice[i:i + 1], cost[i:i + 1], spare, budget_left)[0]
        options_count[i] = options.sum()
        at = np.flatnonzero(options)  # column 0: none
        final[i] = at[rng.integers(len(at))] - 1
        own = cost[i, choice[i]] if choice[i] >= 0 else 0.0
        budget_left += own - (cost[i, final[i]] if final[i] >= 0 else 0.0)
        if choice[i] >= 0:
            spare[choice[i]] += 1
        if final[i] >= 0:
            spare[final[i]] -= 1
        start = i + 1
    propensity = (1 - share) * (final == choice) + share / options_count
    return final, propensity, explored


def _options(allowed: np.ndarray, choice: np.ndarray, cost: np.ndarray, spare: np.ndarray,
             budget_left: float) -> np.ndarray:
    """(customers, 1 + actions) bool: what an explored customer could draw at this state:
    none (column 0), its own choice, and each allowed action capacity and budget permit
    (its own choice's cost given back)."""
    rows = np.arange(len(choice))
    own = np.where(choice >= 0, cost[rows, np.maximum(choice, 0)], 0.0) if cost.shape[1] else np.zeros(len(choice))
    fits = allowed & (spare >= 1)[None, :] & (cost <= budget_left + own[:, None])
    fits[rows[choice >= 0], choice[choice >= 0]] = True
    return np.column_stack([np.ones(len(choice), dtype=bool), fits])


def batch_path(workspace: Workspace, as_of: pd.Timestamp) -> Path:
    return log_dir(workspace) / f"batch-{as_of:%Y-%m-%d}.parquet"


def batch_decision_id(as_of: pd.Timestamp, customer_id: str) -> str:
    """The batch's decision id of a customer at a date: `<YYYYMMDD>-<customer_id>`."""
    return f"{as_of.year:04d}{as_of.month:02d}{as_of.day:02d}-{customer_id}"


BATCH_ID = re.compile(r"(\d{4})(\d{2})(\d{2})-(.+)")


def batch_rows(as_of: pd.Timestamp, decisions: pd.DataFrame) -> pd.DataFrame:
    """A batch's decisions for as_of as decision-log rows (COLUMNS)."""
    return decisions.assign(
        decision_id=[batch_decision_id(as_of, c) for c in decisions["customer_id"]], decided_at=as_of, source="batch",
    )[list(COLUMNS)]


class BatchLog:
    """A batch's decisions for a date, added chunk by chunk to a temporary file and renamed
    in as WORKSPACE/decisions/batch-<date>.parquet on commit: a rerun of the date replaces
    its file, and a killed run leaves the earlier one (its leftover is removed next time)."""

    def __init__(self, workspace: Workspace, as_of: pd.Timestamp):
        self.as_of = as_of
        self.path = batch_path(workspace, as_of)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.path.parent.glob(f"{self.path.name}.tmp-*"):
            stale.unlink(missing_ok=True)
        self.tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}")
        self.writer: pq.ParquetWriter | None = None

    def add(self, decisions: pd.DataFrame) -> None:
        """decisions: customer_id, action, propensity, explored, expected_value, reasons (a
        chunk without any is skipped)."""
        if decisions.empty:
            return
        table = pa.Table.from_pandas(batch_rows(self.as_of, decisions), preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))

    def commit(self) -> Path:
        if self.writer is not None:
            self.writer.close()
            self.tmp.replace(self.path)
        return self.path

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def write_batch(workspace: Workspace, as_of: pd.Timestamp, decisions: pd.DataFrame) -> Path:
    """Write (or rewrite) the batch's decisions for as_of in one go; returns the file."""
    log = BatchLog(workspace, as_of)
    log.add(decisions)
    return log.commit()


class UnknownDecision(ClmError):
    """Feedback for a decision id clm never gave."""


class NotRecommended(ClmError):
    """Feedback naming an action the decision did not recommend."""


def journal(workspace: Workspace) -> Journal:
    return Journal(log_dir(workspace))


def decided_actions(workspace: Workspace, decision_id: str) -> list[str] | None:
    """What a decision recommended, best first (the batch: its one action); None for an id
    clm never gave (an API id in the journal, a batch id in its date's file)."""
    if decision_id.startswith(API_PREFIX):
        return journal(workspace).api_actions(decision_id)
    match = BATCH_ID.fullmatch(decision_id)
    if match is None:
        return None
    try:
        day = pd.Timestamp(int(match[1]), int(match[2]), int(match[3]), tz="UTC")
    except ValueError:
        return None
    path = batch_path(workspace, day)
    if not path.exists():
        return None
    found = pq.read_table(path, columns=["action"], filters=[("decision_id", "==", decision_id)])
    return [str(a) for a in found.column("action").to_pylist()] or None


def record_feedback(workspace: Workspace, decision_id: str, response: str, when: pd.Timestamp | None = None,
                    action: str | None = None) -> None:
    """A CRM's report that a decision was accepted or rejected, appended to the journal.
    action: the recommended action it acted on (default: the decision's first). Raises
    UnknownDecision for an id clm never gave, NotRecommended for an action it did not
    recommend, ValueError for another response than accepted or rejected."""
    if response not in RESPONSES:
        raise ValueError(f"response must be one of {', '.join(RESPONSES)}, not {response!r}")
    actions = decided_actions(workspace, decision_id)
    if actions is None:
        raise UnknownDecision(f"No decision {decision_id!r}: report feedback with a decision_id a /score answer or the "
                              "nightly batch's output gave.")
    if action is not None and action not in actions:
        raise NotRecommended(f"Decision {decision_id!r} recommended {', '.join(actions)}, not {action!r}.")
    journal(workspace).add_feedback(decision_id, response, action, when or pd.Timestamp.now(tz="UTC"))


def batch_contacts(workspace: Workspace, since: pd.Timestamp | None, before: pd.Timestamp) -> pd.DataFrame:
    """The batch's contacts (any action but none) decided from `since` (None: ever) to
    before `before`: customer_id, action, decided_at, read without the rest of the log."""
    frames = []
    for path in sorted(log_dir(workspace).glob("batch-*.parquet")):
        rows = pq.read_table(path, columns=["customer_id", "action", "decided_at"],
                             filters=[("action", "!=", NO_ACTION)]).to_pandas()
        when = rows["decided_at"]
        frames.append(rows[(when < before) & (when >= since if since is not None else True)])
    if not frames:
        return pd.DataFrame({"customer_id": pd.Series(dtype=object), "action": pd.Series(dtype=object),
                             "decided_at": pd.Series(dtype="datetime64[ns, UTC]")})
    return pd.concat(frames, ignore_index=True)


def read_feedback(workspace: Workspace) -> pd.DataFrame:
    """Every feedback reported (decision_id, response, action, reported_at), in the order
    recorded: files an earlier clm wrote one per call (decisions/feedback/*.parquet), then
    the journal's."""
    frames = [pd.read_parquet(f) for f in sorted((log_dir(workspace) / "feedback").glob("*.parquet"))]
    frames += [journal(workspace).read("feedback")]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(FEEDBACK_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def read_decisions(workspace: Workspace) -> pd.DataFrame:
    """Every decision of the batch's log, with the latest feedback (`response`, null if none)."""
    files = sorted(log_dir(workspace).glob("batch-*.parquet"))
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in (*COLUMNS, "response")})
    decisions = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    feedback = read_feedback(workspace)
    if len(feedback):
        latest = feedback.sort_values("reported_at", kind="stable").drop_duplicates("decision_id", keep="last")
        decisions = decisions.merge(latest[["decision_id", "response"]], on="decision_id", how="left")
    else:
        decisions["response"] = None
    return decisions


def reasons_json(reasons: list[str]) -> str:
    return json.dumps(reasons, ensure_ascii=False)
