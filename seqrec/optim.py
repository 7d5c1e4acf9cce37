"""Optimisers that update only the touched rows of sparse gradients: Adagrad with momentum, AdamW.

``IndexedAdagradM`` is the optimiser of the official GRU4Rec (Hidasi & Czapp 2023): with sparse
embedding gradients, the accumulators and momentum of items absent from a mini-batch are left
untouched, which is both faster and part of what makes GRU4Rec train well. ``LazyAdamW`` does the same
for SASRec's sampled softmax on large catalogues.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class RowwiseOptimizer(Optimizer):
    """An optimiser whose update of a sparse gradient touches only the rows it holds.

    ``step`` runs the closure, then hands each parameter with a gradient to ``update`` with that
    gradient as given (dense) or coalesced (sparse: the updates are non-linear, indices must be unique).
    """

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad.coalesce() if p.grad.is_sparse else p.grad, group)
        return loss


class IndexedAdagradM(RowwiseOptimizer):
    """``acc += g^2; v = momentum * v - lr * g / sqrt(acc + eps); p += v`` (rows of sparse grads only)."""

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

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
        state = self._state(p, momentum)
        if grad.is_sparse:
            rows, values = grad.indices()[0], grad.values()
            acc = state["acc"][rows] + values.pow(2)
            state["acc"].index_copy_(0, rows, acc)
            step = values / (acc + eps).sqrt() * -lr
            if momentum > 0:
                step = state["mom"][rows].mul_(momentum).add_(step)
                state["mom"].index_copy_(0, rows, step)
            p.index_add_(0, rows, step)
        else:
            state["acc"].add_(grad.pow(2))
            denom = (state["acc"] + eps).sqrt()
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

    def update(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = float(state["step"])
        size = lr / (1 - beta1**t)
        root_correction = (1 - beta2**t) ** 0.5
        if grad.is_sparse:
            rows, values = grad.indices()[0], grad.values()
            m = state["exp_avg"][rows].mul_(beta1).add_(values, alpha=1 - beta1)
            v = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
            state["exp_avg"].index_copy_(0, rows, m)
            state["exp_avg_sq"].index_copy_(0, rows, v)
            row = p[rows] * (1 - lr * decay)
            p.index_copy_(0, rows, row - size * m / (v.sqrt() / root_correction + eps))
        else:
            p.mul_(1 - lr * decay)
            state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = state["exp_avg_sq"].sqrt().div_(root_correction).add_(eps)
            p.addcdiv_(state["exp_avg"], denom, value=-size)
