"""Distributed tuning: workers started with the same `tune` command and a shared Optuna storage (PostgreSQL, or a
journal file on a shared file system) add their trials to one study, none lost or run twice, each trial an MLflow
run found by the study's tag; at the end a setting is trained and tested once and the other workers reuse it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pytest
from test_tracking_server import Backend, team_backend, tracking_at

from seqrec import tuning
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_clicks
from seqrec.data.synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parents[1]
TRIALS = (3, 2)  # what each of the two workers asks for


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A 6,000-click generated dataset: an sr trial takes a fraction of a second."""
    root = tmp_path_factory.mktemp("storage-data")
    clicks, _ = generate(root / "raw", SyntheticConfig(n_clicks=6000, seed=5))
    preprocess(read_clicks(clicks), root / "small", PreprocessConfig(), "small", {"path": str(clicks)})
    return root / "small"


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Iterator[Backend | str]:
    """The team server and its studies' database, or why there is none."""
    with team_backend(tmp_path_factory.mktemp("storage-server")) as found:
        yield found


def _workers(storage: str, study: str, data: Path, tracking_uri: str, work: Path) -> list[str]:
    """Two `tune` processes on one study, started together; their output."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(ROOT)}
    mlflow.MlflowClient(tracking_uri).search_experiments(max_results=1)  # a new SQLite store: its tables first
    procs = [subprocess.Popen([sys.executable, "-m", "steps.tune", "--model", "sr", "--data", str(data), "--trials",
                               str(n), "--study", study, "--storage", storage], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in TRIALS]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
    return outputs


def _check_one_study(storage: str, study_name: str) -> None:
    """No trial lost or run twice, in the study and in MLflow; each worker's counts; final runs never clash."""
    study = optuna.load_study(study_name=study_name, storage=tuning.open_storage(storage))
    trials = study.get_trials()
    assert len(trials) == sum(TRIALS) and sorted(t.number for t in trials) == list(range(sum(TRIALS)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)

    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("seqrec").experiment_id
    tagged = client.search_runs([experiment], f"tags.`seqrec.study` = '{study_name}'", max_results=1000)
    trial_runs = [r for r in tagged if r.data.tags["seqrec.step"] == "tune_trial"]
    assert len(trial_runs) == len(trials) and all(r.info.status == "FINISHED" for r in trial_runs)
    assert {r.info.run_id for r in trial_runs} == {t.user_attrs["run_id"] for t in trials}
    assert sorted(int(r.data.tags["seqrec.trial"]) for r in trial_runs) == list(range(sum(TRIALS)))

    parents = [r for r in tagged if r.data.tags["seqrec.step"] == "tune"]
    assert len(parents) == 2 and len({r.data.tags["seqrec.worker"] for r in parents}) == 2
    assert sorted(r.data.metrics["trials_added"] for r in parents) == sorted(TRIALS)
    assert max(r.data.metrics["trials_total"] for r in parents) == sum(TRIALS)  # the later one saw them all
    for parent in parents:  # each trial nests under the worker that ran it
        mine = {r.info.run_id for r in trial_runs if r.data.tags["mlflow.parentRunId"] == parent.info.run_id}
        assert mine == {t.user_attrs["run_id"] for t in trials if t.user_attrs["tune_run_id"] == parent.info.run_id}

    # the end: each worker points at a finished final run of its best setting; a setting is trained once
    finals = [r for r in tagged if r.data.tags["seqrec.step"] == "train_baseline"]
    assert finals and all(r.info.status == "FINISHED" for r in finals)
    assert len({r.data.tags["seqrec.final_key"] for r in finals}) == len(finals)
    pointed = {r.data.tags["seqrec.final_run_id"] for r in parents}
    assert pointed == {r.info.run_id for r in finals}
    reused = [r.data.tags["seqrec.final_reused"] == "true" for r in parents]
    assert reused.count(True) == 2 - len(finals)
    for parent in parents:
        final = client.get_run(parent.data.tags["seqrec.final_run_id"])
        assert final.data.tags["seqrec.best_trial"] == parent.data.tags["seqrec.best_trial"]
        assert "test_mrr_at_20" in final.data.metrics


def test_two_workers_share_a_postgresql_study(backend, small, tmp_path):
    if isinstance(backend, str) or not backend.study_storage:
        pytest.skip(backend if isinstance(backend, str) else "SEQREC_TEST_STUDY_STORAGE is not set")
    name = f"pg-sr-{os.getpid()}-{int(time.time())}"
    with tracking_at(backend.uri):
        _workers(backend.study_storage, name, small, backend.uri, tmp_path)
        _check_one_study(backend.study_storage, name)


def test_two_workers_share_a_journal_file_study(backend, small, tmp_path):
    """A journal file needs no database; MLflow is the team server where there is one, else a SQLite file."""
    uri = backend.uri if isinstance(backend, Backend) else f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"journal://{tmp_path / 'shared' / 'studies.log'}"
    name = f"journal-sr-{os.getpid()}-{int(time.time())}"
    with tracking_at(uri):
        outputs = _workers(storage, name, small, uri, tmp_path)
        _check_one_study(storage, name)
    assert all("shared/studies.log" in output for output in outputs)  # where the study is, said by each worker


def test_a_shared_study_refuses_another_model_or_dataset(tmp_path):
    storage = f"journal://{tmp_path / 'studies.log'}"
    identity = {"model": "sr", "preset": "", "data_digest": "d1", "metric": "val_mrr_at_20"}
    study = tuning.open_study("shared", identity, storage=storage)
    assert study.user_attrs == identity
    assert tuning.open_study("shared", identity, storage=storage).study_name == "shared"  # another worker joins
    with pytest.raises(ValueError, match="was made for"):
        tuning.open_study("shared", {**identity, "data_digest": "d2"}, storage=storage)


def test_storage_urls_are_checked_before_any_work_and_passwords_never_shown():
    for url in ("", "journal:///tmp/x.log", "postgresql://u@h/db", "postgresql+psycopg://u:p@h:5432/db",
                "sqlite:////tmp/s.db", "mysql+pymysql://u@h/db"):
        tuning.check_storage(url)
    for bad in ("postgres.example/db", "redis://h", "journal:", "/tmp/studies.db"):
        with pytest.raises(ValueError, match="expected an Optuna RDB URL"):
            tuning.check_storage(bad)
    shown = tuning.describe_storage("postgresql+psycopg://seqrec:s3cret@db.example:5432/studies")
    assert shown == "postgresql+psycopg://seqrec:***@db.example:5432/studies"
    with pytest.raises(ValueError, match="redis://h"):
        from seqrec.workflow.tune import TuneParams

        TuneParams("sr", "data", storage="redis://h")
