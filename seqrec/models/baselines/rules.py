"""Item-to-item baselines that score by the prefix's last item.

* AR, association rules: co-occurrence counts of item pairs in a session, pruned to the 20 strongest
  rules per item (Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms").
* SR, sequential rules: item ``b`` after item ``a`` within ``steps`` clicks, weighted by
  1 / distance, pruned likewise (same paper).
* Item-kNN: cosine-like similarity of items' session co-occurrence vectors, the baseline of
  Hidasi et al. 2016 ("Session-based recommendations with recurrent neural networks").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from seqrec.configs import at_least, check_ranges, in_range, ranged
from seqrec.data.dataset import SessionSplit
from seqrec.models.baselines.base import LastItemModel, click_rank_by_session_id, pairs_within, sum_and_prune


@dataclass(frozen=True)
class ARConfig:
    pruning: int = ranged(20, at_least(0))  # strongest rules kept per item (0: all)

    def __post_init__(self) -> None:
        check_ranges("ar", self)


@dataclass(frozen=True)
class SRConfig:
    steps: int = ranged(8, at_least(1))  # b follows a within this many clicks
    pruning: int = ranged(20, at_least(0))  # strongest rules kept per item (0: all)

    def __post_init__(self) -> None:
        check_ranges("sr", self)


@dataclass(frozen=True)
class ItemKNNConfig:
    n_sims: int = ranged(100, at_least(1))  # the k of item-kNN: most similar items kept per item
    lmbd: float = ranged(20.0, at_least(0))  # support regularisation of the similarity's denominator
    alpha: float = ranged(0.5, in_range(0, 1))  # weight of the item's own support (1 - alpha: the other's)

    def __post_init__(self) -> None:
        check_ranges("itemknn", self)


class AssociationRules(LastItemModel):
    name = "ar"

    def __init__(self, config: ARConfig = ARConfig()):
        super().__init__()
        self.config = config

    def fit(self, split: SessionSplit, n_items: int) -> AssociationRules:
        self.n_items = n_items
        earlier, later, dist = pairs_within(split, None)
        a, b = split.items[earlier], split.items[later]
        rank = click_rank_by_session_id(split)
        # a scan inserts both directions when it reaches the later click, earlier partners first
        longest = int(split.lengths.max())
        seen = rank[later] * (longest + 1) + (longest - dist)
        rows, cols = np.concatenate([b, a]), np.concatenate([a, b])
        seen = np.concatenate([seen, seen])
        weights = np.ones(len(rows))
        self.matrix = sum_and_prune(rows, cols, weights, seen, n_items + 1, self.config.pruning)
        return self


class SequentialRules(LastItemModel):
    name = "sr"

    def __init__(self, config: SRConfig = SRConfig()):
        super().__init__()
        self.config = config

    def fit(self, split: SessionSplit, n_items: int) -> SequentialRules:
        self.n_items = n_items
        earlier, later, dist = pairs_within(split, self.config.steps)
        rank = click_rank_by_session_id(split)
        seen = rank[later] * (self.config.steps + 1) + dist
        self.matrix = sum_and_prune(split.items[earlier], split.items[later], 1.0 / dist, seen,
                                    n_items + 1, self.config.pruning)
        return self


class ItemKNN(LastItemModel):
    name = "itemknn"

    def __init__(self, config: ItemKNNConfig = ItemKNNConfig()):
        super().__init__()
        self.config = config

    def fit(self, split: SessionSplit, n_items: int) -> ItemKNN:
        self.n_items = n_items
        cfg = self.config
        session = split.session_of_click()
        counts = sp.csr_matrix((np.ones(split.n_clicks), (session, split.items)),
                               shape=(split.n_sessions, n_items + 1))
        co = (counts.T @ counts).tocoo()
        support = np.bincount(split.items, minlength=n_items + 1).astype(np.float64)
        off_diagonal = co.row != co.col
        r, c, v = co.row[off_diagonal], co.col[off_diagonal], co.data[off_diagonal]
        sim = v / ((support[r] + cfg.lmbd) ** cfg.alpha * (support[c] + cfg.lmbd) ** (1.0 - cfg.alpha))
        self.matrix = sum_and_prune(r, c, sim, np.zeros(len(r), dtype=np.int64), n_items + 1, cfg.n_sims)
        return self
