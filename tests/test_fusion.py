"""A sequence model fused with a session-kNN model (``seqrec.models.fused``, ``seqrec.fusion``, ``-P fuse=KNN``): the
mixture, the share chosen on valid only, the run through its entry point, the saved model and the HTTP service
answering with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from test_serving import call, free_port, wait_until_up

import steps.evaluate
import steps.main
import steps.train
from seqrec.checkpoints import Checkpointer
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import evaluate
from seqrec.fusion import WEIGHTS, choose_weight
from seqrec.models.fused import Fused, fitted_knn, log_probabilities, mixture
from seqrec.models.sasrec import SASRec
from seqrec.serving.artifacts import load_recommender
from seqrec.train_config import split_overrides
from seqrec.trainer import Trainer
from seqrec.workflow.main import MainParams, comparison_rows, neural_plan, run_main
from tests.helpers import own_store


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def parts(processed):
    """A briefly trained SASRec and V-STAN fitted on train_tr of the generated data, with the dataset."""
    data = ProcessedDataset.load(processed)
    model_cfg, cfg, runtime = split_overrides("sasrec", "tiny", {"epochs": 2, "progress": False, "device": "cpu"})
    network, _, _ = Trainer(lambda _: SASRec(data.n_items, model_cfg), data, cfg,
                            Checkpointer(Path(processed).parent / "fusion-ck"), runtime=runtime).run()
    return data, network.eval(), fitted_knn("vstan", data.split("train_tr"), data.n_items)


def _inputs(data: ProcessedDataset, rows: int = 64) -> torch.Tensor:
    from seqrec.data.dataset import gather_windows

    split = data.split("valid")
    starts, targets = split.prediction_positions()
    return torch.from_numpy(gather_windows(np.asarray(split.items, dtype=np.int64), starts[:rows], targets[:rows], 50))


def test_the_mixture_is_a_distribution_and_share_zero_is_the_network(parts):
    data, network, knn = parts
    inputs = _inputs(data)
    log_net, log_knn = log_probabilities(network, knn, inputs)
    assert torch.equal(mixture(log_net, log_knn, 0.0), log_net)
    with_neighbours = ~torch.isneginf(log_knn).all(1)
    assert with_neighbours.any()
    for w in (0.3, 0.9):
        p = mixture(log_net, log_knn, w).exp()
        assert torch.allclose(p[:, 1:].sum(1), torch.ones(len(p)), atol=1e-4)
        assert torch.all(p[:, 0] == 0)  # padding is never recommended
        # more of the kNN model's share: its items gain probability
        knn_mass = (p * (log_knn.exp() > 0)).sum(1)
        assert torch.all(knn_mass[with_neighbours] >= (log_net.exp() * (log_knn.exp() > 0)).sum(1)[with_neighbours]
                         - 1e-5)
    # a prefix without neighbours is ranked by the network alone
    blank = torch.zeros_like(inputs[:1])
    blank[0, -1] = int(np.bincount(data.split("train_tr").items, minlength=data.n_items + 1)[1:].argmin()) + 1
    net, knn_only = log_probabilities(network, knn, blank)
    if torch.isneginf(knn_only).all():
        assert torch.equal(mixture(net, knn_only, 0.5).argsort(), net.argsort())


def test_the_share_chosen_is_the_best_on_the_split_and_agrees_with_the_evaluator(parts):
    """One pass ranks every share; the values it compares are those the evaluator gives the fused model."""
    data, network, knn = parts
    valid = data.split("valid")
    choice = choose_weight(network, knn, valid, data.n_items, 50, "mrr_at_20", progress=False)
    assert set(choice.values) == set(WEIGHTS)
    assert choice.values[choice.weight] == max(choice.values.values())
    for w in {choice.weight, 0.0, 0.5}:
        fused = evaluate(Fused(network, knn, w), valid, data.n_items, 50, progress=False)
        assert fused.metrics["mrr_at_20"] == pytest.approx(choice.values[w], abs=1e-9)
    alone = evaluate(network, valid, data.n_items, 50, progress=False)
    assert alone.metrics["mrr_at_20"] == pytest.approx(choice.values[0.0], abs=1e-9)
    with pytest.raises(ValueError, match="must be in"):
        Fused(network, knn, 1.0)


def test_train_with_fuse_chooses_on_valid_logs_both_and_saves_a_model_that_scores_the_same(processed, tmp_path,
                                                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        argv = ["--model", "gru4rec", "--data", str(processed), "--preset", "tiny", "--epochs", "2",
                "--fuse", "vstan", "--progress", "false"]
        assert steps.train.main(argv) == 0
        out = capsys.readouterr().out
        assert "fused with vstan: its share" in out
        (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
        tags, metrics = run.data.tags, run.data.metrics
        assert tags["seqrec.fused"] == "vstan" and run.data.params["train.fuse"] == "vstan"
        weight = metrics["fusion_weight"]
        assert weight in WEIGHTS
        history = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/history.json")
        assert history["fusion"]["weight"] == weight
        network_best = history["select"][history["best_epoch"] - 1]["val_mrr_at_20"]
        # the share is chosen on valid, where the network alone (share 0) is one of the choices
        assert metrics["best_val_mrr_at_20"] >= network_best
        assert metrics["best_val_mrr_at_20"] == pytest.approx(history["fusion"]["values"][str(weight)], abs=1e-9)
        assert {"network_test_recall_at_20", "network_test_mrr_at_20"} <= set(metrics)
        assert run.info.run_name.startswith("gru4rec+vstan-tiny-")
        assert comparison_rows([run.info.run_id])[0]["model"] == "gru4rec+vstan"  # main's comparison table
        folder = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model")
        recommender = load_recommender(Path(folder) / "artifacts" / "recommender")
        assert isinstance(recommender.scorer, Fused)
        assert recommender.scorer.weight == weight and recommender.scorer.knn.name == "vstan"
        data = ProcessedDataset.load(processed)
        again = evaluate(recommender.scorer, data.split("test"), data.n_items, 50, progress=False)
        assert again.metrics["recall_at_20"] == pytest.approx(metrics["test_recall_at_20"], abs=1e-9)
        assert again.metrics["mrr_at_20"] == pytest.approx(metrics["test_mrr_at_20"], abs=1e-9)


def test_a_fused_run_killed_in_its_refit_resumes_to_the_same_share_and_result(processed, tmp_path):
    data = ProcessedDataset.load(processed)
    over = {"epochs": 2, "patience": 2, "progress": False, "device": "cpu", "fuse": "stan"}
    model_cfg, cfg, runtime = split_overrides("sasrec", "tiny", over)
    build = lambda _: SASRec(data.n_items, model_cfg)  # noqa: E731
    _, whole_history, whole = Trainer(build, data, cfg, Checkpointer(tmp_path / "whole"), runtime=runtime).run()

    def kill(phase: str, epoch: int, record: dict) -> None:
        if phase == "refit":
            raise _Killed

    with pytest.raises(_Killed):
        Trainer(build, data, cfg, Checkpointer(tmp_path / "killed"), on_epoch=kill, runtime=runtime).run()
    model, history, again = Trainer(build, data, cfg, Checkpointer(tmp_path / "killed"),
                                    runtime=runtime).run(resume=True)
    assert isinstance(model, Fused) and history.fusion["weight"] == whole_history.fusion["weight"]
    assert again.metrics == whole.metrics


def test_main_fuses_every_sequence_model_and_refuses_an_unknown_knn_before_any_work(capsys):
    plan = neural_plan(MainParams(models="gru4rec,sasrec", fuse="vsknn"))
    assert [overrides["fuse"] for _, _, overrides in plan] == ["vsknn", "vsknn"]
    assert all("fuse" not in overrides for _, _, overrides in neural_plan(MainParams(models="sasrec")))
    assert steps.main.main(["--fuse", "itemknn"]) == 2
    err = capsys.readouterr().err
    assert "fuse='itemknn'" in err and "vstan" in err


def test_the_fused_model_is_evaluated_and_served_over_http(processed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from seqrec.workflow.neural import run_neural

    run_id, metrics = run_neural("sasrec", str(processed), "tiny", {"epochs": 1, "progress": False, "fuse": "sknn"})
    # the evaluate entry point on the logged model gives the run's own test figures
    assert steps.evaluate.main(["--data", str(processed), "--model-uri", f"runs:/{run_id}/model"]) == 0
    assert f"test Recall@20 {metrics['test_recall_at_20']:.4f}, MRR@20 {metrics['test_mrr_at_20']:.4f}" in \
        capsys.readouterr().out
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from seqrec.serving.api import main; main()",
                             "--model-uri", f"runs:/{run_id}/model", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/health", proc)
        data = ProcessedDataset.load(processed)
        session = [str(data.raw_ids[i]) for i in (1, 2, 3)]
        status, body = call(base + "/recommend", {"session": session, "k": 5})
        assert status == 200 and len(body["items"]) == 5
        assert body["scores"] == sorted(body["scores"], reverse=True)
        status, meta = call(base + "/metadata")
        assert status == 200 and meta["scorer"] == "Fused" and meta["fused_with"] == "sknn"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_main_with_fuse_compares_registers_and_describes_the_fused_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQREC_CHECKPOINTS", str(tmp_path / "ck"))
    with own_store(tmp_path):
        result = run_main(MainParams(synthetic_clicks=15_000, seed=5, epochs=1, models="sasrec", fuse="vstan",
                                     neural_overrides={"hidden": 16, "layers": 1, "progress": False}))
        assert [r["model"] for r in result["comparison"]] == ["sasrec+vstan"]
        version = mlflow.MlflowClient().get_model_version_by_alias("seqrec", "champion")
        assert version.tags["seqrec.fused"] == "vstan" and version.tags["seqrec.model"] == "sasrec"
        assert version.description.startswith("sasrec+vstan (preset default)")
        assert "register: sasrec+vstan of run" in capsys.readouterr().out
