"""How a job says what it is doing: steps, work in progress, finished parts, warnings.

A job calls the reporter it is given; the CLI's reporter draws Rich progress bars and
tables, `Quiet` (the default) logs the steps and warnings to the `clm` logger, so that a
notebook or a scheduler sees them where it keeps its logs.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

Say = Callable[[str], None]  # what the work is doing now, in words

log = logging.getLogger("clm")


class Count(Protocol):
    def __call__(self, done: int, total: int | None, text: str | None = None) -> None:
        """done of total units (total None: not known yet); text: what is being done now."""


class Reporter(Protocol):
    def step(self, title: str) -> None:
        """A new step of a job of several (e.g. "1/5 Simulate")."""

    def working(self, text: str) -> AbstractContextManager[Say]:
        """Work of unknown length; the function it gives says what it is doing now."""

    def counting(self, text: str, total: int | None = None) -> AbstractContextManager[Count]:
        """Work counted in units (days, snapshots, chunks); the function it gives counts."""

    def finished(self, result: object) -> None:
        """A part of a longer job is done: its result, to be shown now."""

    def warn(self, text: str) -> None:
        """Something the user should know: a step skipped, a part left out."""


class Quiet:
    """A reporter for code that calls the jobs directly: steps and warnings go to the log."""

    def step(self, title: str) -> None:
        log.info("%s", title)

    @contextlib.contextmanager
    def working(self, text: str) -> Iterator[Say]:
        log.info("%s", text)
        yield lambda now: None

    @contextlib.contextmanager
    def counting(self, text: str, total: int | None = None) -> Iterator[Count]:
        log.info("%s", text)
        yield lambda done, total, text=None: None

    def finished(self, result: object) -> None:
        log.debug("%r", result)

    def warn(self, text: str) -> None:
        log.warning("%s", text)
