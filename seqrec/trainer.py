"""The one training loop of every neural model.

Protocol (docs/protocol.md, "Evaluation"): train on ``train_tr`` while evaluating ``valid`` after every
epoch, stop early on ``val_mrr_at_20`` with patience, then retrain from scratch on ``train_full`` for the
chosen number of epochs (same schedule) and report the test metrics.

The loop builds the loader that a model's ``loader_spec`` names (``seqrec.data``) and carries the hidden
state of recurrent models from batch to batch (``seqrec.models.base``). Every epoch ends with a
checkpoint (model, optimiser, scheduler, RNG state, history: tensors and plain types, read back with
``weights_only=True``) written to a fsynced temporary file and renamed, the one before it kept, so a
killed run, a full disk or a corrupt file loses at most one epoch; ``resume=True`` continues it and
reaches the same result as an uninterrupted run with the same seed.

Under ``torchrun`` every rank trains on its own shard with ``DistributedDataParallel``, the per-rank batch
being ``batch_size / world_size`` so that one step sees the same number of examples, and all ranks taking
the step count of the shortest shard; only rank 0 evaluates, writes checkpoints and reports epochs, and
its decisions are broadcast to the others (``seqrec.distributed``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from seqrec import distributed
from seqrec.configs import RangeError, above, at_least, check_ranges, check_types, one_of, ranged, share
from seqrec.data.dataset import ProcessedDataset, SessionSplit
from seqrec.data.loader import SequenceLoader
from seqrec.data.session_parallel import NegativeSampler, SessionParallelBatches, session_order
from seqrec.evaluation import SELECTION_METRIC, EvalResult, evaluate
from seqrec.models import registry
from seqrec.models.base import LoaderSpec, SequenceModel, SessionParallel, Windows
from seqrec.optim import clip_gradients, make_optimizer, make_scheduler
from seqrec.progress import progress_bar, show

CHECKPOINT_ROOT = Path(os.environ.get("SEQREC_CHECKPOINTS", "checkpoints"))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """What the loop optimises and how: part of a run's identity (``run_key``). Each field declares the values
    it allows (``seqrec.configs``), checked whenever a config is built."""

    epochs: int = ranged(20, at_least(1))  # at most this many selection epochs
    batch_size: int = ranged(128, at_least(1))  # rows per step, over all ranks together
    lr: float = ranged(1e-3, above(0))  # peak learning rate
    weight_decay: float = ranged(0.0, at_least(0))  # AdamW: matrices of the network, not embeddings or biases
    warmup_epochs: float = ranged(0.5, at_least(0))  # linear warm-up before the cosine decay
    clip: float = ranged(5.0, at_least(0))  # gradient 2-norm limit (0: no clipping)
    patience: int = ranged(3, at_least(1))  # epochs without a better selection metric before stopping
    seed: int = ranged(0, at_least(0))  # seeds the weights, dropout, sampling and shuffles
    # adamw | adam | adagradm (Adagrad with momentum, sparse-aware)
    optimizer: str = ranged("adamw", one_of("adamw", "adam", "adagradm"))
    momentum: float = ranged(0.0, share())  # adagradm only
    schedule: str = ranged("cosine", one_of("cosine", "constant"))  # cosine (after warm-up) | constant
    refit: bool = True  # retrain on train_full for the selected epochs (False: keep the selected weights)
    ema: float = ranged(0.0, share())  # > 0: evaluate and keep a moving average of the weights (decay per step)
    select_metric: str = SELECTION_METRIC  # the valid metric that picks the epoch (early stopping)

    def __post_init__(self) -> None:
        check_ranges("TrainConfig", self)
        if not self.select_metric.startswith("val_"):
            raise RangeError("TrainConfig", f"select_metric={self.select_metric!r} must be a validation metric "
                                            f"(val_..., e.g. {SELECTION_METRIC})")


@dataclass
class RuntimeConfig:
    """Where and how a run computes and reports; not part of its identity, so not of ``run_key``."""

    device: str = "auto"  # auto | cpu | cuda
    eval_batch_size: int = ranged(512, at_least(1))  # prefixes per evaluation batch (and validation-loss batch)
    progress: bool = True  # tqdm progress bars
    threads: int = ranged(0, at_least(0))  # torch CPU threads (0: torch's default)
    compile: bool = False  # torch.compile the training step's model (dynamic shapes)
    # end the selection after the epoch that passes this wall time (0: no limit)
    max_seconds: float = ranged(0.0, at_least(0))

    def __post_init__(self) -> None:
        check_ranges("RuntimeConfig", self)


def split_overrides(model_name: str, preset: str, overrides: dict[str, Any]) -> tuple[Any, TrainConfig, RuntimeConfig]:
    """The model config, ``TrainConfig`` and ``RuntimeConfig`` of a preset with ``overrides`` applied.

    Each override goes to whichever of the three has the field; a field none has, a value of another type than
    its field's, or one outside its field's range (``seqrec.configs``), is refused by name before anything is
    built.
    """
    model_over, train_over = registry.preset(model_name, preset)
    train_fields = {f.name for f in fields(TrainConfig)}
    runtime_fields = {f.name for f in fields(RuntimeConfig)}
    model_values = {**model_over, **{k: v for k, v in overrides.items() if k not in train_fields | runtime_fields}}
    train_values = {**train_over, **{k: v for k, v in overrides.items() if k in train_fields}}
    runtime_values = {k: v for k, v in overrides.items() if k in runtime_fields}
    check_types("TrainConfig", TrainConfig, train_values)
    check_types("RuntimeConfig", RuntimeConfig, runtime_values)
    model_cfg = registry.make_config(model_name, model_values, also=(TrainConfig, RuntimeConfig))
    return model_cfg, TrainConfig(**train_values), RuntimeConfig(**runtime_values)


def resolve_device(name: str) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but CUDA is not available")
    return torch.device(name)


def make_loader(spec: LoaderSpec, split: SessionSplit, batch_size: int, *, seed: int, epoch: int, train: bool,
                rank: int = 0, world_size: int = 1, popularity: torch.Tensor | None = None,
                device: torch.device | str = "cpu") -> SequenceLoader | SessionParallelBatches:
    """The loader ``spec`` describes over ``split``: shuffled per epoch and with negatives when ``train``."""
    if isinstance(spec, Windows):
        loader = SequenceLoader(split, spec.max_len, batch_size, train, seed, rank, world_size, prefixes=spec.prefixes)
        loader.set_epoch(epoch)
        return loader
    if isinstance(spec, SessionParallel):
        order = session_order(split, train and spec.session_order == "shuffle", seed, epoch, rank, world_size)
        sampler = None
        if train and spec.n_sample > 0:
            if popularity is None:
                raise ValueError("session-parallel negatives need the items' popularity")
            sampler = NegativeSampler(popularity, spec.n_sample, spec.sample_alpha, spec.sample_store, device)
        return SessionParallelBatches(split, batch_size, order, sampler)
    raise TypeError(f"no loader for {spec!r}")


def batch_loss(model: SequenceModel, batch: Any, state: torch.Tensor | None,
               forward: Callable[..., Any] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch and the state to carry into the next: a recurrent model takes and returns
    its hidden state, the others carry none. ``forward`` computes the loss instead of ``model.loss``
    (a DistributedDataParallel or compiled wrapper of ``model``)."""
    forward = forward if forward is not None else model.loss
    if model.recurrent:
        return forward(batch, state)
    return forward(batch), None


