"""The MLproject entry points, launched the way users launch them: ``mlflow run``."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = shutil.which("mlflow", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(MLFLOW is None, reason="no mlflow CLI")
def test_mlflow_run_preprocess_then_eda_in_the_seqrec_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(inherited, None)
    out = tmp_path / "processed"
    for entry, params in (("preprocess", ["-P", "synthetic_clicks=20000", "-P", f"out={out}"]),
                          ("eda", ["-P", f"data={out}"])):
        proc = subprocess.run([MLFLOW, "run", str(ROOT), "-e", entry, "--env-manager", "local",
                               "--experiment-name", "seqrec", *params],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["seqrec"])
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    assert sorted(runs["tags.seqrec.step"]) == ["eda", "preprocess"]
    assert (runs["status"] == "FINISHED").all()
    assert runs["metrics.test_predictions"].max() > 0


def test_a_step_outside_the_environment_says_what_to_do_in_one_line():
    """A Python without the dependencies (``-S``: no site-packages) gets one line, not a traceback."""
    done = subprocess.run([sys.executable, "-S", "-m", "steps.train_sasrec", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "source .venv/bin/activate" in done.stderr
    assert "torch" in done.stderr and "make run ARGS='-e NAME" in done.stderr
