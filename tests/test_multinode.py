"""Training on several machines that share no file system: two torchrun nodes of one process each, on loopback,
each started from its own working directory with its own copy of the dataset (so no checkpoint folder is shared),
against a tracking server that proxies artifacts (``tracking_server`` in conftest: CI's, or a throw-away one); a
run killed after its first epoch that resumes from a third, fresh folder, fetching its checkpoint from the run's
artifacts, to the metrics of the uninterrupted run; and nodes holding different datasets stopped clearly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import torch

from tests.helpers import KILLED_IN_SEED_2, free_port, tracking_at
from tests.test_faults import _PRELUDE

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(TORCHRUN is None or not torch.distributed.is_available(),
                                reason="torchrun or torch.distributed is not available")

# sasrec's tiny preset for 2 epochs, both validated (patience 2), so the best epoch and the refit depend on epoch 2
TRAIN = ["--model", "sasrec", "--data", "data", "--preset", "tiny", "--epochs", "2", "--patience", "2",
         "--progress", "false", "--threads", "1"]
# rank 0 is killed (SIGKILL) once its first checkpoint is saved (written here and uploaded to the run)
KILLED_AFTER_EPOCH_1 = _PRELUDE + """
if os.environ.get("RANK") == "0":
    from seqrec.checkpoints import Checkpointer
    inject(Checkpointer, "save", 1, after=True)
from seqrec.train import main
sys.exit(main(sys.argv[1:]))
"""
FINAL = ("best_val_mrr_at_20", "best_val_recall_at_20", "test_mrr_at_20", "test_recall_at_20", "best_epoch")


@dataclass
class Node:
    """One torchrun node's working directory and what its command printed."""

    cwd: Path
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""



def _env(uri: str) -> dict[str, str]:
    """The nodes' environment: the server, and no checkpoint folder but the working directory's own."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "SEQREC_CHECKPOINTS"):
        env.pop(inherited, None)
    return env


def _machine(root: Path, name: str, processed: Path) -> Path:
    """A fresh working directory holding its own copy of the processed dataset (``data``)."""
    cwd = root / name
    shutil.copytree(processed, cwd / "data")
    return cwd


def _run_nodes(cwds: list[Path], program: list[str], env: dict[str, str], timeout: float = 150) -> list[Node]:
    """``torchrun --nnodes=len(cwds) --nproc_per_node=1 --rdzv_backend=c10d`` on loopback, one node per working
    directory, started together; each node's exit status and output (all are killed after ``timeout``)."""
    endpoint = f"127.0.0.1:{free_port()}"
    with ExitStack() as files:
        # files, not pipes: a node blocked on a full pipe that nobody reads would stall the other
        outputs = [tuple(files.enter_context(tempfile.TemporaryFile("w+")) for _ in range(2)) for _ in cwds]
        procs = [subprocess.Popen([TORCHRUN, f"--nnodes={len(cwds)}", "--nproc_per_node=1", f"--node_rank={rank}",
                                   "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", *program],
                                  cwd=cwd, env=env, stdout=out, stderr=err, text=True, start_new_session=True)
                 for rank, (cwd, (out, err)) in enumerate(zip(cwds, outputs, strict=True))]
        deadline = time.time() + timeout
        try:
            for proc in procs:
                proc.wait(timeout=max(1.0, deadline - time.time()))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        nodes = []
        for cwd, proc, (out, err) in zip(cwds, procs, outputs, strict=True):
            out.seek(0)
            err.seek(0)
            nodes.append(Node(cwd, proc.returncode, out.read(), err.read()))
    return nodes


@pytest.fixture(scope="module")
def loopback(tmp_path_factory) -> None:
    """Skip, saying why, where two torchrun nodes cannot meet on loopback (c10d rendezvous, then gloo)."""
    root = tmp_path_factory.mktemp("rendezvous")
    probe = root / "probe.py"
    probe.write_text("import torch, torch.distributed as dist\ndist.init_process_group('gloo')\n"
                     "t = torch.ones(1)\ndist.all_reduce(t)\nassert t.item() == 2\ndist.destroy_process_group()\n")
    try:
        nodes = _run_nodes([root, root], [str(probe)], dict(os.environ), timeout=90)
    except subprocess.TimeoutExpired:
        pytest.skip("two torchrun nodes did not meet on 127.0.0.1 within 90 s (c10d rendezvous or gloo)")
    failed = [n for n in nodes if n.returncode != 0]
    if failed:
        pytest.skip(f"two torchrun nodes cannot rendezvous on 127.0.0.1 here: {failed[0].stderr.strip()[-500:]}")


