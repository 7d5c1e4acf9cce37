"""The one training loop of every neural model.

Protocol (docs/protocol.md, "Evaluation"): train on ``train_tr`` while evaluating ``valid`` after every epoch,
stop early on ``val_mrr_at_20`` with patience, then retrain from scratch on ``train_full`` for the
chosen number of epochs (same schedule) and report the test metrics, all in one MLflow run.

Every epoch ends with a checkpoint (model, optimiser, scheduler, RNG state, history) written to a
temporary file and renamed, so a killed run loses at most one epoch; ``resume=True`` continues it in
the same MLflow run and reaches the same result as an uninterrupted run with the same seed.

A model plugs in by providing ``batches(split, batch_size, seed, epoch)`` (an iterable of batches),
``loss(batch)`` (a scalar tensor; ``forward(batch)`` returns it too) and ``score(inputs)`` (the
evaluator's interface).

Under ``torchrun`` (``torch.distributed`` initialised) every rank trains on its own shard of the
windows or sessions with ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU), the per-rank batch
being ``batch_size / world_size`` so that one step sees the same number of examples, and all ranks
taking the step count of the shortest shard; only rank 0
evaluates, writes checkpoints and reports epochs, and its decisions are broadcast to the others.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from seqrec.data.dataset import ProcessedDataset, SessionSplit
from seqrec.evaluation import SELECTION_METRIC, EvalResult, evaluate
from seqrec.optim import IndexedAdagradM, LazyAdamW

CHECKPOINT_ROOT = Path(os.environ.get("SEQREC_CHECKPOINTS", "checkpoints"))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Settings of the training loop shared by all neural models."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0  # AdamW: matrices of the network, not embeddings or biases
    warmup_epochs: float = 0.5
    clip: float = 5.0
    patience: int = 3
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    optimizer: str = "adamw"  # adamw | adam | adagradm (Adagrad with momentum, sparse-aware)
    momentum: float = 0.0  # adagradm only
    schedule: str = "cosine"  # cosine (after warm-up) | constant
    eval_batch_size: int = 512
    refit: bool = True
    progress: bool = True
    threads: int = 0  # 0 = torch's default
    compile: bool = False  # torch.compile the training step's model (dynamic shapes)
    ema: float = 0.0  # > 0: evaluate and keep an exponential moving average of the weights (decay per step)
    select_metric: str = SELECTION_METRIC  # the valid metric that picks the epoch (early stopping)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but CUDA is not available")
    return torch.device(name)


@dataclass
class History:
    """Per-epoch records of both phases and the selection outcome."""

    select: list[dict] = field(default_factory=list)
    refit: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = -math.inf

    def to_dict(self) -> dict:
        return asdict(self)


def _has_sparse_gradients(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Embedding) and m.sparse for m in model.modules())


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if _has_sparse_gradients(model):  # sparse embeddings: update only the rows a batch touches
            return LazyAdamW(groups, lr=cfg.lr)
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adagradm":
        return IndexedAdagradM(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def clip_gradients(parameters, max_norm: float) -> torch.Tensor:
    """Scale all gradients, dense or sparse, so that their joint 2-norm is at most ``max_norm``."""
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return nn.utils.clip_grad_norm_(params, max_norm)
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    total = torch.linalg.vector_norm(torch.stack([
        torch.linalg.vector_norm(p.grad.values() if p.grad.is_sparse else p.grad) for p in params]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale)
    return total


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to 0 over ``cfg.epochs`` epochs."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def run_key(model_name: str, params: dict, data: ProcessedDataset) -> str:
    """A digest of model, parameters and data: names the checkpoint directory of a run."""
    blob = json.dumps({"model": model_name, "params": params, "data": data.digest, "path": str(data.path)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpointer:
    """Atomic per-epoch checkpoints of one training run."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / "last.pt"

    def save(self, state: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save_json(self, name: str, obj: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f"{name}.tmp"
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, self.directory / name)


EpochCallback = Callable[[str, int, dict], None]


class Trainer:
    """Runs the select-then-refit protocol for one model factory."""

    def __init__(self, build_model: Callable[[], nn.Module], data: ProcessedDataset, cfg: TrainConfig,
                 checkpointer: Checkpointer, on_epoch: EpochCallback | None = None):
        if not cfg.select_metric.startswith("val_"):
            raise ValueError(f"select_metric must be a validation metric (val_...), got {cfg.select_metric!r}")
        self.build_model, self.data, self.cfg = build_model, data, cfg
        self.checkpointer, self.on_epoch = checkpointer, on_epoch
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.history = History()
        distributed = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        self.is_main = self.rank == 0
        self.engine: nn.Module | None = None  # DistributedDataParallel and/or torch.compile wrapper, if any
        self.averaged: AveragedModel | None = None  # the moving average of the weights (cfg.ema > 0)

    def _batches(self, model, split: SessionSplit, epoch: int):
        if self.world == 1:
            return model.batches(split, self.cfg.batch_size, self.cfg.seed, epoch)
        per_rank = max(1, self.cfg.batch_size // self.world)
        return model.batches(split, per_rank, self.cfg.seed, epoch, rank=self.rank, world_size=self.world)

    def _agreed_steps(self, steps: int) -> int:
        """The steps of an epoch on every rank: the shortest shard's (shards differ by a batch or so)."""
        if self.world == 1:
            return steps
        shortest = torch.tensor([steps])
        dist.all_reduce(shortest, op=dist.ReduceOp.MIN)
        return int(shortest)

    # -- one phase --------------------------------------------------------------------------------
    def _train_epoch(self, model, opt, sched, split: SessionSplit, epoch: int, phase: str) -> float:
        model.train()
        total, count = 0.0, 0
        batches = self._batches(model, split, epoch)
        use_bf16 = self.device.type == "cuda"
        bar = tqdm(batches, desc=f"{phase} epoch {epoch}", disable=not (self.cfg.progress and self.is_main),
                   leave=False, unit="batch")
        steps = self._agreed_steps(len(batches))
        for batch in bar:
            if count == steps:
                break
            loss = self._step(model, opt, sched, batch, use_bf16, epoch, phase)
            total += loss
            count += 1
            if count % 20 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
        if self.world > 1:
            sums = torch.tensor([total, count], dtype=torch.float64)
            dist.all_reduce(sums)
            total, count = float(sums[0]), int(sums[1])
        return total / max(count, 1)

    def _step(self, model, opt, sched, batch, use_bf16: bool, epoch: int, phase: str) -> float:
        batch = tuple(t.to(self.device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = self.engine(batch) if self.engine is not None else model.loss(batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{phase} epoch {epoch}: the loss became {loss.item()}; the last good checkpoint is kept "
                f"at {self.checkpointer.path} (lower lr or raise clip)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip > 0:  # (GRU4Rec trains unclipped, clip=0, as the official implementation)
            clip_gradients(model.parameters(), self.cfg.clip)
        opt.step()
        sched.step()
        if self.averaged is not None:
            self.averaged.update_parameters(model)
        return loss.item()

    def _scored(self, model: nn.Module) -> nn.Module:
        """The weights that are evaluated and kept: the moving average if there is one."""
        return self.averaged.module if self.averaged is not None else model

    @torch.no_grad()
    def _valid_loss(self, model, split: SessionSplit) -> float:
        model.eval()
        total, count = 0.0, 0
        for batch in model.batches(split, self.cfg.eval_batch_size, self.cfg.seed, 0, shuffle=False):
            batch = tuple(t.to(self.device) if torch.is_tensor(t) else t for t in batch)
            total += model.loss(batch).item()
            count += 1
        return total / max(count, 1)

    def _evaluate(self, model, split: SessionSplit, desc: str) -> EvalResult:
        max_len = getattr(getattr(model, "config", None), "max_len", 50)
        return evaluate(model, split, self.data.n_items, max_len, self.cfg.eval_batch_size,
                        popularity=self.data.popularity, progress=self.cfg.progress, desc=desc)

    def _fresh(self, phase: str):
        torch.manual_seed(self.cfg.seed + (0 if phase == "select" else 1))
        model = self.build_model().to(self.device)
        engine = model
        if self.world > 1:
            # dense embedding gradients: gloo's all-reduce of sparse gradients corrupted the heap of a
            # worker now and then (malloc abort in backward); NCCL has no sparse all-reduce at all
            for module in model.modules():
                if isinstance(module, nn.Embedding):
                    module.sparse = False
            with warnings.catch_warnings():  # broadcast_buffers is being renamed; buffers are constants here
                warnings.simplefilter("ignore", FutureWarning)
                engine = DistributedDataParallel(
                    model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    broadcast_buffers=False)
        if self.cfg.compile:
            engine = torch.compile(engine, dynamic=True)
        self.engine = engine if engine is not model else None
        self.averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema))
                         if self.cfg.ema > 0 else None)
        opt = _make_optimizer(model, self.cfg)
        split = self.data.split("train_tr" if phase == "select" else "train_full")
        steps = self._agreed_steps(len(self._batches(model, split, 0)))
        return model, opt, _make_scheduler(opt, self.cfg, steps), split

    def _checkpoint(self, phase: str, epoch: int, model, opt, sched, best_state) -> None:
        if not self.is_main:
            return
        self.checkpointer.save({
            "phase": phase, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history.to_dict(), "best_state": best_state,
            "averaged": self.averaged.state_dict() if self.averaged is not None else None,
        })

    def run(self, resume: bool = False) -> tuple[nn.Module, History, EvalResult]:
        """Select the epoch count on valid, refit on train_full, evaluate test; returns the final model."""
        state = self.checkpointer.load() if resume else None
        phase, start = "select", 1
        model, opt, sched, split = self._fresh("select")
        best_state = None
        if state is not None:
            self.history = History(**state["history"])
            phase, start = state["phase"], state["epoch"] + 1
            if phase == "refit":
                model, opt, sched, split = self._fresh("refit")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            best_state = state.get("best_state")
            if self.averaged is not None and state.get("averaged") is not None:
                self.averaged.load_state_dict(state["averaged"])

        if phase == "select":
            best_state = self._select(model, opt, sched, split, start, best_state)
            phase, start = "refit", 1
            if self.cfg.refit:
                model, opt, sched, split = self._fresh("refit")
        if not self.cfg.refit and best_state is not None:
            self._scored(model).load_state_dict(best_state)
        else:
            for epoch in range(start, self.history.best_epoch + 1):
                started = time.perf_counter()
                loss = self._train_epoch(model, opt, sched, split, epoch, "refit")
                seconds = time.perf_counter() - started
                record = {"epoch": epoch, "refit_train_loss": loss, "refit_epoch_seconds": seconds}
                self.history.refit.append(record)
                if self.on_epoch and self.is_main:
                    self.on_epoch("refit", epoch, record)
                self._checkpoint("refit", epoch, model, opt, sched, None)
        model = self._scored(model)
        test = self._evaluate(model, self.data.split("test"), "test") if self.is_main else None
        return model, self.history, test

    def _from_main(self, record: dict | None) -> dict:
        """Rank 0's epoch record on every rank, so that all ranks take the same decisions."""
        if self.world == 1:
            return record
        holder = [record]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def _select(self, model, opt, sched, split, start: int, best_state) -> dict:
        valid = self.data.split("valid")
        since_best = len(self.history.select) - self.history.best_epoch
        for epoch in range(start, self.cfg.epochs + 1):
            if since_best >= self.cfg.patience:
                break
            started = time.perf_counter()
            loss = self._train_epoch(model, opt, sched, split, epoch, "select")
            seconds = time.perf_counter() - started
            record, scored = None, self._scored(model)
            if self.is_main:
                result = self._evaluate(scored, valid, f"valid epoch {epoch}")
                record = {"epoch": epoch, "train_loss": loss, "val_loss": self._valid_loss(scored, valid),
                          "epoch_seconds": seconds, **result.prefixed("val")}
            record = self._from_main(record)
            self.history.select.append(record)
            if record[self.cfg.select_metric] > self.history.best_value:
                self.history.best_epoch, self.history.best_value = epoch, record[self.cfg.select_metric]
                best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
                since_best = 0
            else:
                since_best += 1
            if self.on_epoch and self.is_main:  # logged before the checkpoint: a kill repeats the epoch
                self.on_epoch("select", epoch, record)
            self._checkpoint("select", epoch, model, opt, sched, best_state)
        return best_state
