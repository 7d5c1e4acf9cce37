import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import torch

from seqrec import tracking
from seqrec.checkpoints import Checkpointer, CheckpointError, RunArtifacts, run_key
from seqrec.data.dataset import ProcessedDataset
from seqrec.models.base import SequenceModel, Windows
from seqrec.models.sasrec import SASRec
from seqrec.train_config import RuntimeConfig, TrainConfig, split_overrides
from seqrec.trainer import Trainer, TrainingDiverged
from seqrec.workflow.neural import cli, epoch_logger, run_neural
from tests.helpers import own_store

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
    ("sasrec", {"loss": "bpr"}, r"sasrec: loss='bpr' is not one of \('full', 'sampled'\)"),
    ("gru4rec", {"embedding": 64}, r"gru4rec: embedding=64 applies only with constrained_embedding=False"),
])
def test_unknown_or_inapplicable_overrides_are_refused_by_name(model, overrides, message):
    with pytest.raises(ValueError, match=message):
        split_overrides(model, "tiny", overrides)


@pytest.mark.parametrize(("model", "overrides", "message"), [
    ("sasrec", {"epochs": 2.5}, r"TrainConfig: epochs=2\.5 \(float\) is not an int"),
    ("sasrec", {"epochs": True}, r"TrainConfig: epochs=True \(bool\) is not an int"),
    ("bert4rec", {"train_on": 1}, r"bert4rec: train_on=1 \(int\) is not a str"),
    ("sasrec", {"dropout": "x"}, r"sasrec: dropout='x' \(str\) is not a float \(or an int\)"),
    ("gru4rec", {"constrained_embedding": 1}, r"gru4rec: constrained_embedding=1 \(int\) is not a bool"),
    ("meanemb", {"threads": "2"}, r"RuntimeConfig: threads='2' \(str\) is not an int"),
])
def test_overrides_of_the_wrong_type_are_refused_naming_field_value_and_type(model, overrides, message):
    with pytest.raises(ValueError, match=message):
        split_overrides(model, "tiny", overrides)


def test_an_int_is_a_float_but_nothing_else_widens():
    model_cfg, train_cfg, _ = split_overrides("sasrec", "tiny", {"dropout": 0, "lr": 1, "refit": False})
    assert model_cfg.dropout == 0 and train_cfg.lr == 1 and train_cfg.refit is False


def test_a_bad_override_fails_before_the_data_is_read(tmp_path):
    with pytest.raises(ValueError, match="epochs=2.5"):
        run_neural("meanemb", str(tmp_path / "no-such-data"), "tiny", {"epochs": 2.5})


def test_the_run_key_is_what_determines_the_result(processed, monkeypatch):
    monkeypatch.chdir(processed.parent)
    data = ProcessedDataset.load(processed)
    params = {"model.hidden": 16, "train.seed": 0, "train.lr": 0.001}
    key = run_key("sasrec", params, data)
    for spelling in (processed.name, f"./{processed.name}", f"{processed.name}/", f"../{processed.parent.name}/"
                     f"{processed.name}"):
        assert run_key("sasrec", params, ProcessedDataset.load(spelling)) == key, spelling
    assert run_key("sasrec", {**params, "train.seed": 1}, data) != key
    assert run_key("sasrec", {**params, "train.lr": 0.01}, data) != key
    assert run_key("bert4rec", params, data) != key
    assert run_key("sasrec", params, data, world_size=2) != key
    other = ProcessedDataset(data.path, {**data.stats, "digest": "another"})
    assert run_key("sasrec", params, other) != key


def test_resume_continues_the_run_whatever_the_data_path_is_called(processed, tmp_path, monkeypatch):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path / "ck")
    over = {"progress": False, "epochs": 1, "patience": 1}
    run_id, metrics = run_neural("meanemb", str(processed), "tiny", over)
    mlflow.MlflowClient().update_run(run_id, status="KILLED")  # as if stopped before it finished
    monkeypatch.chdir(processed.parent)
    again, resumed = run_neural("meanemb", f"./{processed.name}", "tiny", {**over, "threads": 1}, resume=True)
    assert again == run_id and resumed == metrics


def _runs() -> int:
    experiment = mlflow.get_experiment_by_name(tracking.EXPERIMENT)
    return 0 if experiment is None else len(mlflow.search_runs([experiment.experiment_id]))


