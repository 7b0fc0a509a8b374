"""The layers run one way (pyproject.toml's import-linter contracts): pipelines -> serving
-> training -> decisions -> features -> clm, the simulator beside features and used by the
pipelines only. Checked on the code as it is, and shown to catch an upward import. And the
type check (pyproject.toml's [tool.mypy]: every function typed, no blanket ignores) passes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import typecheck
from tests.clirun import child_environment

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("clm", "simulator", "features", "decisions", "training", "serving", "pipelines")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the packages under `root` (they come first on the path)."""
    env = {**child_environment(), "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True)


def test_the_layers_run_one_way():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_build(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    labels = tmp_path / "training" / "labels.py"
    labels.write_text(labels.read_text() + "\nimport serving.scoring  # training reaching up into serving\n")
    simulator = tmp_path / "simulator" / "params.py"
    simulator.write_text(simulator.read_text() + "\nimport features.groups  # the simulator reaching over\n")
    done = lint_imports(tmp_path)
    said = " ".join(done.stdout.split())
    assert done.returncode != 0 and "Contracts: 1 kept, 2 broken." in said, said
    assert "training.labels -> serving.scoring" in said and "simulator.params -> features.groups" in said


@pytest.mark.slow  # about a minute without a cache (a clean clone), run beside the other tests
def test_the_types_check(request):
    """mypy on every package, as configured in pyproject.toml (cache in .mypy_cache/),
    started when the session began (tests.typecheck)."""
    code, said = typecheck.verdict(request.config)
    assert code == 0 and "Success: no issues found" in said, said
