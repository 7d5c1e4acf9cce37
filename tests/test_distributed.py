import os
import shutil
import subprocess
import sys

import mlflow
import pytest

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")
@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_two_processes_match_one_and_log_one_run(model, processed, tmp_path):
    """DDP on 2 CPU processes (gloo): the same test accuracy as one process within 0.05 Recall@20 and
    MRR@20 (the shards see the windows in a different order), and exactly one MLflow run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SEQREC_CHECKPOINTS": str(tmp_path / "ck")}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(inherited, None)
    args = ["--data", str(processed), "--preset", "tiny", "--epochs", "2", "--progress", "false", "--threads", "1"]
    single = subprocess.run([sys.executable, "-m", "seqrec.train", "--model", model, *args],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    # Any failure fails the test, native crashes included: benchmarks/stress_ddp.py measures the crash rate.
    double = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "seqrec.train", "--model",
                             model, *args, "--seed", "0"],
                            env={**env, "SEQREC_CHECKPOINTS": str(tmp_path / "ck2")},
                            capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("run ") == 1  # only rank 0 reports
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["seqrec"])
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    assert list(runs["status"]) == ["FINISHED", "FINISHED"]  # the single process, and the two ranks together
    a, b = runs.iloc[0], runs.iloc[1]
    for key in ("metrics.test_recall_at_20", "metrics.test_mrr_at_20"):
        assert abs(a[key] - b[key]) < 0.05, (key, a[key], b[key])


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")
def test_an_error_of_rank_0_stops_every_rank_without_waiting(processed, tmp_path):
    """resume=true with nothing to resume: rank 0 fails where the other ranks wait for the run it finds; they
    learn it at once (no hang until the process group's timeout), and rank 0 alone reports, in one line."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "SEQREC_CHECKPOINTS": str(tmp_path / "ck")}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(inherited, None)
    result = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "seqrec.train", "--model",
                             "meanemb", "--data", str(processed), "--preset", "tiny", "--progress", "false",
                             "--resume", "true"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("train_meanemb: error:")]
    assert len(errors) == 1 and "resume=true: no checkpoint of a meanemb run" in errors[0], result.stderr[-3000:]
    assert "RankZeroFailed" not in result.stderr
