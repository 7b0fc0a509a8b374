"""The one error type for a user's mistake: the CLI prints it as a paragraph, no traceback."""
from __future__ import annotations


class ClmError(Exception):
    """A problem the user can fix: say what was wrong, where, and what to do next."""

    exit_code: int = 2


class DataContractError(ClmError):
    """Raw data breaks its contract; the message is the full violation report."""

    exit_code = 3
