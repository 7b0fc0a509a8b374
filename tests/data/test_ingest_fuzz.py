"""Fuzzing `clm ingest transactions`: random exports with random defects, separators,
encodings, date formats and compression. Every outcome is either a correct workspace
(the rows written are the rows generated) or a clear error with exit code 2 or 3 and the
workspace as it was: never a traceback, never a partial workspace."""
from __future__ import annotations

import gzip
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clm.contracts import validate_workspace
from clm.domain import Table
from clm.workspace import Workspace
from tests.clirun import invoke, tree_digest

# Defects an ingest must refuse (without --skip-bad-rows), and ones it must take.
BAD = ("negative amount", "text amount", "infinite amount", "no customer", "unparseable date", "future date",
       "amount column missing")
BENIGN = ("exact duplicate", "extra column", "blank line")
# The column (or value) a refusal of each defect must name.
NAMED = {"negative amount": "total", "text amount": "total", "infinite amount": "total", "no customer": "customer",
         "unparseable date": "date", "future date": "after today", "amount column missing": "total"}
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y")
SEPARATORS = {",": ",", ";": ";", "\t": "tab"}
ENCODINGS = ("utf-8", "latin-1", "cp1252", "utf-16")
NAMES = ("anna", "bjørn", "céline", "dana", "émile", "fritz-2", "gül", "hé_7")


@dataclass
class Export:
    rows: list[tuple[str, pd.Timestamp, int]]  # customer, time, amount in cents: what a correct ingest keeps
    defects: list[str]
    sep: str
    decimal: str
    date_format: str
    encoding: str
    give_format: bool
    give_encoding: bool
    give_sep: bool
    compress: bool
    replace_existing: bool


@st.composite
def exports(draw: st.DrawFn) -> Export:
    n = draw(st.integers(1, 25))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n))
    days = draw(st.lists(st.integers(0, 700), min_size=n, max_size=n))
    seconds = draw(st.lists(st.integers(0, 86_399), min_size=n, max_size=n))
    cents = draw(st.lists(st.integers(0, 500_000), min_size=n, max_size=n))
    date_format = draw(st.sampled_from(DATE_FORMATS))
    start = pd.Timestamp("2023-01-01", tz="UTC")
    rows = [
        (name, start + pd.Timedelta(days=d, seconds=s if "%H" in date_format else 0), c)
        for name, d, s, c in zip(names, days, seconds, cents)
    ]
    sep = draw(st.sampled_from(list(SEPARATORS)))
    return Export(
        rows=rows,
        defects=draw(st.lists(st.sampled_from(BAD + BENIGN), max_size=3, unique=True)),
        sep=sep,
        decimal="," if sep != "," and draw(st.booleans()) else ".",
        date_format=date_format,
        encoding=draw(st.sampled_from(ENCODINGS)),
        give_format=draw(st.booleans()),
        give_encoding=draw(st.booleans()),
        give_sep=draw(st.booleans()),
        compress=draw(st.booleans()),
        replace_existing=draw(st.booleans()),
    )


def render(export: Export) -> tuple[list[str], list[tuple[str, pd.Timestamp, int]]]:
    """The file's lines, and the rows a correct ingest keeps (duplicates are kept)."""
    def amount(c: int) -> str:
        return f"{c / 100:.2f}".replace(".", export.decimal)

    def when(t: pd.Timestamp) -> str:
        return t.strftime(export.date_format)

    header = ["customer", "date", "total"]
    lines = [[name, when(t), amount(c)] for name, t, c in export.rows]
    kept = list(export.rows)
    first = lines[0]
    for defect in export.defects:
        if defect == "negative amount":
            lines.append([first[0], first[1], "-" + amount(250)])
        elif defect == "text amount":
            lines.append([first[0], first[1], "twelve"])
        elif defect == "infinite amount":
            lines.append([first[0], first[1], "inf"])
        elif defect == "no customer":
            lines.append(["", first[1], amount(100)])
        elif defect == "unparseable date":
            lines.append([first[0], "31st of Smarch", amount(100)])
        elif defect == "future date":
            lines.append([first[0], when(pd.Timestamp("2031-03-04 10:00", tz="UTC")), amount(100)])
        elif defect == "amount column missing":
            header[2] = "sum"
        elif defect == "exact duplicate":
            lines.append(list(first))
            kept.append(export.rows[0])
        elif defect == "extra column":
            header.append("note")
            lines = [line + ["x"] for line in lines]
    text_lines = [export.sep.join(header)] + [export.sep.join(line) for line in lines]
    if "blank line" in export.defects:
        text_lines.insert(2, "")
    return text_lines, kept


