"""Where a model computes: the device a run asks for (``resolve_device``, the training loop), and the one a model
sits on (``device_of``, shared by evaluation and serving, so serving need not import the evaluator)."""

from __future__ import annotations

import os

import torch


def device_of(model: object) -> torch.device:
    """Where a scorer computes: its parameters' device for a torch module, else its ``device``."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device(getattr(model, "device", "cpu"))


def resolve_device(name: str) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but CUDA is not available")
    return torch.device(name)
