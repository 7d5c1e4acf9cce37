"""The one training loop of every neural model.

Protocol (docs/protocol.md, "Evaluation"): train on ``train_tr`` while evaluating ``valid`` after every
epoch, stop early on ``val_mrr_at_20`` with patience, then retrain from scratch on ``train_full`` for the
chosen number of epochs (same schedule) and report the test metrics.

The loop builds the loader that a model's ``loader_spec`` names (``seqrec.data``) and carries the hidden
state of recurrent models from batch to batch (``seqrec.models.base``). Every epoch ends with a
checkpoint (``seqrec.checkpoints``), so a killed run, a full disk or a corrupt file loses at most one epoch;
``resume=True`` continues it and reaches the same result as an uninterrupted run with the same seed. Its
settings are ``TrainConfig`` and ``RuntimeConfig`` (``seqrec.train_config``).

Under ``torchrun`` every rank trains on its own shard with ``DistributedDataParallel``, the per-rank batch
being ``batch_size / world_size`` so that one step sees the same number of examples, and all ranks taking
the step count of the shortest shard; only rank 0 evaluates, reads and writes checkpoints and reports
epochs, and its decisions and a resumed checkpoint's state are broadcast to the others
(``seqrec.distributed``), which thus share no files with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from seqrec import distributed
from seqrec.checkpoints import Checkpointer
from seqrec.data.dataset import ProcessedDataset, SessionSplit
from seqrec.data.loader import SequenceLoader
from seqrec.data.session_parallel import NegativeSampler, SessionParallelBatches, session_order
from seqrec.devices import resolve_device
from seqrec.evaluation import EvalResult, evaluate
from seqrec.fusion import choose_weight
from seqrec.models.base import LoaderSpec, SequenceModel, SessionParallel, Windows
from seqrec.models.fused import Fused, fitted_knn
from seqrec.optim import clip_gradients, make_optimizer, make_scheduler
from seqrec.progress import progress_bar, show
from seqrec.train_config import RuntimeConfig, TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


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
        if train and spec.n_negatives > 0:
            if popularity is None:
                raise ValueError("session-parallel negatives need the items' popularity")
            sampler = NegativeSampler(popularity, spec.n_negatives, spec.sample_alpha, spec.sample_store, device)
        return SessionParallelBatches(split, batch_size, order, sampler)
    raise TypeError(f"no loader for {spec!r}")


class RecurrentLoss(Protocol):
    """A recurrent model's loss, ``loss(batch, state) -> (loss, state to carry)`` (``SequenceModel.loss``)."""

    def __call__(self, batch: Any, state: torch.Tensor | None, /) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def batch_loss(model: SequenceModel, batch: Any, state: torch.Tensor | None,
               forward: Callable[..., Any] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch and the state to carry into the next: a recurrent model takes and returns
    its hidden state, the others carry none. ``forward`` computes the loss instead of ``model.loss``
    (a DistributedDataParallel or compiled wrapper of ``model``)."""
    loss: Callable[..., Any] = forward if forward is not None else model.loss
    if model.recurrent:
        # ``recurrent = True`` promises the recurrent signature, which ``SequenceModel.loss`` cannot declare
        return cast(RecurrentLoss, loss)(batch, state)
    return loss(batch), None


@dataclass
class History:
    """Per-epoch records of both phases and the selection outcome."""

    select: list[dict] = field(default_factory=list)
    refit: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = -math.inf
    # TrainConfig.fuse: the kNN share chosen on valid ("weight"), every share's selection metric ("values") and
    # the fused model's valid record at that share ("valid")
    fusion: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def selected(self) -> dict:
        """The validation record of the selected model: the fused one's if fused, else the best epoch's."""
        return self.fusion["valid"] if self.fusion else self.select[self.best_epoch - 1]


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
    engine: Callable[..., Any] | None = None  # DistributedDataParallel and/or torch.compile wrapper, if any
    averaged: AveragedModel | None = None  # the moving average of the weights (ema > 0)

    @property
    def scored(self) -> SequenceModel:
        """The weights that are evaluated and kept: the moving average if there is one."""
        if self.averaged is None:
            return self.model
        return cast(SequenceModel, self.averaged.module)  # AveragedModel keeps a deep copy of ``model``


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """This process's random state: torch's CPU generator and, where there is CUDA, every device's."""
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


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

    def _evaluate(self, model: SequenceModel | Fused, split: SessionSplit, desc: str,
                  popularity: torch.Tensor) -> EvalResult:
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
        engine: Callable[..., Any] = distributed.data_parallel(model, self.device) if self.world > 1 else model
        if self.runtime.compile:
            engine = torch.compile(engine, dynamic=True)
        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema)) if self.cfg.ema > 0 else None
        opt = make_optimizer(model, self.cfg)
        steps = distributed.agreed_steps(len(self._loader(model, split, 0, popularity=popularity)))
        return Phase(name, model, opt, make_scheduler(opt, self.cfg, steps), split, popularity,
                     engine if engine is not model else None, averaged)

    def _checkpoint(self, phase: Phase, name: str, epoch: int, best_state: dict | None) -> None:
        """Rank 0 saves the epoch's state, with every rank's random state (the ranks draw different amounts of
        dropout, so each resumes its own stream and a resumed run ends as an uninterrupted one)."""
        ranks_rng = distributed.gathered(_rng_state()) if self.world > 1 else None
        if not self.is_main:
            return
        torch_rng, cuda_rng = _rng_state()
        self.checkpointer.save({
            "phase": name, "epoch": epoch, "model": phase.model.state_dict(), "optimizer": phase.opt.state_dict(),
            "scheduler": phase.sched.state_dict(), "torch_rng": torch_rng, "cuda_rng": cuda_rng,
            "ranks_rng": ranks_rng, "history": self.history.to_dict(), "best_state": best_state,
            "averaged": phase.averaged.state_dict() if phase.averaged is not None else None,
        })

    def _restore(self, resume: bool) -> tuple[Phase, int, dict | None]:
        """The phase to go on with, its next epoch and the best weights so far: from the checkpoint if
        ``resume`` finds one, else a fresh selection phase. Rank 0 reads the checkpoint and sends its state
        to the other ranks (which need no access to its files)."""
        state = distributed.main_computes(self.checkpointer.load) if resume else None
        phase = self._fresh("select")
        if state is None:
            return phase, 1, None
        self.history = History(**state["history"])
        if state["phase"] == "refit":
            phase = self._fresh("refit")
        phase.model.load_state_dict(state["model"])
        phase.opt.load_state_dict(state["optimizer"])
        phase.sched.load_state_dict(state["scheduler"])
        ranks_rng = state.get("ranks_rng")
        torch_rng, cuda_rng = (ranks_rng[self.rank] if ranks_rng and len(ranks_rng) == self.world
                               else (state["torch_rng"], state.get("cuda_rng")))
        torch.set_rng_state(torch_rng)
        if cuda_rng is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_rng)
        if phase.averaged is not None and state.get("averaged") is not None:
            phase.averaged.load_state_dict(state["averaged"])
        return phase, state["epoch"] + 1, state.get("best_state")

    def run(self, resume: bool = False) -> tuple[SequenceModel | Fused, History, EvalResult | None]:
        """Select the epoch count on valid, refit on train_full, evaluate test; returns the final model (fused
        with its kNN model, fitted on the same split, when ``fuse`` is set)."""
        phase, start, best_state = self._restore(resume)
        if phase.name == "select":
            best_state = self._select(phase, start, best_state)
            self._choose_fusion(phase, best_state)
            start = 1
            if self.cfg.refit:
                phase = self._fresh("refit")
        if not self.cfg.refit and best_state is not None:
            phase.scored.load_state_dict(best_state)
        else:
            self._refit(phase, start)
        model: SequenceModel | Fused = phase.scored
        if not self.is_main:
            return model, self.history, None
        test_split = self.data.split("test")
        if self.cfg.fuse:  # the network alone is tested too, to show what the fusion adds
            alone = self._evaluate(model, test_split, "test (network alone)", phase.popularity)
            self.history.fusion["network_test"] = {k: v for k, v in alone.prefixed("test").items()
                                                   if k.startswith(("test_recall", "test_mrr"))}
            model = Fused(phase.scored, fitted_knn(self.cfg.fuse, phase.split, self.data.n_items),
                          self.history.fusion["weight"])
        return model, self.history, self._evaluate(model, test_split, "test", phase.popularity)

    def select(self) -> History:
        """The selection phase alone (train_tr, valid after every epoch, early stop, the fusion weight), from
        scratch: what a tuning trial needs; nothing is refitted nor tested."""
        phase, start, best_state = self._restore(False)
        best_state = self._select(phase, start, best_state)
        self._choose_fusion(phase, best_state)
        return self.history

    def _choose_fusion(self, phase: Phase, best_state: dict | None) -> None:
        """With ``fuse``, on rank 0: the kNN share that fuses best with the selected network on valid, the kNN
        model fitted on train_tr like the network (``seqrec.fusion``), kept in the history with the fused
        model's valid record."""
        if not self.cfg.fuse or not self.is_main or best_state is None:
            return
        phase.scored.load_state_dict(best_state)
        network, valid = phase.scored, self.data.split("valid")
        knn = fitted_knn(self.cfg.fuse, phase.split, self.data.n_items)
        choice = choose_weight(network, knn, valid, self.data.n_items, network.config.max_len,
                               self.cfg.select_metric.removeprefix("val_"), self.runtime.eval_batch_size,
                               self.runtime.progress)
        fused = Fused(network, knn, choice.weight)
        valid_record = self._evaluate(fused, valid, "valid fused", phase.popularity).prefixed("val")
        self.history.fusion = {"knn": self.cfg.fuse, "weight": choice.weight,
                               "values": {str(w): v for w, v in choice.values.items()}, "valid": valid_record}
        self.history.best_value = valid_record[self.cfg.select_metric]
        print(f"fused with {self.cfg.fuse}: its share {choice.weight:.2f} chosen on valid ({self.cfg.select_metric} "
              f"{self.history.select[self.history.best_epoch - 1][self.cfg.select_metric]:.4f} alone, "
              f"{self.history.best_value:.4f} fused)", flush=True)

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
            assert record is not None  # rank 0 validates, and from_main hands its record to every rank
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
