"""What every classic baseline shares: fit on a compact split, score padded prefixes with numpy, and
save the fitted model as plain numeric arrays (``np.savez`` / ``np.load`` without pickle)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from seqrec.data.dataset import SessionSplit

CSR_PARTS = ("data", "indices", "indptr", "shape")


class Baseline(ABC):
    """A non-neural model: ``fit`` on a split, then ``score`` batches like any other model.

    Subclasses name their fitted attributes in ``state_arrays`` (numpy arrays) and ``state_matrices``
    (scipy sparse matrices) so that ``state_dict`` / ``load_state_dict`` save and rebuild every model
    the same way.
    """

    name: str = ""
    device = torch.device("cpu")
    state_arrays: ClassVar[tuple[str, ...]] = ()
    state_matrices: ClassVar[tuple[str, ...]] = ()
    config: Any  # the model's settings, a dataclass (every subclass sets it)

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

    def _state_keys(self) -> list[str]:
        """Keys of ``state_dict``: ``n_items``, each array's name, and ``<matrix>.<part>`` for the CSR parts."""
        return ["n_items", *self.state_arrays, *(f"{m}.{part}" for m in self.state_matrices for part in CSR_PARTS)]

    def state_dict(self) -> dict[str, np.ndarray]:
        """The fitted model as numeric numpy arrays, keyed as ``_state_keys`` says; sparse matrices as CSR."""
        state = {"n_items": np.asarray(self.n_items, dtype=np.int64)}
        for name in self.state_arrays:
            state[name] = np.asarray(getattr(self, name))
            if state[name].dtype.kind not in "biuf":
                raise TypeError(f"{type(self).__name__}.{name} is not numeric ({state[name].dtype}), cannot be saved")
        for name in self.state_matrices:
            matrix = sp.csr_matrix(getattr(self, name))
            parts = (matrix.data, matrix.indices, matrix.indptr, np.asarray(matrix.shape, dtype=np.int64))
            state.update({f"{name}.{part}": value for part, value in zip(CSR_PARTS, parts, strict=True)})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Baseline:
        """Restore the fitted attributes from ``state`` (a ``state_dict`` or a loaded ``.npz``); returns ``self``.

        The hyper-parameters come from the constructor, so build the model with the fitted one's config first.
        """
        missing = [key for key in self._state_keys() if key not in state]
        if missing:
            raise ValueError(f"state of baseline {self.name!r} ({type(self).__name__}) lacks key(s) "
                             f"{', '.join(map(repr, missing))}")
        self.n_items = int(state["n_items"])
        for name in self.state_arrays:
            setattr(self, name, np.asarray(state[name]))
        for name in self.state_matrices:
            data, indices, indptr, shape = (np.asarray(state[f"{name}.{part}"]) for part in CSR_PARTS)
            setattr(self, name, sp.csr_matrix((data, indices, indptr), shape=(int(shape[0]), int(shape[1]))))
        return self


class LastItemModel(Baseline):
    """A model that scores by a sparse item-to-item matrix indexed by the prefix's last item.

    Row 0 (padding) of the matrix is empty, so a prefix of only padding scores all zeros.
    """

    state_matrices = ("matrix",)

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
