"""Proof that a logged seqrec model runs anywhere: rebuilt outside the checkout from its own files.

    python benchmarks/model_env_check.py [--model-uri URI ...] [--env-manager virtualenv|uv]

Without ``--model-uri`` it trains a session-kNN baseline (V-SKNN) and a small SASRec on generated
data in a throw-away MLflow store. For each model it starts ``mlflow models serve`` with the chosen
environment manager from a temporary directory outside the checkout: MLflow creates a fresh virtual
environment (in a temporary ``MLFLOW_ENV_ROOT``) from the model's own ``python_env.yaml`` and
``requirements.txt`` (the checkout's ``seqrec`` is not installed there; the model's code path
supplies it), and the script sends it a batch of sessions with ``params: {"k": ...}`` over HTTP. It
compares those recommendations with the in-process model's, prints the time until each server was
ready (environment built, model loaded), and exits non-zero on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd


def train_models(work: Path) -> list[str]:
    """Train V-SKNN and a small SASRec on generated data; returns their model URIs."""
    from seqrec.data.preprocess import PreprocessConfig, preprocess
    from seqrec.data.readers import read_clicks
    from seqrec.data.synthetic import SyntheticConfig, generate
    from seqrec.workflow.baseline import run_baseline
    from seqrec.workflow.neural import run_neural

    clicks, _ = generate(work / "raw", SyntheticConfig(n_clicks=20_000, seed=5))
    data = work / "processed"
    preprocess(read_clicks(clicks), data, PreprocessConfig(), "generated", {"path": str(clicks)})
    os.environ.setdefault("SEQREC_CHECKPOINTS", str(work / "checkpoints"))
    knn = run_baseline(str(data), "vsknn")[0]
    sasrec = run_neural("sasrec", str(data), "tiny", {"progress": False})[0]
    return [f"runs:/{knn}/model", f"runs:/{sasrec}/model"]


def sessions_for(model) -> list[list[str]]:
    """Sessions of known, unknown and no items, taken from the model's own catalogue."""
    ids = [str(x) for x in model.unwrap_python_model().recommender.raw_ids[1:]]
    return [ids[:3], ids[5:6], ["not-an-item"], [], ids[10:40]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def invoke(port: int, payload: dict | None = None, path: str = "/invocations") -> tuple[int, dict]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        return response.status, json.loads(body) if body.strip() else {}


def serve_elsewhere(model_uri: str, sessions: list[list[str]], env_manager: str, k: int, env_root: Path,
                    timeout: float = 1500) -> tuple[list, float]:
    """``mlflow models serve`` in a fresh environment (under ``env_root``), started from a directory
    outside the checkout; returns its answer to one request and the seconds until it was ready."""
    cli = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    port = free_port()
    env = {**os.environ, "MLFLOW_ENV_ROOT": str(env_root)}
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "serve.log", "w+") as log:
        started = time.perf_counter()
        server = subprocess.Popen([cli, "models", "serve", "-m", model_uri, "-p", str(port), "--env-manager",
                                   env_manager], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"mlflow models serve exited for {model_uri}:\n{log.read()[-4000:]}")
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"mlflow models serve not ready after {timeout:.0f} s")
                try:
                    if invoke(port, path="/ping")[0] == 200:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(2)
            ready = time.perf_counter() - started
            _, answer = invoke(port, {"dataframe_records": [{"session": s} for s in sessions], "params": {"k": k}})
        finally:
            server.terminate()
            server.wait(timeout=60)
    return answer["predictions"], ready


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-uri", action="append", default=[], help="model URI(s); default: train two models")
    p.add_argument("--env-manager", default="virtualenv", help="virtualenv (pip) or uv")
    p.add_argument("--k", type=int, default=7)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        if not a.model_uri:
            os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(work) / 'mlflow.db'}")
            a.model_uri = train_models(Path(work))
        failures = 0
        for uri in a.model_uri:
            model = mlflow.pyfunc.load_model(uri)
            sessions = sessions_for(model)
            expected = model.predict(pd.DataFrame({"session": sessions}), params={"k": a.k})
            rebuilt, seconds = serve_elsewhere(uri, sessions, a.env_manager, a.k, Path(work) / "envs")
            same = [r["items"] for r in rebuilt] == list(expected["items"])
            failures += not same
            print(f"{uri}: {a.env_manager} environment built and model served in {seconds:.0f} s; "
                  f"recommendations {'identical' if same else 'DIFFERENT'} to the in-process model "
                  f"({len(sessions)} sessions, k={a.k})", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
