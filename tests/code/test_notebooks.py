"""The notebooks in notebooks/ run, top to bottom, against the main job's workspace; and
they are kept in git without outputs."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def test_the_three_starting_notebooks_are_there_without_outputs():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_on_the_main_jobs_workspace(path, main_job, monkeypatch, tmp_path):
    from nbclient import NotebookClient

    ws, outcome = main_job
    assert outcome.exit_code == 0
    monkeypatch.setenv("CLM_WORKSPACE", str(ws))
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in book.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    # every cell that ends in a value or prints shows something
    assert all(c.outputs for c in code[1:]), [c.source[:60] for c in code[1:] if not c.outputs]
