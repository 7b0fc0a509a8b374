"""One run, one number per quantity: what `clm run` prints, the report it writes, the policy
evaluation's JSON and the batch's manifest agree on the budget, the value finder and the
stage counts (they used to say budget 318 and 750, a value finder of 601 and 1,046, at_risk
200 and 423)."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from pipelines import outputs

pytestmark = pytest.mark.slow


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (the header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def report_tables(ws) -> list[pd.DataFrame]:  # type: ignore[no-untyped-def]
    parser = _Tables()
    parser.feed((ws / "reports" / "report.html").read_text())
    return [pd.DataFrame(rows[1:], columns=rows[0]) for rows in parser.tables if rows]


def test_the_summary_report_json_and_manifest_agree(main_job):
    ws, outcome = main_job
    assert outcome.exit_code == 0, outcome.output[-2000:]
    said = outcome.output
    batch = outputs.delivered_outputs(_workspace(ws))
    assert len(batch) == 1
    path = next(iter(batch.values()))
    manifest = outputs.read_manifest(path)
    assert manifest is not None
    decided = manifest["decisions"]
    policy = json.loads((ws / "reports" / "policy.json").read_text())
    tables = report_tables(ws)

    # The budget: the policy table's title, the batch's line, the report's plan, the JSON, the manifest.
    budgets = {float(b.replace(",", "")) for b in re.findall(r"budget ([0-9,]+)", said)}
    assert budgets == {round(decided["budget"])}, budgets
    assert round(policy["run"]["budget"]) == round(decided["budget"])
    plan = re.search(r"\(budget ([0-9,]+)\)", (ws / "reports" / "report.html").read_text())
    assert plan and float(plan.group(1).replace(",", "")) == round(decided["budget"])

    # The value finder: the terminal's table, the report's, the JSON's and the manifest's.
    from_manifest = {row["step"]: (row["customers"], round(row["value_left"])) for row in decided["value_finder"]}
    from_json = {row["step"]: (row["customers"], round(row["value_left"])) for row in policy["clm"]["value_finder"]}
    finder = next(t for t in tables if list(t.columns)[:2] == ["step", "customers"])
    from_report = {row[0]: (int(row[1].replace(",", "")), int(row[3].replace(",", ""))) for row in finder.to_numpy()}
    assert from_manifest == from_json == from_report
    for step, (customers, left) in from_manifest.items():
        assert re.search(rf"{step} {customers:,} \d[\d,]* {left:,}", said), step

    # The stage counts: the summary's line, the report's KPI table and the batch's own stage column.
    line = re.search(r"Stages on (\S+) by clm's stage rules \(as the report counts them\): (.*?)\.", said)
    assert line, said[-1500:]
    printed = {k: int(v.replace(",", "")) for k, v in re.findall(r"(\w+) ([\d,]+)", line.group(2))}
    kpis = {row[0]: int(row[1].replace(",", "")) for row in tables[0].to_numpy()}
    scored = pd.read_parquet(path, columns=["stage"]).stage.value_counts().to_dict()
    assert printed == kpis
    assert {k: v for k, v in printed.items() if v} == scored


def _workspace(root):  # type: ignore[no-untyped-def]
    from clm.workspace import Workspace

    return Workspace(root)
