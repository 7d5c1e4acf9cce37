"""A sequence model fused with a session-kNN model: a mixture of their next-click distributions.

The network's scores become a distribution by a softmax over the catalogue, the kNN model's by dividing its
(non-negative) item scores by their sum, and the fused model ranks items by the log of the mixture

    p(item) = (1 - w) * softmax(network scores)[item] + w * knn[item] / sum(knn)

(a weighted hybrid of a neural and a neighbourhood model, as compared by Ludewig et al., "Empirical analysis of
session-based recommendation algorithms", UMUAI 2021). A prefix without neighbours (all kNN scores 0) is
ranked by the network alone. ``w`` is chosen on the valid split (``choose_weight``) with the network of the
selection phase and the kNN model fitted on train_tr, then used unchanged with the refitted network and the
kNN model fitted on train_full, so the test split chooses nothing. ``w = 0`` ranks exactly as the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from seqrec.data.dataset import SessionSplit, gather_windows
from seqrec.devices import device_of
from seqrec.evaluation import SCORE_BUDGET, rank_metrics, ranks_of_targets
from seqrec.models.base import SequenceModel
from seqrec.models.baselines import Baseline, make_baseline
from seqrec.progress import progress_bar

# the session-kNN models a network can be fused with (``TrainConfig.fuse``), at their default settings
FUSIBLE = ("sknn", "vsknn", "stan", "vstan")
WEIGHTS = tuple(round(0.05 * i, 2) for i in range(20))  # the kNN model's share tried on valid: 0, 0.05, ..., 0.95


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


@dataclass
class WeightChoice:
    """The kNN share chosen on a split, with the selection metric of every share tried."""

    weight: float
    values: dict[float, float]  # weight -> the metric at that weight


@torch.no_grad()
def choose_weight(network: SequenceModel, knn: Baseline, split: SessionSplit, n_items: int, max_len: int,
                  metric: str, batch_size: int = 512, progress: bool = True) -> WeightChoice:
    """The weight of ``WEIGHTS`` with the best ``metric`` (a ``rank_metrics`` name, e.g. ``mrr_at_20``) on
    ``split``, the smaller weight on a tie: one pass over the split's predictions in batches of at most
    ``batch_size`` prefixes, both models scoring each batch once, every weight ranked from those scores (memory
    bounded by ``SCORE_BUDGET``)."""
    was_training = network.training
    network.eval()
    items = np.asarray(split.items, dtype=np.int64)
    starts, targets = split.prediction_positions()
    if len(targets) == 0:
        raise ValueError("the split has no predictions (every session has a single click)")
    ranks = {w: np.empty(len(targets), dtype=np.int64) for w in WEIGHTS}
    # the two distributions, a mixture and its comparison within the budget
    step = max(1, min(batch_size, SCORE_BUDGET // (4 * (n_items + 1))))
    device = device_of(network)
    for lo in progress_bar(range(0, len(targets), step), desc="fusion weight", disable=not progress, leave=False,
                           unit="batch"):
        hi = min(lo + step, len(targets))
        inputs = torch.from_numpy(gather_windows(items, starts[lo:hi], targets[lo:hi], max_len)).to(device)
        wanted = torch.from_numpy(items[targets[lo:hi]]).to(device)
        log_net, log_knn = log_probabilities(network, knn, inputs)
        for w in WEIGHTS:
            ranks[w][lo:hi] = ranks_of_targets(mixture(log_net, log_knn, w), wanted)[0].cpu().numpy()
    network.train(was_training)
    values = {w: rank_metrics(r)[metric] for w, r in ranks.items()}
    best = max(WEIGHTS, key=lambda w: (values[w], -w))
    return WeightChoice(best, values)
