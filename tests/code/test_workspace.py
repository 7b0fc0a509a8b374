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
