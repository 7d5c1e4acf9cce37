"""A sequence model fused with a session-kNN model: a mixture of their next-click distributions.

The network's scores become a distribution by a softmax over the catalogue, the kNN model's by dividing its
(non-negative) item scores by their sum, and the fused model ranks items by the log of the mixture

    p(item) = (1 - w) * softmax(network scores)[item] + w * knn[item] / sum(knn)

(a weighted hybrid of a neural and a neighbourhood model, as compared by Ludewig et al., "Empirical analysis of
session-based recommendation algorithms", UMUAI 2021). A prefix without neighbours (all kNN scores 0) is
ranked by the network alone, and ``w = 0`` ranks exactly as the network. How ``w`` is chosen (on valid only):
``seqrec.fusion``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from seqrec.data.dataset import SessionSplit
from seqrec.models.base import SequenceModel
from seqrec.models.baselines import Baseline, make_baseline

# the session-kNN models a network can be fused with (``TrainConfig.fuse``), at their default settings
FUSIBLE = ("sknn", "vsknn", "stan", "vstan")


def fitted_knn(name: str, split: SessionSplit, n_items: int) -> Baseline:
    """Session-kNN model ``name`` (one of ``FUSIBLE``, default settings) fitted on ``split``."""
    if name not in FUSIBLE:
        raise ValueError(f"fuse={name!r}: expected one of {FUSIBLE}")
    return make_baseline(name).fit(split, n_items)


def log_probabilities(network: SequenceModel, knn: Baseline,
                      inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two distributions over items 1..n for ``inputs`` [B, L], as logs ``[B, n_items + 1]`` (column 0,
    padding, is -inf): the network's log-softmax and the log of the kNN scores' share (-inf where 0)."""
    logits = network.score(inputs).float()
    logits[:, 0] = -math.inf
    log_net = torch.log_softmax(logits, dim=1)
    knn_scores = knn.score(inputs).to(log_net.device).clamp_min_(0)
    knn_scores[:, 0] = 0
    total = knn_scores.sum(1, keepdim=True)
    return log_net, torch.log(knn_scores / torch.where(total > 0, total, 1))  # no neighbours: all -inf


def mixture(log_net: torch.Tensor, log_knn: torch.Tensor, weight: float) -> torch.Tensor:
    """``log((1 - w) p_net + w p_knn)``: exactly ``log_net`` for ``w = 0``, and ``log_net`` shifted by a
    constant (the network's ranking) on rows where the kNN model has no neighbour."""
    if weight == 0:
        return log_net
    return torch.logaddexp(log_net + math.log1p(-weight), log_knn + math.log(weight))


class Fused(nn.Module):
    """A trained network fused with a fitted session-kNN model at kNN share ``weight``: scores any batch of
    prefixes as the log of the mixture (``mixture``). Its parameters are the network's; the kNN model's fitted
    tables are kept beside them."""

    def __init__(self, network: SequenceModel, knn: Baseline, weight: float):
        super().__init__()
        if not 0 <= weight < 1:
            raise ValueError(f"fusion weight {weight} must be in [0, 1)")
        self.network, self.knn, self.weight = network, knn, float(weight)

    @property
    def config(self) -> Any:
        """The network's config (its ``max_len`` is the fused model's)."""
        return self.network.config

    @property
    def n_items(self) -> int:
        return self.network.n_items

    @property
    def n_parameters(self) -> int:
        """The network's parameters plus the numbers the kNN model stores."""
        return sum(p.numel() for p in self.network.parameters()) + self.knn.n_parameters

    @torch.no_grad()
    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        return mixture(*log_probabilities(self.network, self.knn, inputs), self.weight)
