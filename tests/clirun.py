"""Running `clm` in-process for tests, and fingerprints of a workspace's files."""
from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from clm.workspace import LOCK_NAME
from pipelines.cli import app

runner = CliRunner()


class Outcome:
    """A CLI run: exit code, and its output with panel borders and line wrapping removed."""

    def __init__(self, result):
        self.exit_code = result.exit_code
        self.output = " ".join(result.output.translate(str.maketrans("", "", "│╭╮╰╯─")).split())

    def mentions(self, text: str) -> bool:
        """Whether the output says `text`, even where the panel wrapped it mid-word (long paths)."""
        return "".join(text.split()) in "".join(self.output.split())


def invoke(*args: str, env: dict[str, str] | None = None) -> Outcome:
    return Outcome(runner.invoke(app, list(args), env=env))


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (relative path) and the SHA-256 of its bytes: equal digests
    mean nothing was added, removed or changed. The workspace lock file is left out: every
    writing command takes the lock, even one that then refuses to write."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_NAME
    }
