"""Shared fixtures: an isolated MLflow store, a tracking server, generated data, and the real sample when
present."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import answers_health, free_port

_DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "yoochoose-100k"
SAMPLE = Path(os.environ.get("SEQREC_SAMPLE", _DEFAULT_SAMPLE))


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory) -> str:
    """Point MLflow at a throw-away SQLite store for the whole test session."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    return uri


@pytest.fixture(scope="session", autouse=True)
def outside_the_checkout(tmp_path_factory):
    """Run the tests in a scratch directory: what a step writes relative to the working directory (``data/``,
    ``checkpoints/``, ``studies/``, the SQLite store's ``mlruns/``) never lands in the checkout."""
    before = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)



@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory) -> Iterator[str]:
    """The URI of an MLflow tracking server that proxies artifacts (``mlflow-artifacts:/``), as a team's does: the
    one CI names in ``SEQREC_TEST_TRACKING_SERVER``, else a throw-away ``mlflow server`` of our own on SQLite with
    ``--artifacts-destination`` in a temporary folder, on a free port, stopped at the end of the session."""
    given = os.environ.get("SEQREC_TEST_TRACKING_SERVER")
    if given:
        assert answers_health(given), f"SEQREC_TEST_TRACKING_SERVER={given} does not answer /health"
        yield given
        return
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
           f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(root / "server.log", "wb") as log:  # its own session: stopping it stops its workers too
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  start_new_session=True)
    try:
        deadline = time.time() + 120
        while not answers_health(uri):
            tail = (root / "server.log").read_text(errors="replace")[-2000:]
            assert server.poll() is None, f"mlflow server exited: {tail}"
            assert time.time() < deadline, f"mlflow server did not answer {uri}/health in 120 s: {tail}"
            time.sleep(0.25)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="session")
def device() -> str:
    """The device the model tests run on: ``SEQREC_TEST_DEVICE`` (cuda in the GPU check), else cpu."""
    return os.environ.get("SEQREC_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "train_full.txt").exists():
        pytest.skip(f"real YooChoose sample not found at {SAMPLE}")
    return SAMPLE


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """A 20,000-click generated dataset in raw YooChoose format."""
    from seqrec.data.synthetic import SyntheticConfig, generate

    return generate(tmp_path_factory.mktemp("raw"), SyntheticConfig(n_clicks=20_000, seed=7))


@pytest.fixture(scope="session")
def processed(generated, tmp_path_factory) -> Path:
    """The generated dataset, preprocessed with the default parameters."""
    from seqrec.data.preprocess import PreprocessConfig, preprocess
    from seqrec.data.readers import read_buys, read_clicks

    out = tmp_path_factory.mktemp("proc") / "synthetic"
    clicks, buys = generated
    preprocess(read_clicks(clicks), out, PreprocessConfig(), "synthetic", {"path": str(clicks)},
               buys=read_buys(buys))
    return out


DAY = 86_400
T0 = 1_400_000_000
# (session, item, time) of a hand-built dataset; with min_item_support=2 its split is known exactly
TINY_ROWS = [
    (1, 1, 0), (1, 2, 10), (1, 3, 20),  # A: train_tr
    (2, 2, 100), (2, 3, 110), (2, 1, 120),  # B: train_tr
    (3, 1, 200),  # C: one click, dropped
    (4, 9, 300), (4, 1, 310),  # D: item 9 has support 1 -> dropped, then D is too short
    (5, 1, 2 * DAY), (5, 4, 2 * DAY + 10),  # E: valid; 4 unseen in train_tr -> E too short for valid
    (7, 2, 2 * DAY + 100), (7, 3, 2 * DAY + 110),  # G: valid
    (6, 4, 3.5 * DAY), (6, 1, 3.5 * DAY + 5), (6, 5, 3.5 * DAY + 9),  # F: test; 5 has support 1
    (8, 6, 3.5 * DAY + 100), (8, 6, 3.5 * DAY + 110),  # H: test; item 6 unseen in train -> dropped
]


@pytest.fixture
def tiny(tmp_path):
    """The hand-built dataset in the prepared (TSV) format."""
    path = tmp_path / "tiny.tsv"
    lines = ["SessionId\tItemId\tTime"] + [f"{s}\t{i}\t{T0 + t}" for s, i, t in TINY_ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path
