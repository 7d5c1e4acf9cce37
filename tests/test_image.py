"""The serving image, tested outside Docker (no Docker daemon in CI): the model is exported as the Dockerfile
expects, and the Dockerfile's own CMD serves it from that directory, with the code it carries, while the
tracking server is unreachable."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import tomllib
from packaging.requirements import Requirement

from seqrec.data.dataset import ProcessedDataset
from seqrec.serving.export import main as export
from seqrec.workflow.baseline import run_baseline
from tests.test_serving import call, free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# its RUN instructions, one line each
RUNS = [" ".join(run.replace("\\\n", " ").split()) for run in re.findall(r"^RUN ((?:.*\\\n)*.*)$", DOCKERFILE, re.M)]
UV = shutil.which("uv", path=os.path.dirname(sys.executable))  # the dev extra's, as `make` installs it


@pytest.fixture(scope="module")
def exported(processed, tmp_path_factory) -> tuple[Path, str]:
    run_id, _ = run_baseline(str(processed), "sr")
    version = mlflow.register_model(f"runs:/{run_id}/model", "seqrec-image-test")
    mlflow.MlflowClient().set_registered_model_alias("seqrec-image-test", "champion", version.version)
    out = tmp_path_factory.mktemp("build") / "model"
    assert export(["--model-uri", "models:/seqrec-image-test@champion", "--out", str(out)]) == 0
    return out, str(version.version)


def image_env(model_dir: Path) -> dict[str, str]:
    """The image's environment (its ENV line) with an unreachable tracking server and no checkout on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))}
    values = dict(re.findall(r"(\w+)=(\S+)", re.search(r"^ENV (.+)$", DOCKERFILE, re.M).group(1)))
    values = {k: v.replace("/opt/model", str(model_dir)) for k, v in values.items()}
    return {**env, **values, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}


def test_the_export_holds_the_model_its_description_and_pinned_service_packages(exported):
    out, version = exported
    meta = json.loads((out / "seqrec-metadata.json").read_text())
    assert (meta["name"], meta["version"], meta["model"]) == ("seqrec-image-test", version, "sr")
    assert "test_recall_at_20" in meta["metrics"]
    assert all(re.fullmatch(r"[\w-]+==[\w.]+", line) for line in (out / "serve-requirements.txt").read_text().split())
    assert (out / "code" / "seqrec" / "serving" / "api.py").exists()


def test_export_replaces_its_own_output_and_refuses_a_foreign_directory(exported, tmp_path, capsys):
    assert export(["--model-uri", "models:/seqrec-image-test@champion", "--out", str(exported[0])]) == 0
    (tmp_path / "notes.txt").write_text("mine")
    assert export(["--model-uri", "models:/seqrec-image-test@champion", "--out", str(tmp_path)]) == 2
    assert "notes.txt" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "mine"


def test_the_dockerfile_runs_as_a_user_with_a_healthcheck_and_installs_only_the_models_pins():
    assert re.search(r"^USER seqrec$", DOCKERFILE, re.M) and "HEALTHCHECK" in DOCKERFILE
    installs = " ".join(run for run in RUNS if "pip install" in run)
    pinned = "-c /tmp/lock-constraints.txt -r /opt/model/requirements.txt -r /opt/model/serve-requirements.txt"
    assert pinned in installs
    assert "pip install ." not in installs and "MLFLOW_TRACKING_URI" not in DOCKERFILE


def lock_export() -> list[str]:
    """The Dockerfile's ``uv export`` (its first stage), as a command for the checkout."""
    (run,) = [run for run in RUNS if run.startswith("uv export")]
    return [UV, *shlex.split(run)[1:]]


def test_the_image_installs_under_the_lock_with_the_locked_uv():
    """Every package of the image at uv.lock's version (the lock's export is pip's constraints file), made with the
    uv release the lock pins; `--locked`: a lock behind pyproject.toml stops the build."""
    command = lock_export()
    assert {"--locked", "--no-hashes", "--no-emit-project"} <= set(command)
    assert command[command.index("--extra") + 1] == "serve"
    assert command[command.index("--output-file") + 1] == "/lock-constraints.txt"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (uv,) = [p["version"] for p in lock["package"] if p["name"] == "uv"]
    assert re.search(r"^ARG UV_VERSION=(\S+)$", DOCKERFILE, re.M).group(1) == uv


@pytest.mark.skipif(UV is None, reason="no uv beside this Python (pip install -e '.[dev]')")
def test_the_models_pins_are_the_locks_so_the_image_installs(exported, tmp_path):
    """The exported model's pins (requirements.txt, serve-requirements.txt) against the constraints the image
    installs under, for this Python: a pin the lock does not hold would stop `docker build`."""
    out, _ = exported
    command = lock_export()
    command[command.index("--directory") + 1] = str(ROOT)
    command[command.index("--output-file") + 1] = str(tmp_path / "lock-constraints.txt")
    subprocess.run(command, check=True, timeout=120)
    locked = {}
    for line in (tmp_path / "lock-constraints.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():
                locked[requirement.name] = requirement.specifier
    pins = [Requirement(line) for name in ("requirements.txt", "serve-requirements.txt")
            for line in (out / name).read_text().split()]
    assert {p.name for p in pins} >= {"torch", "mlflow", "fastapi", "uvicorn"}
    assert {p.name: str(p.specifier) for p in pins if str(p.specifier) != str(locked.get(p.name))} == {}


def test_the_images_command_serves_the_exported_model_without_a_tracking_server(exported, processed, tmp_path):
    out, version = exported
    env = image_env(out)
    where = subprocess.run([sys.executable, "-c", "import seqrec; print(seqrec.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(out / "code"))  # the code the model carries, not the checkout's
    port = free_port()
    command = json.loads(re.search(r"^CMD (\[.+\])$", DOCKERFILE, re.M).group(1))
    command = [sys.executable if c == "python" else str(port) if c == "8000" else c for c in command]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/health", proc)
        status, meta = call(base + "/metadata")
        assert status == 200 and (meta["name"], meta["version"]) == ("seqrec-image-test", version)
        session = [str(i) for i in ProcessedDataset.load(processed).raw_ids[1:4]]
        status, body = call(base + "/recommend", {"session": session, "k": 5})
        expected = mlflow.pyfunc.load_model(str(out)).predict(pd.DataFrame({"session": [session]}), params={"k": 5})
        assert status == 200 and body["items"] == list(expected["items"][0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
