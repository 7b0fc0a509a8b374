"""The validate job: every raw table against its data contract (`clm.contracts`)."""
from __future__ import annotations

from clm.contracts import ValidationReport, record_valid, validate_workspace
from clm.workspace import Workspace
from pipelines.jobs.reporting import Quiet, Reporter


def validate(workspace: Workspace, reporter: Reporter | None = None) -> ValidationReport:
    """Check the raw tables; raises ClmError (exit code 3) naming each violation. Valid data
    is recorded as such, so that later commands check it again only once a raw file changes."""
    reporter = reporter or Quiet()
    with reporter.working("Validating") as say:
        report = validate_workspace(workspace, progress=lambda name: say(f"Validating {name}"))
    report.raise_if_invalid()
    record_valid(workspace.raw_dir)
    return report