@pytest.fixture(scope="module")
def server(tracking_server) -> Iterator[str]:
    with tracking_at(tracking_server):
        yield tracking_server


@dataclass
class Uninterrupted:
    """The two-node run that nothing interrupted."""

    nodes: list[Node]
    run_id: str
    started_ms: int
    ended_ms: int


@pytest.fixture(scope="module")
def uninterrupted(loopback, server, processed, tmp_path_factory) -> Uninterrupted:
    root = tmp_path_factory.mktemp("two-machines")
    started = int(time.time() * 1000) - 1000
    nodes = _run_nodes([_machine(root, "a", processed), _machine(root, "b", processed)],
                       ["-m", "seqrec.train", *TRAIN], _env(server))
    for node in nodes:
        assert node.returncode == 0, node.stderr[-3000:]
    reports = [line for n in nodes for line in n.stdout.splitlines() if line.startswith("train_sasrec: run ")]
    assert len(reports) == 1, reports  # rank 0 reports, on whichever node it is
    return Uninterrupted(nodes, reports[0].split()[2].rstrip(":"), started, int(time.time() * 1000) + 1000)


def _checkpoints(cwd: Path) -> list[Path]:
    return sorted(cwd.glob("checkpoints/*/last.pt"))


def _steps(run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient().get_metric_history(run_id, metric))


def _by_step(run_id: str, metric: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, metric))


def test_two_nodes_without_a_shared_folder_make_one_run_logged_once(uninterrupted):
    client = mlflow.MlflowClient()
    run = client.get_run(uninterrupted.run_id)
    assert run.info.status == "FINISHED"
    key = run.data.tags["seqrec.checkpoint_key"]
    same = client.search_runs([run.info.experiment_id], f"tags.`seqrec.checkpoint_key` = '{key}' and "
                              f"attributes.start_time >= {uninterrupted.started_ms} and "
                              f"attributes.start_time <= {uninterrupted.ended_ms}")
    assert [r.info.run_id for r in same] == [uninterrupted.run_id]  # the run is created once, by rank 0
    assert _steps(uninterrupted.run_id, "train_loss") == [1, 2]  # every epoch logged once
    assert _steps(uninterrupted.run_id, "val_mrr_at_20") == [1, 2]
    best = int(run.data.metrics["best_epoch"])
    assert _steps(uninterrupted.run_id, "refit_train_loss") == list(range(1, best + 1))
    assert len(client.get_metric_history(uninterrupted.run_id, "test_mrr_at_20")) == 1
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{uninterrupted.run_id}'")
    assert len(models) == 1 and models[0].artifact_location.startswith("mlflow-artifacts:/")
    # the checkpoint is in the run's artifacts (the latest only) and in rank 0's folder; the other node has none
    assert [a.path for a in client.list_artifacts(uninterrupted.run_id, "checkpoints")] == ["checkpoints/last.pt"]
    assert sorted(len(_checkpoints(n.cwd)) for n in uninterrupted.nodes) == [0, 1]


