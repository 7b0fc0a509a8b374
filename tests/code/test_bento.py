"""`bentoml build` packs the real-time API from bentofile.yaml."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.clirun import child_environment

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bentoml_build_packs_the_service_its_code_and_pinned_dependencies(tmp_path):
    env = {**child_environment(), "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).parent / "bentoml"
    done = subprocess.run([str(bentoml), "build", str(ROOT)], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    (bento,) = [p for p in (tmp_path / "bentoml" / "bentos" / "clm").iterdir() if p.name != "latest"]
    spec = yaml.safe_load((bento / "bento.yaml").read_text())
    assert spec["service"] == "serving.service:Clm"
    source = bento / "src"
    for needed in ("serving/service.py", "serving/errors.py", "serving/scoring.py", "decisions/catalogue.yaml",
                   "features/store.py", "features/repo.py", "training/models.py", "clm/workspace.py", "constraints.txt"):
        assert (source / needed).is_file(), needed
    assert not (source / "tests").exists() and not (source / "workspace").exists()
    # The routes are a FastAPI app mounted in the service: the packed code, imported on its own
    # (no workspace there), declares them, with the error shape.
    shown = subprocess.run([sys.executable, "-c", "import json; from serving.service import app; "
                            "print(json.dumps(sorted(app.openapi()['paths'])))"],
                           env={**env, "PYTHONPATH": str(source), "CLM_WORKSPACE": str(tmp_path / "none")},
                           cwd=source, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == ["/consent", "/feedback", "/score", "/score_batch",
                                                                     "/score_features"]
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml==1.4.40" in requirements and "lightgbm==" in requirements
