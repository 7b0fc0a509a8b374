"""The notebooks in notebooks/ run, top to bottom, as a user runs them: with the `jupyter`
the dev extra installs, the kernel started in `notebooks/` (Jupyter's default), the
workspace named relative to the clone's root (or not named: ./workspace); and they are kept
in git without outputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from clm.workspace import WORKSPACE_ENV, Workspace
from tests.clirun import child_environment
from training import registry

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
JUPYTER = Path(sys.executable).parent / "jupyter"
# How each notebook names the workspace: not at all (./workspace), or relative as the README says.
NAMED = {"01_explore_workspace": None, "02_compare_model_versions": "demo", "03_policy_what_if": "demo"}


def test_the_three_starting_notebooks_are_there_without_outputs():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), path.name


def nbconvert(book: nbformat.NotebookNode, clone: Path, name: str,
              workspace_env: str | None) -> subprocess.CompletedProcess[str]:
    """`jupyter nbconvert --execute` on the notebook saved in clone/notebooks/ (the kernel
    starts there), the environment holding no CLM_WORKSPACE or a relative one; the executed
    notebook is clone/notebooks/NAME.out.ipynb."""
    folder = clone / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, folder / f"{name}.ipynb")
    # As a user's shell has it: no CLM_WORKSPACE, and no MLFLOW_TRACKING_URI that in-process tests export.
    env = {k: v for k, v in child_environment().items() if k != WORKSPACE_ENV}
    if workspace_env is not None:
        env[WORKSPACE_ENV] = workspace_env
    return subprocess.run([str(JUPYTER), "nbconvert", "--to", "notebook", "--execute", f"{name}.ipynb",
                           "--output", f"{name}.out.ipynb", "--ExecutePreprocessor.timeout=600"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def run_in_jupyter(book: nbformat.NotebookNode, clone: Path, name: str, workspace_env: str | None) -> nbformat.NotebookNode:
    """The notebook as `nbconvert` ran it, which must succeed."""
    done = nbconvert(book, clone, name, workspace_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return nbformat.read(clone / "notebooks" / f"{name}.out.ipynb", as_version=4)


def printed(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_in_jupyter_from_the_notebooks_folder(path, main_job, tmp_path):
    ws, outcome = main_job
    assert outcome.exit_code == 0
    clone = tmp_path / "clone"
    (clone / "notebooks").mkdir(parents=True)
    named = NAMED[path.stem]
    (clone / (named or "workspace")).symlink_to(ws, target_is_directory=True)  # where `clm run` wrote it
    book = nbformat.read(path, as_version=4)
    checks = {  # one cell the test adds at the end, printing what it compares with the truth
        "02_compare_model_versions": 'print(json.dumps({m: [int(v) for v in versions.version[(versions.model == m) '
                                     '& versions.champion]] for m in sorted(set(versions.model))}))',
        "03_policy_what_if": "print(json.dumps(levers))",
    }
    if path.stem in checks:
        book.cells.append(nbformat.v4.new_code_cell("import json\n" + checks[path.stem]))
    ran = run_in_jupyter(book, clone, path.stem, named)
    code = [c for c in ran.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    # every cell that ends in a value or prints shows something
    assert all(c.outputs for c in code[1:]), [c.source[:60] for c in code[1:] if not c.outputs]
    assert printed(code[0]).startswith(f"{clone / (named or 'workspace')}: ")  # found where `clm run` wrote it
    if path.stem == "02_compare_model_versions":
        # The champion column marks the registry's champion of each model (it marked none:
        # MLflow's version is an int, the alias lookup's a string).
        marked = json.loads(printed(code[-1]))
        truth = registry.champion_versions(registry.connect(Workspace(ws)))
        assert {m: [str(v) for v in marked.get(m, [])] for m in truth} == {
            m: [v] if v else [] for m, v in truth.items()}, (marked, truth)
    if path.stem == "03_policy_what_if":
        # The lever changes what the policy is worth (it used to print one value twice).
        levers = json.loads(printed(code[-1]))
        assert len(levers) >= 2 and len(set(levers.values())) == len(levers), levers


@pytest.mark.slow
def test_a_notebook_without_a_workspace_says_where_it_looked(tmp_path):
    """No workspace in notebooks/ nor in the clone's root: a message naming both places and
    the command to run, not a stack of pandas errors."""
    clone = tmp_path / "clone"
    book = nbformat.read(NOTEBOOKS[0], as_version=4)
    book.cells = book.cells[:2]
    done = nbconvert(book, clone, "first", None)
    assert done.returncode != 0
    assert (f"No workspace with data at {clone / 'notebooks' / 'workspace'} nor at {clone / 'workspace'}"
            in done.stderr)
