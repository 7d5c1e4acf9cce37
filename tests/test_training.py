import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import torch

from seqrec.data.dataset import ProcessedDataset
from seqrec.models.base import SequenceModel, Windows
from seqrec.models.sasrec import SASRec
from seqrec.trainer import Checkpointer, RuntimeConfig, TrainConfig, Trainer, TrainingDiverged, split_overrides
from seqrec.workflow.neural import run_neural

ROOT = Path(__file__).resolve().parents[1]


def test_presets_and_overrides():
    model_cfg, train_cfg, runtime = split_overrides("sasrec", "tiny", {"hidden": 24, "lr": 0.01, "threads": 2})
    assert model_cfg.hidden == 24 and train_cfg.lr == 0.01 and train_cfg.epochs == 2 and runtime.threads == 2
    with pytest.raises(ValueError, match="unknown parameter"):
        split_overrides("sasrec", "tiny", {"hiden": 24})
    with pytest.raises(ValueError, match="unknown preset"):
        split_overrides("sasrec", "huge", {})


@pytest.mark.parametrize(("model", "overrides", "message"), [
    ("bert4rec", {"loss": "sampled"}, r"unknown parameter\(s\) \['loss'\] for bert4rec \(loss is a field of .*sasrec"),
    ("bert4rec", {"item_mask": 0.1}, r"\['item_mask'\] for bert4rec"),
    ("sasrec", {"mask_ratio": 0.1}, r"\['mask_ratio'\] for sasrec \(mask_ratio is a field of bert4rec\)"),
    ("sasrec", {"loss": "bpr"}, r"sasrec: loss='bpr' is not one of \('ce', 'sampled'\)"),
    ("gru4rec", {"embedding": 64}, r"gru4rec: embedding=64 applies only with constrained_embedding=False"),
])
def test_unknown_or_inapplicable_overrides_are_refused_by_name(model, overrides, message):
    with pytest.raises(ValueError, match=message):
        split_overrides(model, "tiny", overrides)


def test_runtime_switches_stay_out_of_the_run_key(processed, tmp_path, monkeypatch):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path)
    over = {"progress": False, "epochs": 1, "patience": 1}
    run_neural("meanemb", str(processed), "tiny", {**over, "eval_batch_size": 100, "threads": 1})
    run_neural("meanemb", str(processed), "tiny", {**over, "eval_batch_size": 200})
    assert len(list(tmp_path.glob("meanemb-*"))) == 1


def test_run_logs_protocol_names_and_is_deterministic(processed, tmp_path, monkeypatch, device):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path)
    overrides = {"epochs": 3, "patience": 3, "progress": False, "device": device}
    run_id, metrics = run_neural("sasrec", str(processed), "tiny", overrides)
    run = mlflow.get_run(run_id)
    assert run.data.tags["seqrec.model"] == "sasrec" and run.data.tags["seqrec.preset"] == "tiny"
    assert {"seqrec.dataset", "seqrec.data_digest"} <= set(run.data.tags)
    required = {"test_recall_at_10", "test_recall_at_20", "test_mrr_at_10", "test_mrr_at_20", "test_predictions",
                "train_seconds", "train_loss", "val_loss", "val_recall_at_20", "val_mrr_at_20", "epoch_seconds"}
    assert required <= set(run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_mrr_at_20")
    assert [m.step for m in history] == [1, 2, 3]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"plots", "item_mapping.json"} <= artifacts
    model_id = run.outputs.model_outputs[0].model_id  # the model is the run's LoggedModel
    logged = mlflow.MlflowClient().get_logged_model(model_id)
    assert logged.params["model.hidden"] == "16" and logged.tags["seqrec.model"] == "sasrec"
    assert {"best_val_mrr_at_20", "test_mrr_at_20"} <= {m.key for m in logged.metrics}
    assert run.data.metrics["best_val_mrr_at_20"] == max(m.value for m in history)
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "plots")}
    assert {"plots/loss_curves.png", "plots/metric_curves.png"} <= plots
    requirements = mlflow.artifacts.load_text(f"runs:/{run_id}/model/requirements.txt").split()
    assert any(r.startswith("torch==") for r in requirements) and any(r.startswith("mlflow==") for r in requirements)
    _, again = run_neural("sasrec", str(processed), "tiny", overrides)
    if device == "cpu":
        assert again == metrics
    else:  # CUDA kernels (atomic adds in embedding gradients) are not bit-for-bit reproducible
        assert again["test_recall_at_20"] == pytest.approx(metrics["test_recall_at_20"], abs=0.02)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    data = ProcessedDataset.load(processed)
    answer = model.predict({"session": [data.raw_ids[1], "unknown-item"], "k": 5})
    assert len(answer["items"][0]) == 5 and answer["items"][0][0] in set(data.raw_ids[1:])


def test_sampled_softmax_trains_with_sparse_embedding_updates(processed, tmp_path, monkeypatch):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path)
    overrides = {"loss": "sampled", "n_negatives": 64, "epochs": 2, "patience": 2, "progress": False, "lr": 0.01}
    run_id, metrics = run_neural("sasrec", str(processed), "tiny", overrides)
    assert mlflow.get_run(run_id).data.params["model.loss"] == "sampled"
    history = mlflow.MlflowClient().get_metric_history(run_id, "train_loss")
    assert history[-1].value < history[0].value
    assert metrics["test_recall_at_20"] > 0.2


