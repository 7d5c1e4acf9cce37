"""Every entry point's documented paths through the entry point itself (``steps.NAME.main``, as ``mlflow run``
calls it): exit status, the summary line the user reads, and the run it leaves in MLflow."""

from __future__ import annotations

import importlib
from pathlib import Path

import mlflow
import pytest

from seqrec.data.dataset import ProcessedDataset

TINY = "progress=false"


def entry(name: str, argv: list[str], capsys, whole: bool = False) -> str:
    """Run entry point ``name``; its summary line, or all it printed (exit status 0 asserted)."""
    status = importlib.import_module(f"steps.{name}").main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out if whole else out.strip().splitlines()[-1]


def last_run(step: str):
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list", max_results=1,
                              filter_string=f"tags.`seqrec.step` = '{step}'", order_by=["attributes.start_time DESC"])
    assert runs, f"no {step} run"
    assert runs[0].info.status == "FINISHED"
    return runs[0]


@pytest.fixture(scope="module")
def data(processed) -> str:
    return str(processed)


def test_eda(data, capsys):
    assert entry("eda", ["--data", data], capsys).startswith("eda: ")
    run = last_run("eda")
    assert {"report.html"} <= {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)} | {
        a.path.split("/")[-1] for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}


@pytest.mark.parametrize("model", ["pop", "vsknn"])
def test_train_baseline(data, model, capsys):
    line = entry("train_baseline", ["--data", data, "--model", model, "--params", "k=50" if model == "vsknn" else ""],
                 capsys)
    assert line.startswith("train_baseline: ")
    run = last_run("train_baseline")
    assert run.data.tags["seqrec.model"] == model and run.data.metrics["test_recall_at_20"] > 0
    assert run.data.tags["seqrec.data_digest"] == ProcessedDataset.load(data).digest


@pytest.mark.parametrize("step,model", [("train_gru", "gru4rec"), ("train_sasrec", "sasrec"),
                                        ("train_bert4rec", "bert4rec")])
def test_train_neural_tiny_then_resume_auto(data, step, model, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CHECKPOINTS", str(tmp_path / "ck"))
    argv = ["--data", data, "--preset", "tiny", "--epochs", "1", "--params", TINY]
    assert entry(step, argv, capsys).startswith(f"train_{model}: ")
    run = last_run(f"train_{model}")
    assert run.data.tags["seqrec.model"] == model and run.data.metrics["test_recall_at_20"] > 0
    assert run.outputs.model_outputs  # its LoggedModel
    assert "already finished" in entry(step, [*argv, "--resume", "auto"], capsys, whole=True)  # a new run
    assert last_run(f"train_{model}").info.run_id != run.info.run_id
    assert len(mlflow.get_run(run.info.run_id).outputs.model_outputs) == 1  # the finished run is left as it was
    assert importlib.import_module(f"steps.{step}").main([*argv, "--resume", "true"]) == 2
    assert "already finished" in capsys.readouterr().err


def test_train_basket(data, capsys):
    assert entry("train_basket", ["--data", data, "--model", "count"], capsys).startswith("train_basket: ")
    assert "test_buy_auc" in last_run("train_basket").data.metrics


def test_register_then_evaluate_every_model_uri_form(data, capsys):
    entry("train_baseline", ["--data", data, "--model", "sr"], capsys)
    line = entry("register", ["--data", data, "--name", "entry-points"], capsys)
    assert line.startswith("register: registered entry-points version 1") and "@champion" in line
    assert entry("register", ["--data", data, "--name", "entry-points"], capsys).startswith("register: kept")
    for uri in ("models:/entry-points@champion", "models:/entry-points/1", "models:/entry-points/latest"):
        assert entry("evaluate", ["--data", data, "--model-uri", uri], capsys).startswith("evaluate: ")
        assert "test_recall_at_20" in last_run("evaluate").data.metrics


def test_register_refuses_another_datasets_champion_unless_forced(data, tmp_path, capsys):
    other = tmp_path / "other"
    assert importlib.import_module("steps.preprocess").main(
        ["--synthetic-clicks", "12000", "--seed", "5", "--out", str(other)]) == 0
    entry("train_baseline", ["--data", data, "--model", "sr"], capsys)
    entry("register", ["--data", data, "--name", "entry-points-2"], capsys)
    entry("train_baseline", ["--data", str(other), "--model", "sr"], capsys)
    assert importlib.import_module("steps.register").main(["--data", str(other), "--name", "entry-points-2"]) == 2
    assert "models of different datasets are not compared" in capsys.readouterr().err
    line = entry("register", ["--data", str(other), "--name", "entry-points-2", "--force", "true"], capsys)
    assert line.startswith("register: registered entry-points-2 version 2")


def test_tune_a_baseline_with_a_study(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = entry("tune", ["--model", "sr", "--data", data, "--trials", "2", "--study", "entry"], capsys)
    assert line.startswith("tune: ")
    assert last_run("tune").data.tags["seqrec.step"] == "tune" and Path("studies", "entry.db").exists()
