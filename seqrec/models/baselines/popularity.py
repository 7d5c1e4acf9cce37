"""Popularity baselines: POP (global) and S-POP (session popularity, ties by global popularity).

See Hidasi et al. 2016, "Session-based recommendations with recurrent neural networks", Section 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.data.dataset import SessionSplit
from seqrec.models.baselines.base import Baseline


@dataclass(frozen=True)
class PopConfig:
    """POP and S-POP have no hyper-parameters."""


class Pop(Baseline):
    """Always recommends the most clicked training items."""

    name = "pop"
    state_arrays = ("popularity",)

    def __init__(self, config: PopConfig = PopConfig()):
        super().__init__()
        self.config = config
        self.popularity = np.zeros(1)

    def fit(self, split: SessionSplit, n_items: int) -> Pop:
        self.n_items = n_items
        self.popularity = np.bincount(split.items, minlength=n_items + 1).astype(np.float64)
        self.popularity[0] = 0.0
        return self

    def score_numpy(self, inputs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(inputs), self.n_items + 1))


class SessionPop(Pop):
    """Items clicked most often in the current session first, then by global popularity."""

    name = "spop"

    def score_numpy(self, inputs: np.ndarray) -> np.ndarray:
        rows = np.repeat(np.arange(len(inputs)), inputs.shape[1])
        counts = np.zeros((len(inputs), self.n_items + 1))
        np.add.at(counts, (rows, inputs.ravel()), 1.0)
        counts[:, 0] = 0.0
        return counts + self.popularity / (self.popularity.max() + 1.0)