def test_a_killed_run_resumes_from_a_fresh_folder_to_the_uninterrupted_metrics(uninterrupted, server, processed,
                                                                               tmp_path):
    driver = tmp_path / "killed_after_epoch_1.py"
    driver.write_text(KILLED_AFTER_EPOCH_1)
    first, second = _machine(tmp_path, "a", processed), _machine(tmp_path, "b", processed)
    killed = _run_nodes([first, second], [str(driver), *TRAIN], _env(server))
    assert all(n.returncode != 0 for n in killed)
    assert any("Signal 9 (SIGKILL)" in n.stderr for n in killed), [n.stderr[-2000:] for n in killed]
    run_json = [p for n in killed for p in n.cwd.glob("checkpoints/*/run.json")]
    assert len(run_json) == 1  # rank 0's node only
    run_id = json.loads(run_json[0].read_text())["run_id"]
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING"  # what a kill leaves
    saved = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoints/last.pt",
                                                dst_path=str(tmp_path / "saved"))
    assert torch.load(saved, weights_only=True)["epoch"] == 1

    third = _machine(tmp_path, "c", processed)  # another machine: none of the run's files
    resumed = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "seqrec.train", *TRAIN,
                              "--resume", "true"], cwd=third, env=_env(server), capture_output=True, text=True,
                             timeout=150)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint: fetched the latest checkpoint" in resumed.stdout
    assert f"train_sasrec: run {run_id}:" in resumed.stdout  # the same run, continued
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    reference = client.get_run(uninterrupted.run_id).data.metrics
    for key in FINAL:
        assert run.data.metrics[key] == reference[key], key
    # epoch 1 logged by the killed process, epoch 2 by the resumed one, each as in the uninterrupted run (every
    # rank resumed its own random stream)
    for metric in ("train_loss", "val_loss", "val_mrr_at_20"):
        assert _by_step(run_id, metric) == _by_step(uninterrupted.run_id, metric), metric


def test_nodes_holding_different_datasets_stop_saying_which(loopback, server, processed, tmp_path):
    first, second = _machine(tmp_path, "a", processed), _machine(tmp_path, "b", processed)
    stats = json.loads((second / "data" / "stats.json").read_text())
    (second / "data" / "stats.json").write_text(json.dumps({**stats, "digest": "0123456789abcdef"}))
    nodes = _run_nodes([first, second], ["-m", "seqrec.train", *TRAIN], _env(server))
    for node in nodes:
        assert node.returncode != 0
        errors = [line for line in node.stderr.splitlines() if line.startswith("train_sasrec: error:")]
        assert len(errors) == 1, node.stderr[-3000:]
        assert "the ranks do not hold the same dataset" in errors[0] and "0123456789abcdef" in errors[0]
        assert stats["digest"] in errors[0] and "preprocess the same raw files" in errors[0]
    assert not any(_checkpoints(n.cwd) for n in nodes)


def test_a_run_of_two_seeds_resumes_each_seed_on_another_machine(server, processed, tmp_path):
    # the seeds one after another: the kill is in this process, not in a worker of parallel seeds
    over = {"progress": False, "epochs": 2, "patience": 2, "threads": 1, "seed_processes": 1}
    argv = ["--model", "meanemb", "--data", "data", "--preset", "tiny", "--seeds", "2",
            *[str(x) for k, v in over.items() for x in (f"--{k}", v)]]
    driver = tmp_path / "killed_in_seed_2.py"
    driver.write_text(KILLED_IN_SEED_2)
    first = _machine(tmp_path, "a", processed)
    killed = subprocess.run([sys.executable, str(driver), *argv], cwd=first, env=_env(server), capture_output=True,
                            text=True, timeout=150)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_id = json.loads(next(first.glob("checkpoints/*/run.json")).read_text())["run_id"]
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(run_id, "checkpoints")} == {"checkpoints/last.pt",
                                                                              "checkpoints/seed2"}
    second = _machine(tmp_path, "b", processed)
    resumed = subprocess.run([sys.executable, "-m", "seqrec.train", *argv, "--resume", "true"], cwd=second,
                             env=_env(server), capture_output=True, text=True, timeout=150)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count("checkpoint: fetched the latest checkpoint") == 2  # each seed's own
    assert client.get_run(run_id).info.status == "FINISHED"
    fresh = subprocess.run([sys.executable, "-m", "seqrec.train", *argv], cwd=_machine(tmp_path, "c", processed),
                           env=_env(server), capture_output=True, text=True, timeout=150)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    fresh_id = fresh.stdout.split("train_meanemb: run ")[1].split(":")[0]
    assert fresh_id != run_id
    a, b = client.get_run(run_id).data.metrics, client.get_run(fresh_id).data.metrics
    for key in ("test_mrr_at_20", "test_mrr_at_20_seed2", "best_val_mrr_at_20_seed2", "best_epoch_seed2"):
        assert a[key] == b[key], key
    assert _steps(run_id, "train_loss_seed2") == [1, 2]
