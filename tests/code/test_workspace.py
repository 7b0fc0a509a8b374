"""Workspace paths and the all-or-nothing raw writer."""
from __future__ import annotations

import pytest

from clm.errors import ClmError
from clm.workspace import Workspace, resolve_workspace


def test_workspace_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("CLM_WORKSPACE", raising=False)
    assert str(resolve_workspace(None)) == "workspace"
    monkeypatch.setenv("CLM_WORKSPACE", str(tmp_path / "env"))
    assert resolve_workspace(None) == tmp_path / "env"
    assert resolve_workspace(tmp_path / "explicit") == tmp_path / "explicit"


def test_a_second_business_is_refused_and_replace_starts_over(tmp_path):
    ws = Workspace(tmp_path)
    with ws.writing_raw() as staging:
        (staging / "a.parquet").write_text("first")
    # Made from the first business, with the names clm gives them (clm.layout).
    for derived in ("features/rfm/2024-02-01.parquet", "feature_repo/registry.db", "mlflow/artifacts/x"):
        (tmp_path / derived).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / derived).write_text("old")

    with pytest.raises(ClmError, match="already holds data .raw, features, feature_repo, mlflow.*--replace"):
        with ws.writing_raw() as staging:
            pytest.fail("the refusal comes before any staging")
    assert (ws.raw_dir / "a.parquet").read_text() == "first" and (tmp_path / "mlflow/artifacts/x").exists()

    with ws.writing_raw(replace=True) as staging:
        assert not (staging / "a.parquet").exists()
        (staging / "b.parquet").write_text("second")
    assert sorted(p.name for p in ws.raw_dir.iterdir()) == ["b.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".clm-workspace", "raw"]  # nothing of the first business


def test_empty_leftover_folders_are_no_business(tmp_path):
    ws = Workspace(tmp_path)
    (tmp_path / "mlflow").mkdir()  # e.g. made by a command that then stopped at "no raw data"
    with ws.writing_raw() as staging:
        (staging / "a.txt").write_text("first")
    assert (ws.raw_dir / "a.txt").exists()


def test_failed_replacement_keeps_the_old_business(tmp_path):
    ws = Workspace(tmp_path)
    with ws.writing_raw() as staging:
        (staging / "a.parquet").write_text("kept")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "_build.json").write_text("kept too")
    with pytest.raises(RuntimeError):
        with ws.writing_raw(replace=True) as staging:
            (staging / "half.parquet").write_text("half")
            raise RuntimeError("boom")
    assert (ws.raw_dir / "a.parquet").read_text() == "kept"
    assert (tmp_path / "features" / "_build.json").read_text() == "kept too"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".clm-workspace", "features", "raw"]


def test_a_damaged_manifest_is_a_clear_error(tmp_path):
    ws = Workspace(tmp_path)
    with ws.writing_raw() as staging:
        (staging / "_manifest.json").write_text('{"source": "ingest", "busin')  # cut short
    with pytest.raises(ClmError, match=r"manifest .*_manifest.json is damaged .*--replace"):
        ws.read_manifest()
    assert ws.describe() == "data"


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
    with ws.writing_raw(replace=True) as staging:
        (staging / "marker").write_text("new")
    assert not abandoned.exists() and not old_style.exists() and running.exists()
    assert (ws.raw_dir / "marker").read_text() == "new"