@dataclass
class ExplodingConfig:
    max_len: int = 5


class Exploding(SequenceModel):
    """A model whose training loss becomes NaN once it has been validated (in its second epoch)."""

    model_type = "exploding"

    def __init__(self, n_items):
        super().__init__()
        self.n_items, self.config = n_items, ExplodingConfig()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.validated = False

    def loader_spec(self):
        return Windows(self.config.max_len)

    def loss(self, batch):
        self.validated |= not self.training
        return self.w.sum() * (float("nan") if self.training and self.validated else 1.0)

    def session_states(self, inputs):
        return torch.zeros(len(inputs), 1)

    def score_items(self, states, items=None):
        return torch.zeros(len(states), self.n_items + 1 if items is None else len(items))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(processed, tmp_path):
    data = ProcessedDataset.load(processed)
    ckpt = Checkpointer(tmp_path / "ck")
    trainer = Trainer(lambda: Exploding(data.n_items), data, TrainConfig(epochs=3, patience=5), ckpt,
                      runtime=RuntimeConfig(progress=False))
    with pytest.raises(TrainingDiverged, match="select epoch 2: the loss became nan"):
        trainer.run()
    assert ckpt.load()["epoch"] == 1


class _Killed(Exception):
    pass


def test_weight_average_is_what_is_evaluated_checkpointed_and_resumed(processed, tmp_path):
    data = ProcessedDataset.load(processed)
    over = {"epochs": 3, "patience": 3, "progress": False, "device": "cpu", "ema": 0.9}
    model_cfg, cfg, runtime = split_overrides("sasrec", "tiny", over)
    _, plain_cfg, _ = split_overrides("sasrec", "tiny", {**over, "ema": 0.0})
    build = lambda: SASRec(data.n_items, model_cfg)  # noqa: E731
    _, _, plain = Trainer(build, data, plain_cfg, Checkpointer(tmp_path / "plain"), runtime=runtime).run()
    averaged, _, whole = Trainer(build, data, cfg, Checkpointer(tmp_path / "whole"), runtime=runtime).run()
    assert whole.metrics != plain.metrics  # the average, not the last weights, is scored

    def kill(phase: str, epoch: int, record: dict) -> None:
        if phase == "select" and epoch == 2:
            raise _Killed

    with pytest.raises(_Killed):
        Trainer(build, data, cfg, Checkpointer(tmp_path / "killed"), on_epoch=kill, runtime=runtime).run()
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=False)["averaged"] is not None
    resumed, _, again = Trainer(build, data, cfg, Checkpointer(tmp_path / "killed"), runtime=runtime).run(resume=True)
    assert again.metrics == whole.metrics
    for a, b in zip(resumed.parameters(), averaged.parameters(), strict=True):
        assert torch.equal(a, b)


def test_killed_run_resumes_in_the_same_run_with_the_same_result(processed, tmp_path):
    env = {**os.environ, "SEQREC_CHECKPOINTS": str(tmp_path / "ck")}
    cmd = [sys.executable, str(ROOT / "steps" / "train_sasrec.py"), "--data", str(processed), "--preset", "tiny",
           "--epochs", "12", "--patience", "12", "--progress", "false"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "ck").glob("*/last.pt")):
        time.sleep(0.02)
    proc.kill()
    assert proc.wait() == -9, "the run finished before it could be killed"
    run_dir = next((tmp_path / "ck").glob("sasrec-*"))
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    done = torch.load(run_dir / "last.pt", weights_only=False)["epoch"]
    assert done < 12
    resumed = subprocess.run(cmd + ["--resume", "true"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run_id in resumed.stdout
    fresh_env = {**env, "SEQREC_CHECKPOINTS": str(tmp_path / "fresh")}
    fresh = subprocess.run(cmd, env=fresh_env, cwd=tmp_path, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    a, b = mlflow.get_run(run_id).data.metrics, mlflow.get_run(fresh.stdout.split("run ")[1].split(":")[0]).data.metrics
    for key in ("test_recall_at_20", "test_mrr_at_20", "best_epoch"):
        assert a[key] == b[key], key
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "train_loss")]
    assert sorted(set(steps)) == list(range(1, max(steps) + 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model_name", ["sasrec", "gru4rec"])
def test_auto_device_trains_on_the_gpu(model_name, processed, tmp_path, monkeypatch):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path)
    run_id, metrics = run_neural(model_name, str(processed), "tiny", {"progress": False, "device": "auto"})
    assert 0 < metrics["test_recall_at_20"] <= 1
    assert mlflow.get_run(run_id).data.params["train.device"] == "auto"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_training_on_the_gpu_learns_like_eager(processed, tmp_path, monkeypatch):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path)
    overrides = {"progress": False, "device": "cuda", "epochs": 2, "patience": 2}
    _, eager = run_neural("sasrec", str(processed), "tiny", overrides)
    _, compiled = run_neural("sasrec", str(processed), "tiny", {**overrides, "compile": True})
    # compiled kernels (and their dropout streams) differ from eager ones: close, not equal
    assert compiled["test_recall_at_20"] == pytest.approx(eager["test_recall_at_20"], abs=0.05)
