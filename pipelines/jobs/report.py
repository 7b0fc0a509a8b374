"""The report job: the lifecycle report for the business, one self-contained HTML file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clm.files import write_text_atomically
from clm.workspace import Workspace
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.report import LifecycleReport, lifecycle_report
from pipelines.report_page import render

REPORT_NAME = "reports/report.html"  # where `clm run` writes the lifecycle report, in the workspace


@dataclass
class ReportWritten:
    path: Path  # absolute
    report: LifecycleReport  # the figures on the page


def write_report(workspace: Workspace, as_of: pd.Timestamp, out: Path, tracking_uri: str | None = None,
                 reporter: Reporter | None = None) -> ReportWritten:
    """The report as of a date written to `out` (whole or not at all)."""
    reporter = reporter or Quiet()
    with reporter.working(f"Writing the lifecycle report as of {as_of:%Y-%m-%d}"):
        report = lifecycle_report(workspace, as_of, tracking_uri)
        page = render(report)
    write_text_atomically(out, page)
    return ReportWritten(out.resolve(), report)
