"""Workspace paths and the all-or-nothing raw writer."""
from __future__ import annotations

import pytest

from clm.workspace import Workspace, resolve_workspace


def test_workspace_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("CLM_WORKSPACE", raising=False)
    assert str(resolve_workspace(None)) == "workspace"
    monkeypatch.setenv("CLM_WORKSPACE", str(tmp_path / "env"))
    assert resolve_workspace(None) == tmp_path / "env"
    assert resolve_workspace(tmp_path / "explicit") == tmp_path / "explicit"


def test_writing_raw_replaces_in_one_step(tmp_path):
    ws = Workspace(tmp_path)
    with ws.writing_raw() as staging:
        (staging / "a.txt").write_text("first")
    with ws.writing_raw() as staging:
        assert not (staging / "a.txt").exists()
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in ws.raw_dir.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_failed_write_keeps_the_old_raw(tmp_path):
    ws = Workspace(tmp_path)
    with ws.writing_raw() as staging:
        (staging / "a.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with ws.writing_raw() as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert (ws.raw_dir / "a.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_a_killed_writers_staging_folder_is_removed_by_the_next(tmp_path):
    """A killed ingest or simulate leaves its staging folder; the next writer removes it,
    and leaves alone one whose writer is still running."""
    import os
    import subprocess

    from clm.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    gone = subprocess.Popen(["true"])  # a process that has ended: its pid names no writer
    gone.wait()
    abandoned = ws.root / f".raw-staging-{gone.pid}-deadbeef"
    old_style = ws.root / ".raw-staging-1a2b3c4d"  # made before pids were in the name
    running = ws.root / f".raw-staging-{os.getpid()}-cafe0000"
    for folder in (abandoned, old_style, running):
        folder.mkdir()
    with ws.writing_raw() as staging:
        (staging / "marker").write_text("new")
    assert not abandoned.exists() and not old_style.exists() and running.exists()
    assert (ws.raw_dir / "marker").read_text() == "new"
