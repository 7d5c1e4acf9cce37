"""The workflow against a real team tracking server: `mlflow server` on PostgreSQL with artifacts served by the
server (scripts/tracking_server.sh). CI starts one and names it in ``SEQREC_TEST_TRACKING_SERVER`` (and the
studies' database in ``SEQREC_TEST_STUDY_STORAGE``); otherwise the module starts a throw-away one itself, and
skips where PostgreSQL is not installed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.helpers import answers_health, free_port, tracking_at

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "tracking_server.sh"
SERVER_VARIABLE = "SEQREC_TEST_TRACKING_SERVER"
STORAGE_VARIABLE = "SEQREC_TEST_STUDY_STORAGE"


@dataclass
class Backend:
    """A tracking server, the PostgreSQL URL of its studies' database, and its artifact folder when known."""

    uri: str
    study_storage: str
    artifacts: Path | None = None
    seconds_to_start: float = 0.0




def why_no_postgresql() -> str:
    """Why this machine cannot start a PostgreSQL-backed server for the tests ("" when it can)."""
    if shutil.which("pg_ctlcluster") is None:
        return "PostgreSQL is not installed (no pg_ctlcluster; .ci/run installs it)"
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        return "starting PostgreSQL and creating its role needs root or sudo"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver is not installed (pip install -e '.[dev]')"
    return ""


@contextlib.contextmanager
def team_backend(tmp: Path) -> Iterator[Backend | str]:
    """The server CI names, or a throw-away one of our own (fresh databases, dropped at the end, and PostgreSQL
    stopped again if it was down); the reason as a string where none can be had."""
    given = os.environ.get(SERVER_VARIABLE)
    if given:
        assert answers_health(given), f"{SERVER_VARIABLE}={given} does not answer /health"
        yield Backend(given, os.environ.get(STORAGE_VARIABLE, ""))
        return
    reason = why_no_postgresql()
    if reason:
        yield reason
        return
    env = {**os.environ, "SEQREC_SERVER_PORT": str(free_port()), "SEQREC_SERVER_DIR": str(tmp),
           "SEQREC_DB": f"seqrec_test_{os.getpid()}", "SEQREC_DB_FRESH": "1", "SEQREC_PG_INSTALL": "0",
           "SEQREC_MLFLOW": str(Path(sys.executable).with_name("mlflow"))}

    def script(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=240)

    started = time.perf_counter()
    try:
        result = script("start")
        assert result.returncode == 0, result.stderr[-3000:]
        exports = dict(line.removeprefix("export ").split("=", 1) for line in script("env").stdout.splitlines())
        yield Backend(exports["MLFLOW_TRACKING_URI"], exports["SEQREC_STUDY_DB"], tmp / "artifacts",
                      time.perf_counter() - started)
    finally:
        script("drop")
        script("stop")


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Iterator[Backend]:
    with team_backend(tmp_path_factory.mktemp("tracking-server")) as found:
        if isinstance(found, str):
            pytest.skip(found)
        with tracking_at(found.uri):
            yield found


@dataclass
class Pipeline:
    """What the workflow left on the server: the steps' exit codes and seconds, the dataset, the runs."""

    data: Path
    started_ms: int
    codes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pipeline(backend, tmp_path_factory) -> Pipeline:
    """preprocess, a baseline, SASRec (tiny, 1 epoch), main, register, evaluate the champion, tune: each through
    its entry point, in a folder of its own, logging to the server."""
    import steps.evaluate
    import steps.main
    import steps.preprocess
    import steps.register
    import steps.train_baseline
    import steps.train_sasrec
    import steps.tune

    work = tmp_path_factory.mktemp("team-workflow")
    data = work / "data" / "processed" / "synthetic-12000-s0"
    out = Pipeline(data, int(time.time() * 1000) - 1000)
    plan = [
        ("preprocess", steps.preprocess.main, ["--synthetic-clicks", "12000"]),
        ("train_baseline", steps.train_baseline.main, ["--data", str(data), "--model", "pop"]),
        ("train_sasrec", steps.train_sasrec.main, ["--data", str(data), "--preset", "tiny", "--epochs", "1",
                                                   "--params", "progress=false,threads=1"]),
        ("main", steps.main.main, ["--models", "pop,sr", "--synthetic-clicks", "12000"]),
        ("register", steps.register.main, ["--data", str(data)]),
        ("evaluate", steps.evaluate.main, ["--data", str(data), "--model-uri", "models:/seqrec@champion"]),
        ("tune", steps.tune.main, ["--model", "sr", "--data", str(data), "--trials", "2", "--study",
                                   f"team-sr-{os.getpid()}-{out.started_ms}"]),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        for name, step, argv in plan:
            started = time.perf_counter()
            out.codes[name] = step(argv)
            out.seconds[name] = time.perf_counter() - started
            assert out.codes[name] == 0, f"{name} failed against {backend.uri}"
    return out


def _runs(pipeline: Pipeline) -> list:
    return mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("seqrec").experiment_id],
        f"attributes.start_time >= {pipeline.started_ms}", max_results=1000)