def test_resume_without_a_matching_checkpoint_stops_before_any_run(processed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path / "ck")
    with own_store(tmp_path):  # the session's store may hold an unfinished run of these settings
        with pytest.raises(ValueError, match=r"resume=true: no checkpoint of a meanemb run with these settings"
                                             r" and data in the tracking store sqlite:.* \(no run tagged "
                                             r"seqrec.checkpoint_key=[0-9a-f]{16};"):
            run_neural("meanemb", str(processed), "tiny", {"progress": False, "epochs": 1}, resume=True)
        assert _runs() == 0
        argv = ["--data", str(processed), "--preset", "tiny", "--epochs", "1", "--progress", "false"]
        assert cli("meanemb", [*argv, "--resume", "true"]) == 2
        assert "resume=auto" in capsys.readouterr().err and _runs() == 0
        assert cli("meanemb", [*argv, "--resume", "auto"]) == 0
        out = capsys.readouterr().out
        assert "resume=auto: no checkpoint" in out and "starting a new run" in out and _runs() == 1
        assert cli("meanemb", [*argv, "--resume", "true"]) == 2  # the run of these settings finished
        assert "already finished (its results stand)" in capsys.readouterr().err and _runs() == 1
    with pytest.raises(SystemExit):
        cli("meanemb", ["--help"])
    assert "auto: continue it if there is one" in " ".join(capsys.readouterr().out.split())


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
    trainer = Trainer(lambda _: Exploding(data.n_items), data, TrainConfig(epochs=3, patience=5), ckpt,
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
    build = lambda _: SASRec(data.n_items, model_cfg)  # noqa: E731
    _, _, plain = Trainer(build, data, plain_cfg, Checkpointer(tmp_path / "plain"), runtime=runtime).run()
    averaged, _, whole = Trainer(build, data, cfg, Checkpointer(tmp_path / "whole"), runtime=runtime).run()
    assert whole.metrics != plain.metrics  # the average, not the last weights, is scored

    def kill(phase: str, epoch: int, record: dict) -> None:
        if phase == "select" and epoch == 2:
            raise _Killed

    with pytest.raises(_Killed):
        Trainer(build, data, cfg, Checkpointer(tmp_path / "killed"), on_epoch=kill, runtime=runtime).run()
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["averaged"] is not None
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
    done = torch.load(run_dir / "last.pt", weights_only=True)["epoch"]
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


class NaNValidation(Exploding):
    """A model that trains with a finite loss but whose validation loss is NaN."""

    def loss(self, batch):
        return self.w.sum() * (1.0 if self.training else float("nan"))


def test_a_non_finite_metric_fails_the_run_naming_it(processed, tmp_path):
    data = ProcessedDataset.load(processed)
    with mlflow.start_run():
        with pytest.raises(ValueError, match=r"non-finite metric value\(s\) at step 3: \{'val_loss': nan"):
            tracking.log_metrics_at({"val_loss": float("nan"), "train_loss": 1.0}, step=3)
        trainer = Trainer(lambda _: NaNValidation(data.n_items), data, TrainConfig(epochs=2, patience=2),
                          Checkpointer(tmp_path), epoch_logger("nanval"), RuntimeConfig(progress=False))
        with pytest.raises(ValueError, match=r"at step 1: \{'val_loss': nan\}"):
            trainer.run()


@dataclass
class _NotPlain:
    epoch: int = 1


def test_checkpoints_hold_only_tensors_and_plain_types(tmp_path):
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(TypeError, match=r"checkpoint state\['history'\]\['when'\] is a _NotPlain"):
        ckpt.save({"epoch": 1, "history": {"when": _NotPlain()}})
    torch.save({"epoch": 1, "phase": "select", "history": _NotPlain()}, ckpt.path)  # written by other code
    refused = r"\(it holds a .*_NotPlain, not only tensors and plain types, refused by weights_only=True\)"
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(ckpt.path))} is unreadable {refused}"):
        ckpt.load()


def test_a_truncated_checkpoint_without_a_previous_one_is_a_clear_error(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save({"epoch": 1, "phase": "select", "model": {"w": torch.ones(1000)}})
    ckpt.path.write_bytes(ckpt.path.read_bytes()[:-300])
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(ckpt.path))} is unreadable \(.*\), and no earlier "
                                              r"checkpoint of the run can be read: start a new run \(resume=false\)"):
        ckpt.load()