def write_file(export: Export, folder: Path) -> Path:
    lines, _ = render(export)
    data = ("\n".join(lines) + "\n").encode(export.encoding)
    path = folder / ("export.csv.gz" if export.compress else "export.csv")
    path.write_bytes(gzip.compress(data) if export.compress else data)
    return path


def must_succeed(export: Export) -> bool:
    """Whether a correct ingest has every means to succeed: no refusable defect, and what
    it cannot know for sure (day/month order, a non-UTF-8 encoding) was given."""
    if any(d in BAD for d in export.defects):
        return False
    lines, _ = render(export)
    text = "\n".join(lines)
    utf8_readable = export.encoding == "utf-8" or text.isascii() and export.encoding != "utf-16"
    unambiguous = export.date_format.startswith("%Y") or export.give_format
    return (export.give_encoding or utf8_readable) and unambiguous


def args(export: Export, path: Path, ws: Path) -> list[str]:
    out = ["ingest", "transactions", str(path), "--customer-col", "customer", "--date-col", "date",
           "--amount-col", "total", "--decimal", export.decimal, "-w", str(ws)]
    if export.give_format:
        out += ["--date-format", export.date_format]
    if export.give_encoding:
        out += ["--encoding", export.encoding]
    if export.give_sep:
        out += ["--sep", SEPARATORS[export.sep]]
    if export.replace_existing:
        out += ["--replace"]
    return out


def previous_business(ws: Path) -> None:
    """A workspace already holding an ingested business (replaced only with --replace)."""
    ws.parent.mkdir(parents=True, exist_ok=True)
    old = ws.parent / "old.csv"
    old.write_text("customer,date,total\nold-1,2022-03-01,5\nold-2,2022-04-01,6\n")
    result = invoke("ingest", "transactions", str(old), "--customer-col", "customer", "--date-col", "date",
                    "--amount-col", "total", "-w", str(ws))
    assert result.exit_code == 0, result.output


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(export=exports())
def test_ingest_gives_a_correct_workspace_or_a_clear_error(export: Export):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ws = folder / "ws"
        if export.replace_existing:
            previous_business(ws)
        before = tree_digest(ws) if ws.exists() else {}
        path = write_file(export, folder)

        result = invoke(*args(export, path, ws))
        event(f"exit {result.exit_code}" + (" (must succeed)" if must_succeed(export) else ""))

        assert result.exit_code in (0, 2, 3), result.output  # 1 would be an uncaught exception
        assert "Traceback" not in result.output
        assert not list(ws.glob(".raw-*")) if ws.exists() else True  # no staging folder left behind
        if result.exit_code != 0:
            assert not must_succeed(export), f"refused a usable export: {result.output}"
            bad = [d for d in export.defects if d in BAD]
            if len(bad) == 1 and must_succeed(replace(export, defects=[d for d in export.defects if d in BENIGN])):
                assert NAMED[bad[0]] in result.output, (bad, result.output)  # the one problem, named
            assert len(result.output) > 40  # says something: the problem and what to do
            assert (tree_digest(ws) if ws.exists() else {}) == before  # nothing partial, nothing lost
            return
        assert not any(d in BAD for d in export.defects), f"took a defective export: {export.defects}"
        _, kept = render(export)
        workspace = Workspace(ws)
        assert validate_workspace(workspace).ok
        tx = workspace.read_table(Table.TRANSACTIONS).sort_values(["customer_id", "event_time", "amount"])
        expected = pd.DataFrame(kept, columns=["customer_id", "event_time", "cents"]).assign(
            amount=lambda f: f.cents / 100).sort_values(["customer_id", "event_time", "amount"])
        assert tx.customer_id.tolist() == expected.customer_id.tolist()
        assert tx.event_time.tolist() == expected.event_time.tolist()
        assert np.allclose(tx.amount.to_numpy(), expected.amount.to_numpy())
        customers = workspace.read_table(Table.CUSTOMERS)
        assert sorted(customers.customer_id) == sorted(set(expected.customer_id))  # the old business is gone