def test_every_step_logs_finished_runs_to_the_server(backend, pipeline):
    runs = _runs(pipeline)
    steps = {r.data.tags.get("seqrec.step") for r in runs}
    assert {"preprocess", "train_baseline", "train_sasrec", "main", "register", "evaluate", "tune",
            "tune_trial"} <= steps, steps
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    # artifacts go through the server (its artifact proxy), never to a local folder of the client
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:/") for r in runs)
    print(f"\nserver start {backend.seconds_to_start:.1f} s; steps (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in pipeline.seconds.items()))


def test_models_are_logged_to_and_served_by_the_server(backend, pipeline):
    sasrec = next(r for r in _runs(pipeline) if r.data.tags.get("seqrec.step") == "train_sasrec")
    models = mlflow.search_logged_models(experiment_ids=[sasrec.info.experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{sasrec.info.run_id}'")
    assert len(models) == 1 and models[0].artifact_location.startswith("mlflow-artifacts:/")
    assert "test_recall_at_20" in {m.key for m in models[0].metrics}
    files = {Path(a.path).name for a in mlflow.artifacts.list_artifacts(artifact_uri=models[0].artifact_location)}
    assert "MLmodel" in files
    plots = mlflow.MlflowClient().list_artifacts(sasrec.info.run_id, "plots")
    assert plots and all(a.path.endswith(".png") for a in plots)
    if backend.artifacts is not None:  # our own server: the bytes are in its artifact store
        assert list(backend.artifacts.rglob("MLmodel")) and list(backend.artifacts.rglob("*.png"))


def test_the_champion_is_registered_evaluated_and_tuned_on_the_server(pipeline):
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("seqrec", "champion")
    assert champion.tags["seqrec.data_digest"] and champion.tags["seqrec.model"]
    evaluate = next(r for r in _runs(pipeline) if r.data.tags.get("seqrec.step") == "evaluate")
    assert 0 < evaluate.data.metrics["test_recall_at_20"] <= 1
    tune = next(r for r in _runs(pipeline) if r.data.tags.get("seqrec.step") == "tune")
    trials = [r for r in _runs(pipeline) if r.data.tags.get("seqrec.step") == "tune_trial"
              and r.data.tags["seqrec.study"] == tune.data.tags["seqrec.study"]]
    assert len(trials) == 2 and tune.data.metrics["trials_added"] == 2
    final = client.get_run(tune.data.tags["seqrec.final_run_id"])
    assert final.info.status == "FINISHED" and "test_mrr_at_20" in final.data.metrics


def test_the_champion_serves_from_models_uri(pipeline):
    from seqrec.data.dataset import ProcessedDataset

    data = ProcessedDataset.load(pipeline.data)
    model = mlflow.pyfunc.load_model("models:/seqrec@champion")
    known = [data.raw_ids[i] for i in (1, 2, 3)]
    answer = model.predict(pd.DataFrame({"session": [known, []], "k": [5, 5]}))
    assert [len(items) for items in answer["items"]] == [5, 5]
    assert all(s == sorted(s, reverse=True) for s in answer["scores"])


def test_the_http_service_loads_the_champion_from_the_server(backend, pipeline):
    import json

    from seqrec.data.dataset import ProcessedDataset

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": backend.uri, "MODEL_URI": "models:/seqrec@champion"}
    proc = subprocess.Popen([sys.executable, "-c", "from seqrec.serving.api import main; main()", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while not answers_health(base) and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.3)
        item = ProcessedDataset.load(pipeline.data).raw_ids[4]
        request = urllib.request.Request(base + "/recommend", json.dumps({"session": [item], "k": 3}).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200 and len(json.loads(answer.read())["items"]) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)
