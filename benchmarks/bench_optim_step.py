"""Time GRU4Rec training steps and their optimizer step: the plain IndexedAdagradM update against seqrec's.

    python benchmarks/bench_optim_step.py [--threads 2] [--steps 400] [--preset sample] [--momentum M]

Two copies of the same model (same preset, same initial weights, each with its own loader over the real
YooChoose sample if present, else over generated clicks) train side by side, one step each in turn on the
same batches: one with ``PlainIndexedAdagradM`` below (the update as written before it was optimised:
``coalesce()``, ``acc[rows]``, gather / add / ``index_copy_``), one with ``seqrec.optim.IndexedAdagradM``.
Each copy keeps its own global RNG state (dropout), so the two runs are the same computation; alternating
them exposes both to the same load on a shared machine. Printed: the median milliseconds of a whole training
step (loss, backward, optimizer and scheduler step, as ``Trainer._step`` runs it on CPU) and of the optimizer
step alone over the timed steps, and whether all parameters are bit for bit equal (``torch.equal``) at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from bench_roofline import dataset, endless_batches
from torch.optim import Optimizer

from seqrec.data.dataset import ProcessedDataset
from seqrec.models.base import SequenceModel
from seqrec.models.registry import build_model
from seqrec.optim import IndexedAdagradM, make_scheduler
from seqrec.train_config import TrainConfig, split_overrides
from seqrec.trainer import batch_loss


class PlainIndexedAdagradM(Optimizer):
    """The reference: ``IndexedAdagradM`` as first written, each sparse gradient coalesced, then gathered."""

    def __init__(self, params, lr: float, momentum: float = 0.0, eps: float = 1e-6):
        super().__init__(params, {"lr": lr, "momentum": momentum, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["acc"] = torch.zeros_like(p)
                    state["mom"] = torch.zeros_like(p)
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    acc = state["acc"][rows] + values.pow(2)
                    state["acc"].index_copy_(0, rows, acc)
                    step = values / (acc + eps).sqrt() * -lr
                    if momentum > 0:
                        step = state["mom"][rows].mul_(momentum).add_(step)
                        state["mom"].index_copy_(0, rows, step)
                    p.index_add_(0, rows, step)
                else:
                    state["acc"].add_(p.grad.pow(2))
                    denom = (state["acc"] + eps).sqrt()
                    if momentum > 0:
                        state["mom"].mul_(momentum).addcdiv_(p.grad, denom, value=-lr)
                        p.add_(state["mom"])
                    else:
                        p.addcdiv_(p.grad, denom, value=-lr)
        return None


@dataclass
class Run:
    """One model trained with one optimizer, its batches, carried state, RNG state and step timings."""

    model: SequenceModel
    cfg: TrainConfig
    opt: Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    batches: Iterator[Any]
    rng: torch.Tensor
    state: torch.Tensor | None = None
    step_s: list[float] = field(default_factory=list)
    opt_s: list[float] = field(default_factory=list)

    def step(self, timed: bool) -> None:
        """One training step as ``Trainer._step`` runs it on CPU, with this run's own RNG state."""
        torch.set_rng_state(self.rng)
        batch = next(self.batches)
        started = time.perf_counter()
        loss, self.state = batch_loss(self.model, batch, self.state)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        opt_started = time.perf_counter()
        self.opt.step()
        opt_done = time.perf_counter()
        self.sched.step()
        done = time.perf_counter()
        self.rng = torch.get_rng_state()
        if timed:
            self.step_s.append(done - started)
            self.opt_s.append(opt_done - opt_started)


def make_run(preset: str, momentum: float | None, data: ProcessedDataset, plain: bool) -> Run:
    """GRU4Rec of ``preset`` (seed 0) with the plain or seqrec's IndexedAdagradM, as ``bench_roofline`` builds it."""
    overrides = {} if momentum is None else {"momentum": momentum}
    model_cfg, train_cfg, _ = split_overrides("gru4rec", preset, overrides)
    assert train_cfg.optimizer == "adagradm" and train_cfg.clip == 0, "the GRU4Rec presets train unclipped Adagrad"
    torch.manual_seed(0)
    popularity = torch.as_tensor(data.popularity).float()
    model = build_model("gru4rec", data.n_items, model_cfg, popularity).train()
    opt_class = PlainIndexedAdagradM if plain else IndexedAdagradM
    opt = opt_class(model.parameters(), lr=train_cfg.lr, momentum=train_cfg.momentum)
    # the GRU4Rec presets' schedule is constant: the steps per epoch given to make_scheduler do not matter
    return Run(model, train_cfg, opt, make_scheduler(opt, train_cfg, 1000),
               endless_batches(model, data.split("train_full"), train_cfg.batch_size, popularity),
               torch.get_rng_state())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--steps", type=int, default=400, help="timed steps of each run")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps of each run before the timed ones")
    p.add_argument("--preset", default="sample", help="GRU4Rec preset (sample: tied embeddings; small: separate)")
    p.add_argument("--momentum", type=float, default=None, help="override the preset's momentum (0 there)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    label, path = dataset()
    data = ProcessedDataset.load(path)
    runs = {"plain (before)": make_run(args.preset, args.momentum, data, plain=True),
            "seqrec (after)": make_run(args.preset, args.momentum, data, plain=False)}
    momentum = next(iter(runs.values())).cfg.momentum
    print(f"{label}: gru4rec {args.preset}, momentum {momentum}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.steps} timed steps of each run after {args.warmup}, alternating; "
          f"load average before: {os.getloadavg()[0]:.2f}\n")
    for i in range(args.warmup + args.steps):
        for run in runs.values():
            run.step(timed=i >= args.warmup)

    print(f"{'IndexedAdagradM':<16} {'ms/step':>8} {'ms/opt.step':>12} {'opt share':>10}")
    for name, run in runs.items():
        step_ms, opt_ms = 1e3 * statistics.median(run.step_s), 1e3 * statistics.median(run.opt_s)
        print(f"{name:<16} {step_ms:>8.3f} {opt_ms:>12.3f} {opt_ms / step_ms:>10.1%}")
    print(f"(load average after: {os.getloadavg()[0]:.2f})")
    before, after = ({n: q.detach() for n, q in run.model.named_parameters()} for run in runs.values())
    same = all(torch.equal(before[n], after[n]) for n in before)
    worst = max(float((before[n] - after[n]).abs().max()) for n in before) if not same else 0.0
    print(f"\nparameters after {args.warmup + args.steps} steps: "
          f"{'bit for bit equal' if same else f'DIFFERENT (max abs difference {worst:.3g})'}")


if __name__ == "__main__":
    main()
