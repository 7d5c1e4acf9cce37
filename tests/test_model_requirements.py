"""A logged model's requirements are what it imports when loaded and asked for recommendations: nothing of
training, tuning, plotting or the HTTP service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from seqrec.tracking import INFERENCE_DISTRIBUTIONS
from seqrec.workflow.baseline import run_baseline
from seqrec.workflow.basket import run_basket
from seqrec.workflow.neural import run_neural

ROOT = Path(__file__).resolve().parents[1]

# loads the model, scores one session, prints each third-party module that the seqrec modules it imported
# import themselves, with the distributions that provide it (the model's direct requirements)
PROBE = """
import ast, json, pathlib, sys
from importlib.metadata import packages_distributions
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
model.predict(pd.DataFrame({"session": [["1", "2"]]}))
names = set()
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None) or ""
    if name.split(".")[0] != "seqrec" or not path.endswith(".py"):
        continue
    for node in ast.walk(ast.parse(pathlib.Path(path).read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
owners = packages_distributions()
print(json.dumps({n: owners.get(n, []) for n in sorted(names - set(sys.stdlib_module_names) - {"seqrec"})}))
"""


def requirements_of(run_id: str, tmp_path: Path) -> set[str]:
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model/requirements.txt",
                                               dst_path=str(tmp_path))
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    return {line.split("==")[0] for line in lines}


def imported_by(run_id: str) -> dict[str, list[str]]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    done = subprocess.run([sys.executable, "-c", PROBE, f"runs:/{run_id}/model"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _logged(kind: str, processed: Path) -> str:
    """A run logging a model of ``kind``: a baseline, a basket model, or a network fused with a kNN model."""
    if kind == "fused":
        return run_neural("gru4rec", str(processed), "tiny", {"epochs": 1, "progress": False, "fuse": "sknn"})[0]
    return run_baseline(str(processed), "sr")[0] if kind == "sr" else run_basket(str(processed), "gbdt")[0]


@pytest.mark.parametrize("kind", ["sr", "gbdt", "fused"])
def test_requirements_hold_what_inference_imports_and_no_training_package(processed, tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a neural run's checkpoints
    run_id = _logged(kind, processed)
    required = requirements_of(run_id, tmp_path)
    assert required == set(INFERENCE_DISTRIBUTIONS)
    missing = {module: owners for module, owners in imported_by(run_id).items() if not set(owners) & required}
    assert not missing  # every module inference imports comes with a required distribution
    assert not required & {"optuna", "matplotlib", "fastapi", "uvicorn", "tqdm"}


def test_a_model_logged_in_the_uv_project_carries_its_own_requirements_only(processed, tmp_path, monkeypatch):
    """MLflow 3 copies the uv.lock and pyproject.toml of the directory a model is logged from into the model, and
    `--env-manager uv` then rebuilds the whole project from them: not for seqrec's models (the checkout's pair, in a
    scratch directory, stands for `mlflow run .`)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, project / name)
    monkeypatch.chdir(project)
    run_id = run_baseline(str(processed), "sr")[0]
    files = {Path(a.path).name for a in mlflow.artifacts.list_artifacts(artifact_uri=f"runs:/{run_id}/model")}
    assert "requirements.txt" in files and not files & {"uv.lock", "pyproject.toml"}
    assert requirements_of(run_id, tmp_path) == set(INFERENCE_DISTRIBUTIONS)
