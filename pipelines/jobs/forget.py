"""The forget job (`clm forget`): customers erased, on request, from every place the
workspace keeps them.

In this order: the erasure is recorded first (keyed hashes, `clm.privacy`), so that a run
killed midway is finished by running it again and a later ingest of an old export drops
them; then the online store (the API answers 404 for them from then on), the raw tables,
the feature snapshots, the decision log and journal, the batch outputs, and the reports
that name them (removed: `clm report` makes them again). Each file is rewritten whole to a
hidden file and renamed over it: a kill leaves each file before or after, never half.

Models trained with these customers stay until the next retrain, which no longer sees them.
In a pseudonymised workspace (`clm ingest --pseudonymise`) the ids given are the CRM's,
pseudonymised with the same key (or clm's pseudonyms, `p-...`, as they are). The snapshots
keep every other customer's row; the dates they touched are made again from
the raw data at the next build (`features.freshness`: their rows changed).
"""
from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from clm.errors import ClmError
from clm.files import remove_rows, write_text_atomically
from clm.layout import BUSINESS_FOLDERS
from clm.privacy import PSEUDONYM_HEX, PSEUDONYM_PREFIX, pseudonyms, record_erasure, required_key
from clm.workspace import Workspace
from decisions import log as decision_log
from features.snapshots import features_dir
from features.store import check_can_forget, forget_online
from pipelines.ingest.business import PSEUDONYMISED
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.outputs import MANIFEST_NAME, scores_dir

ID_COLUMN = "customer_id"
PSEUDONYM = re.compile(rf"{PSEUDONYM_PREFIX}[0-9a-f]{{{PSEUDONYM_HEX}}}")  # an id given as clm holds it
MAX_ID_CHARS = 256


@dataclass
class Forgotten:
    customers: int  # ids asked for
    newly_recorded: int  # not in the erasure record before
    rows: dict[str, int] = field(default_factory=dict)  # file (relative to the workspace) -> rows removed
    online: int = 0  # customers the online store held
    journal: int = 0  # journal rows removed (API decisions, feedback)
    reports_removed: list[str] = field(default_factory=list)


def checked_ids(ids: Sequence[str]) -> list[str]:
    """The ids asked for, distinct, in order; blank or overlong ones refused."""
    clean = [str(i).strip() for i in ids]
    bad = [i for i in clean if not i or len(i) > MAX_ID_CHARS]
    if bad:
        raise ClmError(f"Customer id(s) {', '.join(repr(b[:40]) for b in bad[:5])} are blank or over {MAX_ID_CHARS} "
                       "characters: give the ids as the workspace holds them, one per argument or line.")
    if not clean:
        raise ClmError("No customer id given: name them (`clm forget C0000001 C0000002`) or give a file of them, "
                       "one per line (`clm forget --file erase.txt`).")
    return list(dict.fromkeys(clean))


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))


def _remove_from(workspace: Workspace, files: list[Path], ids: list[str], rows: dict[str, int],
                 column: str = ID_COLUMN, rebuilt: bool = False) -> None:
    """Each file without the customers' rows. rebuilt: files clm makes again when missing (a
    snapshot): a damaged one is removed; else a damaged file is named."""
    for path in files:
        try:
            removed = remove_rows(path, column, ids)
        except (OSError, pa.ArrowException) as err:
            if rebuilt:
                path.unlink()
                continue
            raise ClmError(f"{path} cannot be read ({err}): restore it from a backup or remove it, then run "
                           "`clm forget` again (what is done stays done).") from None
        if removed:
            rows[path.relative_to(workspace.root).as_posix()] = removed


def _remove_temporaries(workspace: Workspace) -> None:
    """What killed commands left (clm's hidden files in its folders, staging folders of an
    ingest, DuckDB's spill files): they may hold anyone's rows. The workspace is held
    (`Workspace.exclusive`), so no clm command is writing them."""
    for name in BUSINESS_FOLDERS:
        folder = workspace.root / name
        for path in sorted(folder.rglob(".*"), reverse=True) if folder.is_dir() else []:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for path in [*workspace.root.glob(".raw-staging-*"), *workspace.root.glob(".raw-retired-*"),
                 workspace.root / ".duckdb-tmp"]:
        shutil.rmtree(path, ignore_errors=True)


