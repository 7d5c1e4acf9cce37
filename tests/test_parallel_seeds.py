"""``seeds=N`` trains its seeds at once in separate processes on CPU, to the same results as one after another."""

from __future__ import annotations

import mlflow
import pytest

import steps.train
from seqrec.workflow.neural import TAG_SEED_PROCESSES
from tests.helpers import KILLED_IN_SEED_2, KILLED_PARENT, own_store


def _train(processed, processes: int) -> mlflow.entities.Run:
    argv = ["--model", "sasrec", "--data", str(processed), "--preset", "tiny", "--epochs", "2", "--seeds", "2",
            "--params", f"progress=false,threads=1,seed_processes={processes}"]
    assert steps.train.main(argv) == 0
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string="tags.`seqrec.step` = 'train_sasrec'")
    return run


def test_seeds_in_parallel_processes_give_what_they_give_one_after_another(processed, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)  # the checkpoints
    runs = {}
    for processes in (1, 2):
        with own_store(tmp_path / str(processes)):
            runs[processes] = _train(processed, processes)
            history = {k: [m.value for m in mlflow.MlflowClient().get_metric_history(runs[processes].info.run_id, k)]
                       for k in ("val_mrr_at_20_seed2", "refit_train_loss_seed2")}
            runs[processes] = (runs[processes], history)
    (one, one_curves), (two, two_curves) = runs[1], runs[2]
    assert one.data.tags[TAG_SEED_PROCESSES] == "1" and two.data.tags[TAG_SEED_PROCESSES] == "2"
    final = ("test_mrr_at_20_mean", "test_mrr_at_20_std", "test_recall_at_20_seed2", "best_val_mrr_at_20_seed2")
    assert {k: two.data.metrics[k] for k in final} == {k: one.data.metrics[k] for k in final}
    assert two_curves == one_curves and len(two_curves["val_mrr_at_20_seed2"]) == 2  # the worker's curves, logged
    assert "sasrec_seed2 select epoch 2" in capfd.readouterr().out  # the worker says how its seed goes


@pytest.mark.parametrize(("seeds", "threads", "cores", "expected"), [(3, 0, 2, 2), (3, 0, 16, 3), (2, 2, 2, 1),
                                                                    (1, 0, 16, 1)])
def test_seed_processes_follow_the_cores(seeds, threads, cores, expected, monkeypatch):
    from seqrec.train_config import RuntimeConfig
    from seqrec.workflow import neural

    monkeypatch.setattr(neural.os, "sched_getaffinity", lambda _: set(range(cores)))
    job = neural._Job("sasrec", "", None, "tiny", None, None, RuntimeConfig(device="cpu", threads=threads), seeds)
    assert neural.seed_processes(job) == expected


def test_a_killed_seed_worker_fails_the_run_clearly_and_resume_finishes_it(processed, tmp_path):
    import os
    import subprocess
    import sys

    driver = tmp_path / "driver.py"
    driver.write_text(KILLED_IN_SEED_2)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'own.db'}"}
    argv = ["--model", "meanemb", "--data", str(processed), "--preset", "tiny", "--epochs", "2", "--seeds", "2",
            "--params", "progress=false,threads=1,seed_processes=2"]
    killed = subprocess.run([sys.executable, str(driver), *argv], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode != 0
    assert "the process training seed 2 died (killed, or out of memory): resume=true" in killed.stderr
    resumed = subprocess.run([sys.executable, "-m", "seqrec.train", *argv, "--resume", "true"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with own_store(tmp_path):
        (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
        assert run.info.status == "FINISHED" and "test_mrr_at_20_seed2" in run.data.metrics


def test_seed_workers_end_when_the_runs_process_is_killed(processed, tmp_path):
    """A killed run leaves no seed worker training on alone (they would write checkpoints nobody resumes)."""
    import os
    import subprocess
    import sys

    import psutil

    driver = tmp_path / "driver.py"
    driver.write_text(KILLED_PARENT)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'own.db'}"}
    argv = ["--model", "sasrec", "--data", str(processed), "--preset", "tiny", "--epochs", "500", "--seeds", "2",
            "--params", "progress=false,threads=1,seed_processes=2,patience=500"]  # the worker has minutes to go
    with open(tmp_path / "out.txt", "w") as out:  # not a pipe: a worker left alive would hold it open
        killed = subprocess.run([sys.executable, str(driver), *argv], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, timeout=300)
    assert killed.returncode == -9, (tmp_path / "out.txt").read_text()[-2000:]
    workers = [psutil.Process(int(pid)) for pid in (tmp_path / "workers.txt").read_text().split()
               if psutil.pid_exists(int(pid))]
    try:
        assert (tmp_path / "workers.txt").read_text().split(), "the run had no seed worker"
        gone, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, f"seed workers {[p.pid for p in alive]} still train after their run's process was killed"
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()
