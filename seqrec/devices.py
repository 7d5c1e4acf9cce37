"""Where a model computes, shared by evaluation and serving (so serving need not import the evaluator)."""

from __future__ import annotations

import torch


def device_of(model: object) -> torch.device:
    """Where a scorer computes: its parameters' device for a torch module, else its ``device``."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device(getattr(model, "device", "cpu"))
