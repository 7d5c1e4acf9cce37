"""Achieved FLOP/s of SASRec and GRU4Rec training steps against the dense matmul peak of the same threads.

    python benchmarks/bench_roofline.py [--threads 2] [--steps N] [--model sasrec|gru4rec|all] [--profile]

Each setup builds its model from a preset (``build_model``), takes real batches from the loader the model
declares (``make_loader``, on the real YooChoose sample if present, else on generated clicks) and times
steady-state training steps as the trainer runs them (loss, backward, clipping when the preset clips,
optimizer and scheduler step); the first ``--warmup`` steps are not timed. FLOPs are counted analytically
from each batch's shapes (matrix products only: the embedding lookups, LayerNorm, dropout, GELU, softmax and
the optimizer's elementwise updates are not counted), with backward = 2 x forward:

* SASRec, per block, ``B`` rows of width ``W`` (the loader trims each batch to its longest row), hidden
  ``d``, feed-forward width ``f * d``: QKV ``2*B*W*d*3d``; attention scores and weighted sums
  ``2 * 2*B*Q*W*d`` (``Q`` = W queries, or 1 in the last block when training on prefixes, where only the
  last position asks; the boolean causal mask makes SDPA compute every ``Q x W`` score); output projection
  ``2*B*Q*d*d`` and feed-forward ``2 * 2*B*Q*d*f*d``. Scoring: ``2*T*C*d`` for the ``T`` targets of the
  batch against the ``C`` items the loss scores (all items for the full-softmax ``ce`` loss).
* GRU4Rec, per layer: ``2*B*n_in*3h + 2*B*h*3h`` (the GRU cell's two matmuls); scoring ``2*B*(B + n_negatives)*h``.
  The carried state is detached, so the recurrent matmul's backward is 1 x its forward, not 2 x.

The analytic count of one step is cross-checked with ``torch.utils.flop_counter.FlopCounterMode`` (which
counts matmuls and attention of forward and backward). The peak is the best of several float32
``torch.matmul`` of large square matrices on the same threads, measured in the same run. ``--profile``
prints the top 8 ops by self CPU time of one training step (``torch.profiler``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _common import generated_clicks, processed, sample_processed
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from seqrec.data.dataset import ProcessedDataset, SessionSplit
from seqrec.models.base import SequenceModel
from seqrec.models.gru4rec import GRU4Rec
from seqrec.models.registry import build_model
from seqrec.models.sasrec import SASRec
from seqrec.optim import clip_gradients, make_optimizer, make_scheduler
from seqrec.train_config import TrainConfig, split_overrides
from seqrec.trainer import batch_loss, make_loader

SETUPS: tuple[tuple[str, str], ...] = (("sasrec", "sample"), ("sasrec", "default"), ("gru4rec", "sample"))
DEFAULT_STEPS = {"sasrec": 30, "gru4rec": 400}  # GRU4Rec's steps are sub-millisecond: time many


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a float32 ``n x n`` matmul on the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def sasrec_forward_flops(model: SASRec, batch: Any) -> int:
    """Matmul FLOPs of one SASRec forward pass over ``batch`` (see the module docstring)."""
    cfg = model.config
    inputs, targets = batch
    b, w = inputs.shape
    d, f = cfg.hidden, cfg.ffn_mult
    prefixes = cfg.train_on == "prefixes"
    total = 0
    for i in range(cfg.layers):
        q = 1 if prefixes and i == cfg.layers - 1 else w  # queries (and projected / fed-forward positions)
        total += 2 * b * w * d * 3 * d  # QKV of every position (keys and values are always needed)
        total += 2 * 2 * b * q * w * d  # scores q.k and weighted sums of v, over all heads
        total += 2 * b * q * d * d + 2 * 2 * b * q * d * f * d  # output projection, feed-forward
    n_targets = b if prefixes else int((targets > 0).sum())
    # the full-softmax ce loss scores every item; sampled: the batch's distinct targets plus the negatives
    scored = model.n_items if cfg.loss == "full" else len(targets[targets > 0].unique()) + cfg.n_negatives
    return total + 2 * n_targets * scored * d


def gru4rec_step_flops(model: GRU4Rec, batch: Any) -> int:
    """Matmul FLOPs of one GRU4Rec training step, forward and backward (see the module docstring).

    The carried state is detached (one-step BPTT), so the recurrent matmul's backward computes only its
    weight gradient: 1 x forward instead of 2 x.
    """
    cfg = model.config
    b, h = len(batch.inputs), cfg.hidden
    total = 0
    for cell in model.cells:
        n_in = cell.weight_ih.shape[1] if isinstance(cell, torch.nn.GRUCell) else 0  # one-hot input: a lookup
        total += 3 * (2 * b * n_in * 3 * h) + 2 * (2 * b * h * 3 * h)  # input, recurrent weights of the 3 gates
    return total + 3 * (2 * b * (b + cfg.n_negatives) * h)


def step_flops(model: SequenceModel, batch: Any) -> int:
    """Forward + backward (2 x forward, but see ``gru4rec_step_flops``) matmul FLOPs of one training step."""
    return 3 * sasrec_forward_flops(model, batch) if isinstance(model, SASRec) else gru4rec_step_flops(model, batch)


@dataclass
class Trained:
    """One setup's model, optimiser and an endless supply of its real training batches."""

    model: SequenceModel
    cfg: TrainConfig
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    batches: Iterator[Any]
    state: torch.Tensor | None = None

    def step(self, batch: Any) -> None:
        """One training step as ``Trainer._step`` runs it on CPU."""
        loss, self.state = batch_loss(self.model, batch, self.state)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip > 0:
            clip_gradients(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        self.sched.step()


def endless_batches(model: SequenceModel, split: SessionSplit, batch_size: int,
                    popularity: torch.Tensor) -> Iterator[Any]:
    """``model``'s training batches of ``split``, epoch after epoch (seed 0), without end."""
    epoch = 1
    while True:
        yield from make_loader(model.loader_spec(), split, batch_size, seed=0, epoch=epoch, train=True,
                               popularity=popularity)
        epoch += 1


def setup(name: str, preset: str, data: ProcessedDataset) -> Trained:
    model_cfg, train_cfg, _ = split_overrides(name, preset, {})
    torch.manual_seed(0)
    popularity = torch.as_tensor(data.popularity).float()
    model = build_model(name, data.n_items, model_cfg, popularity).train()
    split = data.split("train_full")
    loader_len = len(make_loader(model.loader_spec(), split, train_cfg.batch_size, seed=0, epoch=1, train=True,
                                 popularity=popularity))
    opt = make_optimizer(model, train_cfg)
    return Trained(model, train_cfg, opt, make_scheduler(opt, train_cfg, loader_len),
                   endless_batches(model, split, train_cfg.batch_size, popularity))


def flop_counter_step(run: Trained) -> tuple[int, int]:
    """``(analytic, FlopCounterMode)`` FLOPs of the next training step (forward + backward)."""
    batch = next(run.batches)
    counter = FlopCounterMode(display=False)
    with counter:
        run.step(batch)
    return step_flops(run.model, batch), counter.get_total_flops()


def timed(run: Trained, steps: int, warmup: int) -> tuple[float, int]:
    """Seconds and analytic FLOPs of ``steps`` steady-state steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run.step(next(run.batches))
    seconds, flops = 0.0, 0
    for _ in range(steps):
        batch = next(run.batches)
        flops += step_flops(run.model, batch)
        started = time.perf_counter()
        run.step(batch)
        seconds += time.perf_counter() - started
    return seconds, flops


def top_ops(run: Trained, n_steps: int, top: int = 8) -> str:
    """The ``top`` ops by self CPU time over ``n_steps`` training steps."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n_steps):
            run.step(next(run.batches))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def dataset() -> tuple[str, Path]:
    sample = sample_processed()
    if sample is not None:
        return "real YooChoose sample", sample
    return "generated 300k clicks", processed(generated_clicks(300_000, n_items=20_000), "synthetic-300k-i20000")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--steps", type=int, default=0, help="timed steps per setup (0: 30 SASRec, 400 GRU4Rec)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones")
    p.add_argument("--model", choices=["all", "sasrec", "gru4rec"], default="all")
    p.add_argument("--profile", action="store_true",
                   help="print the top 8 ops by self CPU time of one step (GRU4Rec: of 20 steps)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    label, path = dataset()
    data = ProcessedDataset.load(path)
    print(f"{label}: {data.split('train_full').n_clicks:,} training clicks, {data.n_items:,} items, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    peak = matmul_peak()
    print(f"dense float32 matmul peak (2048 x 2048, best of 5): {peak / 1e9:.1f} GFLOP/s\n")

    rows, profiles = [], []
    for name, preset in SETUPS:
        if args.model not in ("all", name):
            continue
        run = setup(name, preset, data)
        steps = args.steps or DEFAULT_STEPS[name]
        seconds, flops = timed(run, steps, args.warmup)
        analytic, counted = flop_counter_step(run)
        rate = flops / seconds
        rows.append((f"{name} {preset}", 1e3 * seconds / steps, flops / steps / 1e9, rate / 1e9, rate / peak,
                     analytic / 1e9, counted / 1e9))
        if args.profile:
            n = 1 if name == "sasrec" else 20
            profiles.append((f"{name} {preset} ({n} step{'s' if n > 1 else ''})", top_ops(run, n)))

    print(f"{'setup':<16} {'ms/step':>9} {'GFLOP/step':>11} {'GFLOP/s':>9} {'of peak':>8} "
          f"{'1-step analytic':>16} {'FlopCounterMode':>16}")
    for setup_name, ms, gflop, rate, ratio, analytic, counted in rows:
        print(f"{setup_name:<16} {ms:>9.2f} {gflop:>11.4f} {rate:>9.2f} {ratio:>8.1%} "
              f"{analytic:>15.4f}G {counted:>15.4f}G")
    for title, table in profiles:
        print(f"\ntop 8 ops by self CPU time, {title}:\n{table}")


if __name__ == "__main__":
    main()
