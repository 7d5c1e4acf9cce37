"""What every classic baseline shares: fit on a compact split, score padded prefixes with numpy."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp
import torch

from seqrec.data.dataset import SessionSplit


class Baseline(ABC):
    """A non-neural model: ``fit`` on a split, then ``score`` batches like any other model."""

    name: str = ""
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.n_items = 0

    @abstractmethod
    def fit(self, split: SessionSplit, n_items: int) -> Baseline:
        """Learn from the sessions of ``split`` (dense item ids 1..n_items)."""

    @abstractmethod
    def score_numpy(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs`` ``[B, L]`` left-padded item ids -> scores ``[B, n_items + 1]``."""

    @property
    def n_parameters(self) -> int:
        """Numbers the fitted model stores (non-zeros of its tables), for comparisons with neural models."""
        return self.n_items

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.score_numpy(inputs.cpu().numpy()), dtype=np.float32))


class LastItemModel(Baseline):
    """A model that scores by a sparse item-to-item matrix indexed by the prefix's last item."""

    def __init__(self) -> None:
        super().__init__()
        self.matrix = sp.csr_matrix((1, 1))

    @property
    def n_parameters(self) -> int:
        return int(self.matrix.nnz)

    def score_numpy(self, inputs: np.ndarray) -> np.ndarray:
        return self.matrix[inputs[:, -1]].toarray()


def session_order(split: SessionSplit) -> np.ndarray:
    """Sessions in the order of their raw ids (the order reference implementations read them)."""
    return np.argsort(split.session_ids, kind="stable")


def click_rank_by_session_id(split: SessionSplit) -> np.ndarray:
    """For each click, its index when sessions are read in raw-id order (to break ties like a file scan)."""
    order = session_order(split)
    lengths = split.lengths[order]
    new_offsets = np.concatenate([[0], np.cumsum(lengths)])
    rank = np.empty(split.n_clicks, dtype=np.int64)
    gather = np.repeat(split.offsets[:-1][order] - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    rank[gather] = np.arange(split.n_clicks)
    return rank


def pairs_within(split: SessionSplit, max_distance: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(earlier, later, distance)`` global positions of click pairs of the same session.

    All pairs with ``1 <= later - earlier <= max_distance`` (every pair when ``None``), built one
    distance at a time over the clicks whose session is long enough.
    """
    session = split.session_of_click()
    pos_in_session = np.arange(split.n_clicks) - split.offsets[:-1][session]
    longest = int(split.lengths.max(initial=1)) - 1
    limit = longest if max_distance is None else min(max_distance, longest)
    earlier, later, dist = [], [], []
    for d in range(1, limit + 1):
        idx = np.flatnonzero(pos_in_session >= d)
        earlier.append(idx - d)
        later.append(idx)
        dist.append(np.full(len(idx), d, dtype=np.int64))
    if not earlier:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(earlier), np.concatenate(later), np.concatenate(dist)


def sum_and_prune(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, first_seen: np.ndarray,
                  n: int, keep: int) -> sp.csr_matrix:
    """Sum ``weights`` per ``(row, col)`` into an ``n x n`` matrix keeping each row's ``keep`` largest.

    Ties are broken by ``first_seen`` (the earliest occurrence wins), like a scan that inserts
    rules in order and sorts them stably.
    """
    key = rows.astype(np.int64) * n + cols
    order = np.lexsort((first_seen, key))
    key, weights, first_seen = key[order], weights[order], first_seen[order]
    starts = np.flatnonzero(np.concatenate([[True], np.diff(key) != 0]))
    total = np.add.reduceat(weights, starts) if len(starts) else weights
    uniq, first = key[starts], first_seen[starts]
    r, c = uniq // n, uniq % n
    if keep > 0:
        order = np.lexsort((first, -total, r))
        r, c, total = r[order], c[order], total[order]
        row_start = np.flatnonzero(np.concatenate([[True], np.diff(r) != 0]))
        rank = np.arange(len(r)) - np.repeat(row_start, np.diff(np.concatenate([row_start, [len(r)]])))
        mask = rank < keep
        r, c, total = r[mask], c[mask], total[mask]
    return sp.csr_matrix((total, (r, c)), shape=(n, n))