def test_a_failed_write_keeps_the_last_checkpoint_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path)
    ckpt.save({"epoch": 1, "phase": "select"})

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("seqrec.checkpoints.torch.save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save({"epoch": 2, "phase": "select"})
    assert ckpt.load()["epoch"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_truncated_checkpoint_resumes_from_the_previous_one_with_the_same_result(processed, tmp_path, capsys):
    data = ProcessedDataset.load(processed)
    model_cfg, cfg, runtime = split_overrides("sasrec", "tiny", {"epochs": 3, "patience": 3, "progress": False,
                                                                 "device": "cpu"})
    build = lambda _: SASRec(data.n_items, model_cfg)  # noqa: E731
    _, _, whole = Trainer(build, data, cfg, Checkpointer(tmp_path / "whole"), runtime=runtime).run()

    def kill(phase: str, epoch: int, record: dict) -> None:
        if phase == "select" and epoch == 3:
            raise _Killed

    ckpt = Checkpointer(tmp_path / "killed")
    with pytest.raises(_Killed):
        Trainer(build, data, cfg, ckpt, on_epoch=kill, runtime=runtime).run()
    assert torch.load(ckpt.path, weights_only=True)["epoch"] == 2
    assert torch.load(ckpt.previous, weights_only=True)["epoch"] == 1
    ckpt.path.write_bytes(ckpt.path.read_bytes()[:1000])  # truncated, as by a crash of the disk or a copy
    capsys.readouterr()
    resumed = Checkpointer(tmp_path / "killed")
    _, _, again = Trainer(build, data, cfg, resumed, runtime=runtime).run(resume=True)
    out = capsys.readouterr().out
    assert f"{ckpt.path} is unreadable" in out and f"resuming from the previous one, {ckpt.previous} (epoch 1" in out
    assert again.metrics == whole.metrics
    assert torch.load(ckpt.path, weights_only=True)["phase"] == "refit"  # the rotation went on from there


def test_a_checkpoint_missing_between_two_renames_resumes_from_the_previous_one(tmp_path, capsys):
    ckpt = Checkpointer(tmp_path)
    ckpt.save({"epoch": 1, "phase": "select"})
    ckpt.save({"epoch": 2, "phase": "select"})
    ckpt.path.unlink()
    assert ckpt.load()["epoch"] == 1 and "last.pt is missing" in capsys.readouterr().out
    ckpt.save({"epoch": 2, "phase": "select"})
    assert torch.load(ckpt.previous, weights_only=True)["epoch"] == 1


def test_a_step_resuming_from_unreadable_checkpoints_fails_naming_the_files(processed, tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path)
    argv = ["--data", str(processed), "--preset", "tiny", "--epochs", "1", "--progress", "false"]
    assert cli("meanemb", argv) == 0
    ckpt = Checkpointer(next(tmp_path.glob("meanemb-*")))
    run_id = json.loads((ckpt.directory / "run.json").read_text())["run_id"]
    mlflow.MlflowClient().update_run(run_id, status="KILLED")  # as if stopped before it finished
    for path in (ckpt.path, ckpt.previous):
        path.write_bytes(path.read_bytes()[:500])
    RunArtifacts(run_id, "checkpoints").upload(ckpt.path)  # the run's uploaded copy too
    capsys.readouterr()
    assert cli("meanemb", [*argv, "--resume", "true"]) == 2
    err = capsys.readouterr().err
    assert f"train_meanemb: error: {ckpt.path} is unreadable (truncated or corrupt" in err
    assert f"{ckpt.previous} is unreadable" in err and "Traceback" not in err


def test_checkpoints_reach_another_machine_through_the_runs_artifacts(tmp_path, capsys):
    with own_store(tmp_path):  # the run made by the client: the fluent API's active experiment stays as it was
        client = mlflow.MlflowClient()
        run = client.create_run(client.create_experiment("checkpoints"))
        artifacts = RunArtifacts(run.info.run_id, "checkpoints")
        here = Checkpointer(tmp_path / "here", artifacts)
        here.save({"epoch": 1, "phase": "select", "model": {"w": torch.ones(3)}})
        here.save({"epoch": 2, "phase": "select", "model": {"w": torch.full((3,), 2.0)}})
        listed = client.list_artifacts(run.info.run_id, "checkpoints")
        assert [a.path for a in listed] == ["checkpoints/last.pt"]  # the latest only, overwritten each epoch
        there = Checkpointer(tmp_path / "there", artifacts)  # a machine without the run's files
        assert there.load() is None and there.fetch()
        state = there.load()
        assert state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.full((3,), 2.0))
        assert not Checkpointer(tmp_path / "seed2", RunArtifacts(run.info.run_id, "checkpoints/seed2")).fetch()
        # an unreadable upload: the run's own local checkpoint is the fallback; a machine without one stops
        broken = tmp_path / "broken" / "last.pt"
        broken.parent.mkdir()
        broken.write_bytes(here.path.read_bytes()[:200])
        artifacts.upload(broken)
        assert here.fetch(keep_local=True) and here.load()["epoch"] == 2
        assert "resuming from the previous one" in capsys.readouterr().out
        assert there.fetch()
        with pytest.raises(CheckpointError, match=rf"{re.escape(str(there.path))} is unreadable .* no earlier"):
            there.load()


def test_a_failed_checkpoint_upload_is_said_and_training_goes_on(tmp_path, capsys):
    """The tracking server unreachable for a moment: the local checkpoint stands, the next epoch uploads again."""
    from mlflow.exceptions import MlflowException

    class Flaky(RunArtifacts):
        def __init__(self):
            super().__init__("r", "checkpoints")
            self.calls = 0

        def upload(self, path):
            self.calls += 1
            if self.calls == 1:
                raise MlflowException("API request to http://server failed: connection refused")

    ckpt = Checkpointer(tmp_path / "run", Flaky())
    ckpt.save({"epoch": 1, "phase": "select"})
    assert "could not upload" in capsys.readouterr().err and ckpt.load()["epoch"] == 1
    ckpt.save({"epoch": 2, "phase": "select"})
    assert ckpt.artifacts.calls == 2 and ckpt.load()["epoch"] == 2
