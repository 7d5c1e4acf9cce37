"""The logged model rebuilds its own environment outside the checkout (minutes: ``pytest -m slow``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_logged_models_serve_the_same_answers_from_an_environment_built_from_their_requirements(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "model_env_check.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("identical") == 2, proc.stdout
