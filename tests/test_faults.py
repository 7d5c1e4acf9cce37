"""Fault injection: kill -9 in the middle of preprocess, training and register; an unreachable tracking
server; a full disk. Every fault is injected deterministically: the step runs in a subprocess whose
driver wraps a function the step calls mid-way so that its Nth call kills the process (SIGKILL) or
raises, never by timing. (A truncated checkpoint is tested in test_training.py.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from seqrec.data.dataset import SPLITS, SessionSplit
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_buys, read_clicks
from tests.helpers import tracking_at

ROOT = Path(__file__).resolve().parents[1]

# ``inject(owner, name, nth)``: the Nth call of ``owner.name`` kills the process before it runs (or,
# with ``after=True``, once it has returned), or raises ``error(args)`` instead of running
_PRELUDE = """
import functools, os, signal, sys

def inject(owner, name, nth, *, after=False, error=None):
    original, calls = getattr(owner, name), [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth and not after:
            if error is not None:
                raise error(args)
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls[0] == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)
"""


def _drive(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` after the prelude in a fresh interpreter from the repository root."""
    return subprocess.run([sys.executable, "-c", _PRELUDE + code], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _siblings(out: Path) -> list[str]:
    """What a writer of ``out`` left beside it (temporary or swapped-out directories)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _preprocess_code(generated, out: Path) -> str:
    clicks, buys = generated
    return (f"from seqrec.data.preprocess import PreprocessConfig, preprocess\n"
            f"from seqrec.data.readers import read_buys, read_clicks\n"
            f"preprocess(read_clicks({str(clicks)!r}), {str(out)!r}, PreprocessConfig(), 'synthetic', "
            f"{{'path': {str(clicks)!r}}}, buys=read_buys({str(buys)!r}))\n")


def _preprocess_here(generated, out: Path) -> dict:
    clicks, buys = generated
    return preprocess(read_clicks(clicks), out, PreprocessConfig(), "synthetic", {"path": str(clicks)},
                      buys=read_buys(buys))


def _assert_complete(out: Path, stats: dict) -> None:
    assert json.loads((out / "stats.json").read_text()) == stats
    for split in SPLITS:
        assert SessionSplit.load(out / "splits" / split).n_clicks == stats["splits"][split]["clicks"]


def test_kill_during_preprocess_leaves_no_partial_output_and_the_next_run_succeeds(generated, tmp_path):
    out = tmp_path / "synthetic"
    # killed after the first split is written, before the second: no previous output
    kill = "from seqrec.data.dataset import SessionSplit\ninject(SessionSplit, 'save', 2)\n"
    killed = _drive(kill + _preprocess_code(generated, out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    assert len(_siblings(out)) == 1  # a kill runs no clean-up: the half-written temporary directory stays ...
    stats = _preprocess_here(generated, out)
    _assert_complete(out, stats)
    assert _siblings(out) == []  # ... and the next run removes it
    # killed again, now over a complete output: that output stays as it was
    killed = _drive(kill + _preprocess_code(generated, out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _assert_complete(out, stats)
    again = _drive(_preprocess_code(generated, out))
    assert again.returncode == 0, again.stderr[-2000:]
    _assert_complete(out, stats)
    assert _siblings(out) == []


def test_a_full_disk_during_preprocess_is_one_clear_line_and_leaves_nothing(generated, tmp_path):
    clicks, buys = generated
    out = tmp_path / "synthetic"
    code = ("import errno, numpy as np\n"
            "inject(np, 'save', 3, error=lambda a: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(a[0])))\n"
            "from steps.preprocess import main\n"
            f"sys.exit(main(['--clicks', {str(clicks)!r}, '--buys', {str(buys)!r}, '--out', {str(out)!r}]))\n")
    result = _drive(code)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("preprocess: error: No space left on device: "), result.stderr
    assert str(tmp_path) in errors[0] and errors[0].endswith("(the disk is full: free space or write elsewhere)")
    assert not out.exists() and _siblings(out) == []


def test_kill_during_training_then_resume_reaches_the_uninterrupted_result(processed, tmp_path, monkeypatch):
    from seqrec.workflow.neural import run_neural

    over = {"progress": False, "epochs": 2, "patience": 2, "threads": 1}
    argv = ["--data", str(processed), "--preset", "tiny", *[str(x) for k, v in over.items() for x in (f"--{k}", v)]]
    code = ("from seqrec.checkpoints import Checkpointer\n"
            "inject(Checkpointer, 'save', 1, after=True)\n"  # killed once epoch 1's checkpoint is written
            "from seqrec.workflow.neural import cli\n"
            f"sys.exit(cli('meanemb', {argv!r}))\n")
    killed = _drive(code, env={"SEQREC_CHECKPOINTS": str(tmp_path / "ck")})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_dir = next((tmp_path / "ck").glob("meanemb-*"))
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    assert mlflow.get_run(run_id).info.status == "RUNNING"  # what a kill leaves
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path / "ck")
    resumed_id, resumed = run_neural("meanemb", str(processed), "tiny", over, resume=True)
    assert resumed_id == run_id and mlflow.get_run(run_id).info.status == "FINISHED"
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path / "fresh")
    fresh_id, fresh = run_neural("meanemb", str(processed), "tiny", over)
    assert fresh_id != run_id and resumed == fresh
    a, b = mlflow.get_run(run_id).data.metrics, mlflow.get_run(fresh_id).data.metrics
    for key in ("best_val_mrr_at_20", "best_val_recall_at_20", "test_mrr_at_20", "test_recall_at_20", "best_epoch"):
        assert a[key] == b[key], key
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "train_loss")]
    assert sorted(steps) == [1, 2]  # epoch 1 logged once, by the killed process; epoch 2 by the resumed one


# what a finished register writes on the champion's version
CHAMPION_TAGS = ("best_val_mrr_at_20", "selection_metric", "run_id", "model_id", "seqrec.model", "seqrec.preset",
                 "seqrec.dataset", "seqrec.data_digest")
REGISTER_NAMES = {"set_registered_model_alias": "faults-before-alias", "update_registered_model": "faults-after-alias"}


@pytest.fixture(scope="module")
def register_store(processed, tmp_path_factory) -> str:
    """A store of its own: a pop baseline that is each name's champion (version 1), then a better sr."""
    from seqrec.workflow.baseline import run_baseline
    from seqrec.workflow.register import run_register

    uri = f"sqlite:///{tmp_path_factory.mktemp('register-store') / 'mlflow.db'}"
    with tracking_at(uri):
        run_baseline(str(processed), "pop")
        for name in REGISTER_NAMES.values():
            assert str(run_register(str(processed), name=name)["version"]) == "1"
        run_baseline(str(processed), "sr")
    return uri


@pytest.fixture
def in_register_store(register_store) -> Iterator[None]:
    with tracking_at(register_store):
        yield


@pytest.mark.parametrize("point", list(REGISTER_NAMES))
def test_kill_during_register_leaves_a_champion_and_a_rerun_completes_it(in_register_store, processed, point):
    from seqrec.workflow.register import run_register

    name = REGISTER_NAMES[point]
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    code = ("from mlflow import MlflowClient\n"
            f"inject(MlflowClient, {point!r}, 1)\n"  # killed as the alias moves, or just after
            "from steps.register import main\n"
            f"sys.exit(main(['--data', {str(processed)!r}, '--name', {name!r}]))\n")
    killed = _drive(code)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    champion = client.get_model_version_by_alias(name, "champion")  # raises if the alias went missing
    assert str(champion.version) == ("1" if point == "set_registered_model_alias" else "2")
    decision = run_register(str(processed), name=name)
    assert decision["changed"] and str(decision["version"]) == "2"
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == "2" and set(CHAMPION_TAGS) <= set(champion.tags)
    assert champion.tags["seqrec.model"] == "sr" and "now version 2" in client.get_registered_model(name).description
    assert len(client.search_model_versions(f"name='{name}'")) == 2  # the rerun reused the killed run's version
    assert not run_register(str(processed), name=name)["changed"]


@pytest.fixture
def closed_port():
    """A local port that refuses connections: bound (so nothing else takes it) but not listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("step", [["steps.train_baseline", "--model", "pop"],
                                  ["steps.train_sasrec", "--preset", "tiny", "--progress", "false"]])
def test_an_unreachable_tracking_server_fails_in_one_line_before_any_training(processed, tmp_path, closed_port,
                                                                              step):
    uri = f"http://127.0.0.1:{closed_port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "SEQREC_CHECKPOINTS": str(tmp_path / "ck")}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", step[0], "--data", str(processed), *step[1:]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    name = step[0].split(".")[1]
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (f"{name}: error: the MLflow tracking server at {uri} cannot be reached "
                                     f"(Connection refused): start it, or set MLFLOW_TRACKING_URI to a reachable "
                                     f"server (or unset it for the local mlflow.db)")
    assert result.stdout == "" and not (tmp_path / "ck").exists()  # no epoch, no checkpoint, no evaluation
    assert seconds < 60  # the interpreter's start and imports; no retries, no training

