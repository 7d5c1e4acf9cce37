"""Adagrad with momentum that updates only the touched rows of sparse gradients.

This is the optimiser of the official GRU4Rec (Hidasi & Czapp 2023): with sparse embedding
gradients, the accumulators and momentum of items absent from a mini-batch are left untouched,
which is both faster and part of what makes GRU4Rec train well.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class IndexedAdagradM(Optimizer):
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

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p, momentum)
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()  # the update is non-linear: indices must be unique
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
        return loss
