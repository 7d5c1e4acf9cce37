"""GRU4Rec's session-parallel mini-batches (Hidasi et al. 2016) and its store of shared negatives.

Each row of a batch follows one session click by click: the input is a click and the target the
next one, with no padding. When a row's session ends, the row takes the next session not started yet
(sessions ordered by their first click, or shuffled) and only that row's hidden state is reset; when
none is left, the row is dropped and the batch shrinks. The training loop carries the hidden state
from batch to batch and adjusts it with each batch's ``keep`` and ``reset``.

Negatives (Hidasi & Karatzoglou 2018) are shared by the rows of a step and drawn from popularity **
alpha; like the official implementation, a large block of them is drawn at once and handed out step by
step, and each step takes its negatives only when its loss asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from seqrec.data.dataset import SessionSplit


class NegativeSampler:
    """Shared negatives ``[n_negatives]`` per step, from a store of ``store_size`` items redrawn when spent."""

    def __init__(self, popularity: torch.Tensor, n_negatives: int, alpha: float, store_size: int,
                 device: torch.device | str = "cpu"):
        pop = popularity.float().clone()
        pop[0] = 0.0
        self.cdf = (torch.cumsum(pop**alpha, 0) / (pop**alpha).sum()).to(device)  # [n_items + 1]
        self.n_items, self.n_negatives = len(pop) - 1, n_negatives
        self.rounds = max(1, store_size // n_negatives)
        self._refresh()

    def _refresh(self) -> None:
        u = torch.rand(self.rounds * self.n_negatives, device=self.cdf.device)
        self.store = torch.searchsorted(self.cdf, u).clamp_(1, self.n_items).view(self.rounds, self.n_negatives)
        self.position = 0

    def draw(self) -> torch.Tensor:
        """The next step's negatives, item ids ``[n_negatives]``."""
        if self.position >= len(self.store):
            self._refresh()
        sample = self.store[self.position]
        self.position += 1
        return sample


class SessionParallelBatch(NamedTuple):
    """One step: a click per row and the click after it, plus how the rows relate to the previous step."""

    inputs: torch.Tensor  # [B] item ids
    targets: torch.Tensor  # [B] the next click of each row's session
    keep: torch.Tensor | None  # [B_prev] bool: previous rows that go on (None: all of them)
    reset: torch.Tensor  # [B] bool: rows that start a new session (their state starts from zero)
    negatives: Callable[[], torch.Tensor] | None  # draws the step's shared negatives (training only)

    def to(self, device: torch.device) -> SessionParallelBatch:
        """The batch with its tensors on ``device``."""
        keep = None if self.keep is None else self.keep.to(device, non_blocking=True)
        return self._replace(inputs=self.inputs.to(device, non_blocking=True),
                             targets=self.targets.to(device, non_blocking=True), keep=keep,
                             reset=self.reset.to(device, non_blocking=True))


def session_order(split: SessionSplit, shuffle: bool, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> np.ndarray:
    """The sessions of ``split`` with at least two clicks, by first click or shuffled, this rank's share."""
    order = np.argsort(split.times[split.offsets[:-1]], kind="stable")
    if shuffle:
        order = np.random.default_rng((seed, epoch)).permutation(order)
    return order[split.lengths[order] > 1][rank::world_size]


class SessionParallelBatches:
    """Session-parallel mini-batches of the sessions ``order`` (indices into ``split``)."""

    def __init__(self, split: SessionSplit, batch_size: int, order: np.ndarray,
                 sampler: NegativeSampler | None = None):
        self.items = torch.from_numpy(np.asarray(split.items, dtype=np.int64))
        self.offsets, self.order, self.batch_size, self.sampler = split.offsets, order, batch_size, sampler
        self.n_steps = sum(1 for _ in self._schedule())  # exact: distributed ranks must agree on it

    def __len__(self) -> int:
        return self.n_steps

    def _schedule(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
        """``(positions, keep, reset)`` of every step, on numpy index arrays only."""
        order, offsets = self.order, self.offsets
        rows = min(self.batch_size, len(order))
        nxt = rows
        pos = offsets[order[:rows]].copy()
        end = offsets[order[:rows] + 1].copy()
        keep, reset = None, np.ones(rows, dtype=bool)
        while len(pos):
            yield pos, keep, reset
            pos = pos + 1
            done = pos + 1 >= end
            n_done = int(done.sum())
            if not n_done:
                keep, reset = None, np.zeros(len(pos), dtype=bool)
                continue
            fresh = order[nxt : nxt + n_done]
            nxt += len(fresh)
            alive = ~done
            alive[np.flatnonzero(done)[: len(fresh)]] = True  # finished rows that get a new session
            restart = done & alive
            pos[restart], end[restart] = offsets[fresh], offsets[fresh + 1]
            keep = alive if not alive.all() else None
            reset = restart[alive]
            pos, end = pos[alive], end[alive]

    def __iter__(self) -> Iterator[SessionParallelBatch]:
        draw = self.sampler.draw if self.sampler is not None else None
        for pos, keep, reset in self._schedule():
            p = torch.from_numpy(pos)
            yield SessionParallelBatch(self.items[p], self.items[p + 1],
                                       None if keep is None else torch.from_numpy(keep), torch.from_numpy(reset),
                                       draw)
