"""Choosing a fused model's kNN share on the valid split (``seqrec.models.fused``: the fused model).

The share ``w`` is chosen with the network of the selection phase and the kNN model fitted on train_tr, then
used unchanged with the refitted network and the kNN model fitted on train_full, so the test split chooses
nothing. ``WEIGHTS`` includes 0 (the network alone), so the fused model is never worse than the network on valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seqrec.data.dataset import SessionSplit, gather_windows
from seqrec.devices import device_of
from seqrec.evaluation import SCORE_BUDGET, rank_metrics, ranks_of_targets
from seqrec.models.base import SequenceModel
from seqrec.models.baselines import Baseline
from seqrec.models.fused import log_probabilities, mixture
from seqrec.progress import progress_bar

WEIGHTS = tuple(round(0.05 * i, 2) for i in range(20))  # the kNN model's share tried on valid: 0, 0.05, ..., 0.95


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
