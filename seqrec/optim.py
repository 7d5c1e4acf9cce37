"""Optimisers that update only the touched rows of sparse gradients (Adagrad with momentum, AdamW), and
the optimiser, learning-rate schedule and gradient clipping that the training loop builds from ``TrainConfig``.

``IndexedAdagradM`` is the optimiser of the official GRU4Rec (Hidasi & Czapp 2023): with sparse
embedding gradients, the accumulators and momentum of items absent from a mini-batch are left
untouched, which is both faster and part of what makes GRU4Rec train well. ``LazyAdamW`` does the same
for SASRec's sampled softmax on large catalogues.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.optim import Optimizer

if TYPE_CHECKING:
    from seqrec.train_config import TrainConfig


def sum_duplicate_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of a sparse row gradient and the sum of each row's values, bit for bit ``coalesce()``.

    An embedding's sparse gradient repeats a row once per lookup. ``coalesce()`` sums the repeats in the
    order its (unstable) sort of the indices leaves them, one row at a time; float sums depend on that
    order. Here the same ``torch.sort`` call fixes the same order and ``embedding_bag`` adds each row's
    repeats in it, in one vectorised call: the same values (except that a ``-0.0`` comes out as ``+0.0``:
    embedding_bag starts from ``+0.0``; ``torch.equal`` holds) in about 60% of the time for GRU4Rec's
    ``[2112, 100]`` output-embedding gradient (``benchmarks/bench_optim_step.py``). The sort is most of what
    is left, and cannot go: another order of the repeats would change the sums' rounding. Other layouts,
    devices and dtypes, and gradients already coalesced, go through ``coalesce()``.
    """
    if grad.is_coalesced() or grad.sparse_dim() != 1 or grad.dense_dim() != 1 or grad.device.type != "cpu" \
            or grad.dtype not in (torch.float32, torch.float64):
        grad = grad.coalesce()
        return grad.indices()[0], grad.values()
    indices, values = grad._indices()[0], grad._values()
    if values.stride(1) != 1:  # e.g. ``[n, 1]`` with strides ``(1, n)``: embedding_bag's fast kernel wants unit stride
        values = values.clone(memory_format=torch.contiguous_format)
    sorted_rows, order = torch.sort(indices)  # coalesce's own call: the repeats of a row stay in its order
    rows, counts = torch.unique_consecutive(sorted_rows, return_counts=True)
    starts = counts.cumsum(0).sub_(counts)
    summed = torch.embedding_bag(values, order, starts, False, 0)[0]  # mode 0: sum of each bag, in order
    return rows, summed


