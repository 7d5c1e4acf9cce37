import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import pandas as pd
import pytest

from seqrec.data.dataset import ProcessedDataset
from seqrec.workflow.baseline import run_baseline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, payload=None, raw=None):
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def wait_until_up(url, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def model_run(processed):
    run_id, _ = run_baseline(str(processed), "sr")
    return run_id


@pytest.fixture(scope="module")
def server(model_run):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from seqrec.serving.api import main; main()",
                             "--model-uri", f"runs:/{model_run}/model", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/health", proc)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_pyfunc_answers_protocol_requests(model_run, processed):
    model = mlflow.pyfunc.load_model(f"runs:/{model_run}/model")
    data = ProcessedDataset.load(processed)
    known = [data.raw_ids[i] for i in (1, 2, 3)]
    sessions = [known, ["not-an-item"], [], [int(known[0])] + known * 40]
    out = model.predict(pd.DataFrame({"session": sessions, "k": [7] * 4}))
    assert all(len(items) == 7 for items in out["items"])
    assert all(all(isinstance(i, str) for i in items) for items in out["items"])
    assert all(s == sorted(s, reverse=True) for s in out["scores"])
    popular = [str(data.raw_ids[i]) for i in data.popularity.argsort()[::-1][:7]]
    assert out["items"][1] == popular and out["items"][2] == popular  # unknown-only and empty sessions
    # a session longer than max_len uses its last clicks: same answer as the last 50 clicks alone
    long = (known * 40)[-50:]
    assert model.predict({"session": long, "k": 7})["items"][0] == out["items"][3]


def test_http_service_answers_one_session_and_batches(server, processed):
    data = ProcessedDataset.load(processed)
    item = data.raw_ids[5]
    status, body = call(server + "/recommend", {"session": [item, int(item)], "k": 5})
    assert status == 200 and len(body["items"]) == 5 and len(body["scores"]) == 5
    status, body = call(server + "/recommend", {"sessions": [[item], []], "k": 3})
    assert status == 200 and [len(r["items"]) for r in body["results"]] == [3, 3]
    status, meta = call(server + "/metadata")
    assert status == 200 and meta["n_items"] == data.n_items and meta["model"] == "sr"
    assert "test_recall_at_20" in meta["metrics"]


@pytest.mark.parametrize(("payload", "field"), [
    ({"session": "abc"}, "session"),
    ({"session": [1.5]}, "session"),
    ({"session": [1], "k": 0}, "k"),
    ({"session": [1], "k": 1001}, "k"),
    ({"sessions": [[1]] * 1001}, "sessions"),
    ({"sessions": [[1] * 5000, [2] * 5001]}, "body"),
    ({}, "body"),
    ({"session": [1], "sessions": [[1]]}, "body"),
    ({"session": [1], "k": "20"}, "k"),
])
def test_bad_requests_get_4xx_naming_the_field_and_the_server_keeps_serving(server, payload, field):
    status, body = call(server + "/recommend", payload)
    assert 400 <= status < 500
    assert any(field in d["field"] for d in body["detail"]), body
    assert call(server + "/health")[0] == 200


def test_malformed_json_is_a_4xx(server):
    status, _ = call(server + "/recommend", raw=b"{not json")
    assert 400 <= status < 500
    assert call(server + "/health")[0] == 200


@pytest.mark.skipif(shutil.which("mlflow", path=os.path.dirname(sys.executable)) is None, reason="no mlflow CLI")
def test_mlflow_models_serve_answers_invocations(model_run):
    version = mlflow.register_model(f"runs:/{model_run}/model", "seqrec-serve-test")
    mlflow.MlflowClient().set_registered_model_alias("seqrec-serve-test", "champion", version.version)
    port = free_port()
    cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    proc = subprocess.Popen([cli, "models", "serve", "-m", "models:/seqrec-serve-test@champion", "-p", str(port),
                             "--env-manager", "local"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PATH": os.path.dirname(cli) + os.pathsep + os.environ["PATH"]})
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc, timeout=120)
        status, body = call(f"http://127.0.0.1:{port}/invocations",
                            {"dataframe_records": [{"session": ["x"], "k": 4}]})
        assert status == 200
        assert len(body["predictions"][0]["items"]) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=30)
