"""The monitor job: is clm still working? (`pipelines.monitor` does the measuring.) The
figures go to MLflow (experiment clm-monitor), with the page when one is asked for."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clm.files import write_text_atomically
from clm.workspace import Workspace
from decisions.catalogue import Catalogue
from pipelines.jobs.reporting import Quiet, Reporter
from pipelines.monitor import MonitorReport, Thresholds, log_to_mlflow, monitor
from pipelines.monitor_page import render


@dataclass(frozen=True)
class MonitorSettings:
    as_of: pd.Timestamp
    thresholds: Thresholds
    horizon_days: int = 90  # outcome window of the delivered churn and upsell scores
    page: Path | None = None  # also write the HTML page here
    tracking_uri: str | None = None
    catalogue: Catalogue | None = None  # the business's actions (default: the shipped catalogue)


def monitor_workspace(workspace: Workspace, settings: MonitorSettings, reporter: Reporter | None = None) -> MonitorReport:
    """Drift, matured delivered scores and the policy over time at settings.as_of; the
    report's `flags` are the thresholds crossed."""
    reporter = reporter or Quiet()
    with reporter.working(f"Monitoring as of {settings.as_of:%Y-%m-%d}"):
        report = monitor(workspace, settings.as_of, settings.thresholds, settings.tracking_uri, settings.horizon_days,
                         catalogue=settings.catalogue)
        if settings.page is not None:
            write_text_atomically(settings.page, render(report))
        log_to_mlflow(workspace, report, settings.tracking_uri, settings.page)
    return report