def _legacy_feedback(workspace: Workspace, ids: list[str], rows: dict[str, int]) -> None:
    """Feedback files an earlier clm wrote (decision ids only): the batch's ids name the
    customer (`<YYYYMMDD>-<id>`)."""
    wanted = set(ids)
    for path in _parquet_files(decision_log.log_dir(workspace) / "feedback"):
        decision_ids = pq.read_table(path, columns=["decision_id"]).column("decision_id").to_pylist()
        theirs = [d for d in decision_ids if (m := decision_log.BATCH_ID.fullmatch(str(d))) and m[4] in wanted]
        _remove_from(workspace, [path], theirs, rows, "decision_id")


def _batch_manifests(workspace: Workspace, ids: list[str]) -> None:
    """A batch output's manifest names one customer as the example to try (`showcase`):
    dropped when that customer is forgotten."""
    wanted = set(ids)
    for manifest in sorted(scores_dir(workspace).glob(f"*/{MANIFEST_NAME}")):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):  # a damaged batch: the report leaves it out; its rows are gone already
            continue
        showcase = (data.get("decisions") or {}).get("showcase")
        if isinstance(showcase, dict) and showcase.get("customer_id") in wanted:
            data["decisions"]["showcase"] = None
            write_text_atomically(manifest, json.dumps(data, indent=2))


def _reports_naming(workspace: Workspace, ids: list[str]) -> list[Path]:
    folder = workspace.root / "reports"
    found = []
    for path in sorted(folder.glob("*.html")) if folder.is_dir() else []:
        text = path.read_bytes()
        if any(i.encode() in text or html.escape(i).encode() in text for i in ids):
            found.append(path)
    return found


def forget(workspace: Workspace, ids: Sequence[str], reporter: Reporter | None = None,
           when: pd.Timestamp | None = None) -> Forgotten:
    """Erase the customers `ids` from the workspace (see the module's docstring)."""
    reporter = reporter or Quiet()
    ids = checked_ids(ids)
    workspace.require_existing()
    if workspace.has_raw() and workspace.read_manifest().details.get(PSEUDONYMISED):
        ids = [i if PSEUDONYM.fullmatch(i) else p for i, p in zip(ids, pseudonyms(required_key(), pd.Series(ids)))]
    check_can_forget(workspace)  # before anything is removed
    out = Forgotten(len(ids), record_erasure(workspace, ids, when or pd.Timestamp.now(tz="UTC")))
    with reporter.working("Removing them from the online store"):
        try:
            out.online = forget_online(workspace, ids)
        except (redis.RedisError, sqlite3.Error) as err:
            raise ClmError(f"The online store of {workspace.root} cannot be written ({err}): bring it back, then run "
                           "`clm forget` again (the erasure is recorded; what is done stays done).") from None
    _remove_temporaries(workspace)
    with reporter.working("Removing them from the raw tables and the feature snapshots"):
        _remove_from(workspace, _parquet_files(workspace.raw_dir), ids, out.rows)
        _remove_from(workspace, _parquet_files(features_dir(workspace)), ids, out.rows, rebuilt=True)
    with reporter.working("Removing them from the decision log, the journal and the batch outputs"):
        _remove_from(workspace, sorted(decision_log.log_dir(workspace).glob("batch-*.parquet")), ids, out.rows)
        _legacy_feedback(workspace, ids, out.rows)
        out.journal = decision_log.journal(workspace).forget(ids)
        _remove_from(workspace, _parquet_files(scores_dir(workspace)), ids, out.rows)
        _batch_manifests(workspace, ids)
    for report in _reports_naming(workspace, ids):
        report.unlink()
        out.reports_removed.append(report.relative_to(workspace.root).as_posix())
    return out
