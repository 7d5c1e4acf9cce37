"""Training steps of the neural models (``train_sasrec``, ``train_bert4rec``, ``train_gru``) in MLflow.

Presets are named the same for every model: ``tiny`` (seconds, for tests), ``sample`` (tuned on the
real YooChoose sample's valid split) and ``default`` (YooChoose-size data); GRU4Rec adds ``small``,
``medium`` and ``large``. Any field of the model's config or of ``TrainConfig`` can be overridden.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import mlflow
import torch
import torch.distributed as dist

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset
from seqrec.models.registry import MODELS, split_overrides
from seqrec.training import CHECKPOINT_ROOT, Checkpointer, TrainConfig, Trainer, run_key
from seqrec.workflow.plots import plot_curves
from seqrec.workflow.report import log_final_metrics, log_inputs, log_trained_model


def _init_distributed(device: str) -> bool:
    """Join the process group when launched by torchrun; True on rank 0 (or without torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return not dist.is_initialized() or dist.get_rank() == 0
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank() == 0


def run_neural(model_name: str, data_dir: str, preset: str = "default", overrides: dict | None = None,
               resume: bool = False, nested: bool = False) -> tuple[str, dict[str, float]]:
    """Train one neural model with the select-then-refit protocol in one MLflow run.

    Under torchrun every rank trains; only rank 0 logs to MLflow (the others return ``("", {})``).
    """
    data = ProcessedDataset.load(data_dir)
    model_cfg, train_cfg = split_overrides(model_name, preset, overrides or {})
    if not _init_distributed(train_cfg.device):
        _train_quietly(model_name, data, model_cfg, train_cfg, resume)
        _leave_process_group()
        return "", {}
    spec = MODELS[model_name]
    popularity = torch.as_tensor(data.popularity, dtype=torch.float32)

    def build() -> torch.nn.Module:
        return spec.model_type(data.n_items, model_cfg, popularity)

    params = {**{f"model.{k}": v for k, v in asdict(model_cfg).items()},
              **{f"train.{k}": v for k, v in asdict(train_cfg).items() if k not in ("progress",)}}
    key = run_key(model_name, params, data)
    checkpointer = Checkpointer(CHECKPOINT_ROOT / f"{model_name}-{key}")
    if dist.is_initialized():
        dist.broadcast_object_list([str(checkpointer.directory)], src=0)
    run_file = checkpointer.directory / "run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if resume and run_file.exists() else None
    if not resume and checkpointer.path.exists():
        checkpointer.path.unlink()
    tags = {tracking.TAG_MODEL: model_name, tracking.TAG_PRESET: preset, **tracking.dataset_tags(data.stats)}

    def on_epoch(phase: str, epoch: int, record: dict) -> None:
        tracking.log_metrics_at({k: v for k, v in record.items() if k != "epoch"}, step=epoch)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items()
                          if k in ("train_loss", "val_loss", "val_recall_at_20", "val_mrr_at_20", "refit_train_loss"))
        seconds = record.get("epoch_seconds", record.get("refit_epoch_seconds", 0.0))
        print(f"{model_name} {phase} epoch {epoch}: {shown} ({seconds:.1f} s)", flush=True)

    with tracking.start_run(f"train_{model_name}", tags=tags, nested=nested, run_id=run_id,
                            run_name=f"{model_name}-{preset}-{data.name}") as run:
        if run_id is None:
            tracking.log_params({"data": str(data_dir), "preset": preset, **params})
            checkpointer.save_json("run.json", {"run_id": run.info.run_id})
        datasets = log_inputs(data)
        trainer = Trainer(build, data, train_cfg, checkpointer, on_epoch)
        started = time.perf_counter()
        model, history, test = trainer.run(resume=resume)
        wall = time.perf_counter() - started
        train_seconds = sum(r["epoch_seconds"] for r in history.select) + \
            sum(r["refit_epoch_seconds"] for r in history.refit)
        best = history.select[history.best_epoch - 1]
        with tempfile.TemporaryDirectory() as tmp:
            for png in plot_curves(history, Path(tmp), f"{model_name} ({preset})"):
                mlflow.log_artifact(str(png), "plots")
        tracking.log_json(history.to_dict(), "history.json")
        model_id = log_trained_model(model.cpu().eval(), data, model_cfg.max_len, tags,
                                     params={"preset": preset, **params})
        log_final_metrics(model_id, datasets, {k: v for k, v in best.items() if k.startswith("val_")}, test,
                          {"train_seconds": train_seconds, "best_epoch": history.best_epoch, "wall_seconds": wall,
                           "n_parameters": sum(p.numel() for p in model.parameters())})
    _leave_process_group()
    return run.info.run_id, test.prefixed("test")


def _leave_process_group() -> None:
    """Wait for every rank (rank 0 logs last), then shut the process group down cleanly."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _relaunch(model_name: str, nproc: int, argv: list[str]) -> int:
    """Run the same command under ``torchrun --nproc_per_node=nproc -m seqrec.train``."""
    rest, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(argv[i])
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "seqrec.train", "--model", model_name, *rest]
    return subprocess.run(cmd).returncode


def _train_quietly(model_name: str, data: ProcessedDataset, model_cfg, train_cfg: TrainConfig, resume: bool) -> None:
    """A non-zero rank: the same training, without MLflow, checkpoints or evaluation."""
    spec = MODELS[model_name]
    popularity = torch.as_tensor(data.popularity, dtype=torch.float32)
    holder = [None]
    dist.broadcast_object_list(holder, src=0)  # rank 0's checkpoint directory
    Trainer(lambda: spec.model_type(data.n_items, model_cfg, popularity), data, replace(train_cfg, progress=False),
            Checkpointer(Path(holder[0]))).run(resume=resume)


def cli(model_name: str, argv: list[str] | None = None) -> int:
    """Command line of a ``train_<model>`` entry point; extra ``--key value`` pairs override any field."""
    import argparse
    import sys

    from seqrec.workflow.cli import bool_arg, extra_overrides, int_arg, parse_overrides, run_step

    p = argparse.ArgumentParser(description=f"Train {model_name}: select on valid, refit, test, log to MLflow.")
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--preset", default="default", help="tiny | sample | default (| small | medium | large)")
    p.add_argument("--epochs", type=int_arg, default=0, help="maximum epochs (0: the preset's)")
    p.add_argument("--device", default="", help="auto | cpu | cuda (empty: the preset's, auto)")
    p.add_argument("--resume", type=bool_arg, default=False, help="continue the interrupted run")
    p.add_argument("--params", default="", help="overrides as key=value,key=value")
    p.add_argument("--nproc", type=int_arg, default=1, help="processes: > 1 relaunches itself under torchrun (DDP)")
    args, extra = p.parse_known_args(argv)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch(model_name, args.nproc, sys.argv[1:] if argv is None else argv)
    overrides = parse_overrides(args.params)
    try:
        overrides.update(extra_overrides(extra))
    except ValueError as exc:
        p.error(str(exc))
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.device:
        overrides["device"] = args.device

    def action() -> str:
        run_id, m = run_neural(model_name, args.data, args.preset, overrides, resume=args.resume)
        if not run_id:  # a rank other than 0: rank 0 reports
            return ""
        return f"run {run_id}: test Recall@20 {m['test_recall_at_20']:.4f}, MRR@20 {m['test_mrr_at_20']:.4f}"

    return run_step(f"train_{model_name}", action)