class RowwiseOptimizer(Optimizer):
    """An optimiser whose update of a sparse gradient touches only the rows it holds.

    ``step`` runs the closure, then hands each parameter with a dense gradient to ``update`` and each one
    with a sparse gradient to ``update_rows``, with the gradient's distinct rows and their summed values
    (the updates are non-linear: rows must be unique; ``sum_duplicate_rows`` is ``coalesce()``, faster).
    """

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        raise NotImplementedError

    def update_rows(self, p: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, group: dict) -> None:
        """Update rows ``rows`` (distinct) of ``p`` whose gradients are ``values``, and no other row."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    self.update_rows(p, *sum_duplicate_rows(grad), group)
                else:
                    self.update(p, grad, group)
        return loss


class IndexedAdagradM(RowwiseOptimizer):
    """``acc += g^2; v = momentum * v - lr * g / sqrt(acc + eps); p += v`` (rows of sparse grads only).

    The sparse update is written for speed on CPU with results bit for bit those of the formula computed
    row by row (``tests/test_optim.py`` pins it): ``index_add_`` into distinct rows adds exactly what a
    gather, add and ``index_copy_`` back would (and costs half), gathers use ``index_select`` (several times
    faster than ``acc[rows]``), and the gathered copies are updated in place. Fused ``addcmul_`` /
    ``addcdiv_`` / ``alpha=`` are avoided there: their multiply-adds round differently.
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.0, eps: float = 1e-6):
        if lr <= 0 or momentum < 0 or eps <= 0:
            raise ValueError(f"invalid IndexedAdagradM settings lr={lr}, momentum={momentum}, eps={eps}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "eps": eps})

    def _state(self, p: torch.Tensor, momentum: float) -> dict:
        state = self.state[p]
        if "acc" not in state:
            state["acc"] = torch.zeros_like(p)
            if momentum > 0:
                state["mom"] = torch.zeros_like(p)
        return state

    def update_rows(self, p: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, group: dict) -> None:
        lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
        state = self._state(p, momentum)
        state["acc"].index_add_(0, rows, values.square())
        denom = state["acc"].index_select(0, rows).add_(eps).sqrt_()
        step = torch.div(values, denom, out=denom).mul_(-lr)
        if momentum > 0:
            step = state["mom"].index_select(0, rows).mul_(momentum).add_(step)
            state["mom"].index_copy_(0, rows, step)
        p.index_add_(0, rows, step)

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
        state = self._state(p, momentum)
        state["acc"].add_(grad.square())
        denom = state["acc"].add(eps).sqrt_()
        if momentum > 0:
            state["mom"].mul_(momentum).addcdiv_(grad, denom, value=-lr)
            p.add_(state["mom"])
        else:
            p.addcdiv_(grad, denom, value=-lr)


class LazyAdamW(RowwiseOptimizer):
    """AdamW (Loshchilov & Hutter 2019) whose sparse gradients update only the rows they touch.

    Dense gradients get the usual AdamW step. For a sparse gradient (an item embedding looked up with
    ``sparse=True``), the moments, the decay and the step of the rows absent from the batch are left as
    they are ("lazy" Adam), so one step costs in proportion to the batch, not to the catalogue.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or eps <= 0 or weight_decay < 0:
            raise ValueError(f"invalid LazyAdamW settings lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _advance(self, p: torch.Tensor, group: dict) -> tuple[dict, float, float]:
        """The state of ``p`` after counting one more step, the step size and the second moment's correction."""
        lr, (beta1, beta2) = group["lr"], group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = float(state["step"])
        return state, lr / (1 - beta1**t), (1 - beta2**t) ** 0.5

    def update_rows(self, p: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, group: dict) -> None:
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state, size, root_correction = self._advance(p, group)
        m = state["exp_avg"][rows].mul_(beta1).add_(values, alpha=1 - beta1)
        v = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        row = p[rows] * (1 - lr * decay)
        p.index_copy_(0, rows, row - size * m / (v.sqrt() / root_correction + eps))

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state, size, root_correction = self._advance(p, group)
        p.mul_(1 - lr * decay)
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = state["exp_avg_sq"].sqrt().div_(root_correction).add_(eps)
        p.addcdiv_(state["exp_avg"], denom, value=-size)


def _has_sparse_gradients(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Embedding) and m.sparse for m in model.modules())


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    """AdamW (decay on the network's matrices only; lazy with sparse embeddings), Adam or Adagrad-momentum."""
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


def make_scheduler(opt: Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to 0 over ``cfg.epochs`` epochs (or a constant rate)."""
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


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients, dense or sparse, so that their joint 2-norm is at most ``max_norm``."""
    with_grad = [(p, grad) for p in parameters if (grad := p.grad) is not None]
    if not any(grad.is_sparse for _, grad in with_grad):
        return nn.utils.clip_grad_norm_([p for p, _ in with_grad], max_norm)
    grads = []
    for p, grad in with_grad:
        if grad.is_sparse:
            p.grad = grad = grad.coalesce()
        grads.append(grad)
    total = torch.linalg.vector_norm(torch.stack([
        torch.linalg.vector_norm(grad.values() if grad.is_sparse else grad) for grad in grads]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale)
    return total