@dataclass
class History:
    """Per-epoch records of both phases and the selection outcome."""

    select: list[dict] = field(default_factory=list)
    refit: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = -math.inf

    def to_dict(self) -> dict:
        return asdict(self)


def run_key(model_name: str, params: dict, data: ProcessedDataset, world_size: int = 1) -> str:
    """A digest of what determines a run's result: the model, its model and training settings (seed
    included), the dataset's digest (its content, not the path it was reached by) and the number of
    processes (each trains its own shard). Names the run's checkpoint directory; runtime switches
    (``RuntimeConfig``) stay out, so a run resumes under other ones."""
    if not data.digest:
        raise ValueError(f"{data.path}/stats.json has no digest (an old preprocess?): run the preprocess step again")
    blob = json.dumps({"model": model_name, "params": params, "data": data.digest, "world_size": world_size},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be read (truncated, corrupt, or holding more than tensors and plain types)."""


_PLAIN_TYPES = (torch.Tensor, str, int, float, bool, type(None))


class Checkpointer:
    """Per-epoch checkpoints of one training run that a kill, a full disk or a corrupt file never costs
    more than an epoch.

    A state is written to a temporary file in the run's directory, flushed and fsynced; the current
    ``last.pt`` becomes ``last.prev.pt``, and only then is the new file renamed to ``last.pt``. States
    hold tensors and plain types only and are read with ``weights_only=True`` (no code runs on load);
    an unreadable ``last.pt`` falls back to ``last.prev.pt``, saying so.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / "last.pt"
        self.previous = directory / "last.prev.pt"
        self._resumed_from_previous = False  # set by a fallback: the next save keeps the previous file

    def save(self, state: dict) -> None:
        """Write ``state`` (tensors and plain types) as the latest checkpoint, keeping the one before it."""
        _check_plain(state, "state")
        self._write(self.path, lambda f: torch.save(state, f), rotate=not self._resumed_from_previous)
        self._resumed_from_previous = False

    def load(self) -> dict | None:
        """The latest readable state (``None`` when there is none); an unreadable latest one falls back to
        the previous one, saying so, and ``CheckpointError`` names the files when neither can be read."""
        problems = []
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # corrupt bytes can fail anywhere in the zip reader or the unpickler
                problems.append(f"{path} is unreadable ({_unreadable_because(exc)})")
                continue
            if path == self.previous:  # the next save must not rotate what sits at last.pt over it
                self._resumed_from_previous = True
                latest = problems[0] if problems else f"{self.path} is missing (a kill between two renames)"
                print(f"checkpoint: {latest}; resuming from the previous one, {path} (epoch {state['epoch']} "
                      f"of {state['phase']})", flush=True)
            return state
        if problems:
            raise CheckpointError(f"{'; '.join(problems)}, and no earlier checkpoint of the run can be read: "
                                  f"start a new run (resume=false)")
        return None

    def clear(self) -> None:
        """Remove the run's checkpoints (a new run of the same key starts from scratch)."""
        self.path.unlink(missing_ok=True)
        self.previous.unlink(missing_ok=True)

    def save_json(self, name: str, obj: dict) -> None:
        self._write(self.directory / name, lambda f: f.write(json.dumps(obj).encode()), rotate=False)

    def _write(self, target: Path, write: Callable[[BinaryIO], object], rotate: bool) -> None:
        """Write ``target`` through a fsynced temporary file and a rename; with ``rotate`` the current
        ``target`` becomes ``self.previous`` first. A failed write (a full disk) leaves no partial file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if rotate and target.exists():
            os.replace(target, self.previous)
        os.replace(tmp, target)
        directory = os.open(self.directory, os.O_RDONLY)  # make the renames durable too
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _check_plain(obj: Any, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` would not read back: anything but tensors, plain
    types and dicts, lists and tuples of them (named by its place in the state)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, f"{where} key")
            _check_plain(value, f"{where}[{key!r}]")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN_TYPES):
        raise TypeError(f"checkpoint {where} is a {type(obj).__name__}, not a tensor or plain type: "
                        f"convert it before saving (checkpoints are read with weights_only=True)")


def _unreadable_because(exc: Exception) -> str:
    """Why ``torch.load`` could not read a checkpoint, in one line (its weights-only refusals run to paragraphs)."""
    text = str(exc).strip()
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return f"it holds a {refused.group(1)}, not only tensors and plain types, refused by weights_only=True"
    first = text.splitlines()[0].split(". ")[0] if text else "empty file"
    return f"truncated or corrupt: {type(exc).__name__}: {first}"


EpochCallback = Callable[[str, int, dict], None]
# a fresh model, given the item popularity of the phase's own training split (``split_popularity``)
ModelFactory = Callable[[torch.Tensor], SequenceModel]


def split_popularity(split: SessionSplit, n_items: int) -> torch.Tensor:
    """Clicks of each item in ``split`` ``[n_items + 1]`` (padding 0): what a phase's popularity-sampled
    negatives and logQ corrections use. Selection counts train_tr only, so no valid click reaches ``val_*``;
    the refit counts train_full (as the served model's popular items do)."""
    return torch.from_numpy(np.bincount(split.items, minlength=n_items + 1).astype(np.float32))


@dataclass
class Phase:
    """What one phase (``select`` or ``refit``) trains, and with what."""

    name: str
    model: SequenceModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    split: SessionSplit
    popularity: torch.Tensor  # item clicks of ``split`` (``split_popularity``)
    engine: nn.Module | None = None  # DistributedDataParallel and/or torch.compile wrapper, if any
    averaged: AveragedModel | None = None  # the moving average of the weights (ema > 0)

    @property
    def scored(self) -> SequenceModel:
        """The weights that are evaluated and kept: the moving average if there is one."""
        return self.averaged.module if self.averaged is not None else self.model


class Trainer:
    """Runs the select-then-refit protocol for one model factory."""

    def __init__(self, build_model: ModelFactory, data: ProcessedDataset, cfg: TrainConfig,
                 checkpointer: Checkpointer, on_epoch: EpochCallback | None = None,
                 runtime: RuntimeConfig | None = None):
        if not cfg.select_metric.startswith("val_"):
            raise ValueError(f"select_metric must be a validation metric (val_...), got {cfg.select_metric!r}")
        self.build_model, self.data, self.cfg = build_model, data, cfg
        self.runtime = runtime or RuntimeConfig()
        self.checkpointer, self.on_epoch = checkpointer, on_epoch
        self.device = resolve_device(self.runtime.device)
        if self.runtime.threads:
            torch.set_num_threads(self.runtime.threads)
        self.history = History()
        self.rank, self.world = distributed.rank_and_world()
        self.is_main = self.rank == 0

    def _loader(self, model: SequenceModel, split: SessionSplit, epoch: int, train: bool = True,
                popularity: torch.Tensor | None = None) -> SequenceLoader | SessionParallelBatches:
        """A training loader (this rank's shard, shuffled, negatives drawn by ``popularity``) or a validation
        one (whole split, in order)."""
        batch_size, rank, world = self.runtime.eval_batch_size, 0, 1
        if train:
            batch_size, rank, world = max(1, self.cfg.batch_size // self.world), self.rank, self.world
        return make_loader(model.loader_spec(), split, batch_size, seed=self.cfg.seed, epoch=epoch, train=train,
                           rank=rank, world_size=world, popularity=popularity, device=self.device)

    # -- one phase --------------------------------------------------------------------------------
    def _train_epoch(self, phase: Phase, epoch: int) -> float:
        phase.model.train()
        total, count, state = 0.0, 0, None
        batches = self._loader(phase.model, phase.split, epoch, popularity=phase.popularity)
        bar = progress_bar(batches, desc=f"{phase.name} epoch {epoch}", leave=False, unit="batch",
                           disable=not (self.runtime.progress and self.is_main))
        steps = distributed.agreed_steps(len(batches))
        for batch in bar:
            if count == steps:
                break
            loss, state = self._step(phase, batch, state, epoch)
            total += loss
            count += 1
            if count % 20 == 0:
                show(bar, loss=f"{total / count:.4f}")
        total, count = distributed.summed(total, count)
        return total / max(count, 1)

    def _step(self, phase: Phase, batch: Any, state: torch.Tensor | None,
              epoch: int) -> tuple[float, torch.Tensor | None]:
        batch = batch.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss, state = batch_loss(phase.model, batch, state, phase.engine)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{phase.name} epoch {epoch}: the loss became {loss.item()}; the last good checkpoint is kept "
                f"at {self.checkpointer.path} (lower lr or raise clip)")
        phase.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip > 0:  # (GRU4Rec trains unclipped, clip=0, as the official implementation)
            clip_gradients(phase.model.parameters(), self.cfg.clip)
        phase.opt.step()
        phase.sched.step()
        if phase.averaged is not None:
            phase.averaged.update_parameters(phase.model)
        return loss.item(), state

    @torch.no_grad()
    def _valid_loss(self, model: SequenceModel, split: SessionSplit) -> float:
        model.eval()
        total, count, state = 0.0, 0, None
        for batch in self._loader(model, split, 0, train=False):
            loss, state = batch_loss(model, batch.to(self.device), state)
            total += loss.item()
            count += 1
        return total / max(count, 1)

    def _evaluate(self, model: SequenceModel, split: SessionSplit, desc: str, popularity: torch.Tensor) -> EvalResult:
        """``split``'s metrics; ``popularity`` (of the phase's training split) ranks the recommended items'
        popularity percentile."""
        return evaluate(model, split, self.data.n_items, model.config.max_len, self.runtime.eval_batch_size,
                        popularity=popularity.numpy(), progress=self.runtime.progress, desc=desc)

    def _fresh(self, name: str) -> Phase:
        """A new model (seeded per phase), its optimiser and schedule, on the phase's training split."""
        torch.manual_seed(self.cfg.seed + (0 if name == "select" else 1))
        split = self.data.split("train_tr" if name == "select" else "train_full")
        popularity = split_popularity(split, self.data.n_items)
        model = self.build_model(popularity).to(self.device)
        engine = distributed.data_parallel(model, self.device) if self.world > 1 else model
        if self.runtime.compile:
            engine = torch.compile(engine, dynamic=True)
        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema)) if self.cfg.ema > 0 else None
        opt = make_optimizer(model, self.cfg)
        steps = distributed.agreed_steps(len(self._loader(model, split, 0, popularity=popularity)))
        return Phase(name, model, opt, make_scheduler(opt, self.cfg, steps), split, popularity,
                     engine if engine is not model else None, averaged)

    def _checkpoint(self, phase: Phase, name: str, epoch: int, best_state: dict | None) -> None:
        if not self.is_main:
            return
        self.checkpointer.save({
            "phase": name, "epoch": epoch, "model": phase.model.state_dict(), "optimizer": phase.opt.state_dict(),
            "scheduler": phase.sched.state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history.to_dict(), "best_state": best_state,
            "averaged": phase.averaged.state_dict() if phase.averaged is not None else None,
        })

    def _restore(self, resume: bool) -> tuple[Phase, int, dict | None]:
        """The phase to go on with, its next epoch and the best weights so far: from the checkpoint if
        ``resume`` finds one, else a fresh selection phase."""
        state = self.checkpointer.load() if resume else None
        phase = self._fresh("select")
        if state is None:
            return phase, 1, None
        self.history = History(**state["history"])
        if state["phase"] == "refit":
            phase = self._fresh("refit")
        phase.model.load_state_dict(state["model"])
        phase.opt.load_state_dict(state["optimizer"])
        phase.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if phase.averaged is not None and state.get("averaged") is not None:
            phase.averaged.load_state_dict(state["averaged"])
        return phase, state["epoch"] + 1, state.get("best_state")

    def run(self, resume: bool = False) -> tuple[SequenceModel, History, EvalResult | None]:
        """Select the epoch count on valid, refit on train_full, evaluate test; returns the final model."""
        phase, start, best_state = self._restore(resume)
        if phase.name == "select":
            best_state = self._select(phase, start, best_state)
            start = 1
            if self.cfg.refit:
                phase = self._fresh("refit")
        if not self.cfg.refit and best_state is not None:
            phase.scored.load_state_dict(best_state)
        else:
            self._refit(phase, start)
        model = phase.scored
        test = self._evaluate(model, self.data.split("test"), "test", phase.popularity) if self.is_main else None
        return model, self.history, test

    def select(self) -> History:
        """The selection phase alone (train_tr, valid after every epoch, early stop), from scratch: what a
        tuning trial needs; nothing is refitted nor tested."""
        phase, start, best_state = self._restore(False)
        self._select(phase, start, best_state)
        return self.history

    def _select(self, phase: Phase, start: int, best_state: dict | None) -> dict | None:
        """Train and validate epoch by epoch until patience runs out; the best weights."""
        valid = self.data.split("valid")
        since_best = len(self.history.select) - self.history.best_epoch
        begun = time.perf_counter()
        for epoch in range(start, self.cfg.epochs + 1):
            if since_best >= self.cfg.patience or self._out_of_time(begun):
                break
            started = time.perf_counter()
            loss = self._train_epoch(phase, epoch)
            seconds = time.perf_counter() - started
            record = distributed.from_main(self._validate(phase.scored, valid, epoch, loss, seconds,
                                                                 phase.popularity))
            self.history.select.append(record)
            if record[self.cfg.select_metric] > self.history.best_value:
                self.history.best_epoch, self.history.best_value = epoch, record[self.cfg.select_metric]
                best_state = {k: v.detach().cpu().clone() for k, v in phase.scored.state_dict().items()}
                since_best = 0
            else:
                since_best += 1
            if self.on_epoch and self.is_main:  # logged before the checkpoint: a kill repeats the epoch
                self.on_epoch("select", epoch, record)
            self._checkpoint(phase, "select", epoch, best_state)
        return best_state

    def _out_of_time(self, begun: float) -> bool:
        """Whether the selection has used up ``runtime.max_seconds`` (rank 0's clock decides for all ranks)."""
        limit = self.runtime.max_seconds
        over = distributed.from_main(bool(limit) and time.perf_counter() - begun >= limit)
        if over and self.is_main:
            print(f"selection stopped after {len(self.history.select)} epochs: its time limit of {limit:.0f} s "
                  f"is used up", flush=True)
        return over

    def _validate(self, model: SequenceModel, valid: SessionSplit, epoch: int, loss: float,
                  seconds: float, popularity: torch.Tensor) -> dict | None:
        """The epoch's record with the valid metrics and loss (rank 0 only; None elsewhere)."""
        if not self.is_main:
            return None
        result = self._evaluate(model, valid, f"valid epoch {epoch}", popularity)
        return {"epoch": epoch, "train_loss": loss, "val_loss": self._valid_loss(model, valid),
                "epoch_seconds": seconds, **result.prefixed("val")}

    def _refit(self, phase: Phase, start: int) -> None:
        """Train from epoch ``start`` through the selected epoch count."""
        for epoch in range(start, self.history.best_epoch + 1):
            started = time.perf_counter()
            loss = self._train_epoch(phase, epoch)
            seconds = time.perf_counter() - started
            record = {"epoch": epoch, "refit_train_loss": loss, "refit_epoch_seconds": seconds}
            self.history.refit.append(record)
            if self.on_epoch and self.is_main:
                self.on_epoch("refit", epoch, record)
            self._checkpoint(phase, "refit", epoch, None)
