"""Batches of left-padded training sequences gathered on the fly from a compact split.

Every session of n clicks gives n - 1 training targets: the input at position t is click t and the
target is click t + 1. Sessions longer than ``max_len + 1`` are cut into consecutive windows of at
most ``max_len`` targets, the last window ending at the session's last click, so that every click is
a target exactly once. Only one batch is ever padded at a time.

With ``prefixes=True`` every prefix of a session is its own row whose only target is the click after
it (the data augmentation of Tan et al. 2016, and how RecBole trains SASRec): the same targets, but
each one gets its own forward pass, dropout noise and place in the shuffle, for about L/2 times the
compute of whole sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from seqrec.data.dataset import SessionSplit, gather_windows


def _per_session(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[s]`` windows of each session s: every window's session and its rank within it."""
    session = np.repeat(np.arange(len(counts)), counts)
    return session, np.arange(len(session)) - np.repeat(np.cumsum(counts) - counts, counts)


def session_windows(split: SessionSplit, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` global input positions of every training window of ``split``.

    A window's inputs are ``items[start:end]`` and its targets ``items[start + 1:end + 1]``.
    """
    n_targets = split.lengths - 1
    session, rank_from_end = _per_session(-(-n_targets // max_len))  # ceil; one-click sessions: no window
    last_input = split.offsets[1:] - 1  # exclusive end of the inputs of the last window
    end = last_input[session] - rank_from_end * max_len
    start = np.maximum(split.offsets[:-1][session], end - max_len)
    return start, end


def prefix_windows(split: SessionSplit, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` of one window per target: the (last ``max_len`` clicks of the) prefix before it."""
    session, rank = _per_session(split.lengths - 1)
    first = split.offsets[:-1][session]
    end = first + 1 + rank
    return np.maximum(first, end - max_len), end


class WindowBatch(NamedTuple):
    """Left-padded rows ``[B, W]`` of input clicks and of their targets, 0 = padding."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device) -> WindowBatch:
        """The batch with its tensors on ``device``."""
        return WindowBatch(self.inputs.to(device, non_blocking=True), self.targets.to(device, non_blocking=True))


class SequenceLoader:
    """Iterate ``WindowBatch(inputs, targets)`` of LongTensors ``[batch, width]``, 0 = padding.

    With ``bucket=True`` (the default) windows of similar length share a batch and ``width`` is the
    longest window of the batch (at most ``max_len``): sessions are short (3.6 clicks on average),
    so this skips most of the padding. Batches are still drawn in a shuffled order. With
    ``prefixes=True`` the rows are prefixes and only the last column of ``targets`` is set.
    """

    def __init__(
        self,
        split: SessionSplit,
        max_len: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        bucket: bool = True,
        prefixes: bool = False,
    ):
        self.items = np.asarray(split.items, dtype=np.int64)
        self.max_len, self.batch_size, self.shuffle, self.bucket = max_len, batch_size, shuffle, bucket
        self.prefixes = prefixes
        start, end = (prefix_windows if prefixes else session_windows)(split, max_len)
        self.start, self.end = start[rank::world_size], end[rank::world_size]
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return -(-len(self.start) // self.batch_size)

    @property
    def n_windows(self) -> int:
        return len(self.start)

    def set_epoch(self, epoch: int) -> None:
        """Make the shuffle order depend on the epoch (deterministic for a seed)."""
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.start)) if self.shuffle else np.arange(len(self.start))
        if self.bucket:
            order = order[np.argsort(self.end[order] - self.start[order], kind="stable")]
        batches = [order[b : b + self.batch_size] for b in range(0, len(order), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[WindowBatch]:
        for idx in self._batches():
            start, end = self.start[idx], self.end[idx]
            width = int((end - start).max()) if self.bucket else self.max_len
            inputs = gather_windows(self.items, start, end, width)
            if self.prefixes:
                targets = np.zeros_like(inputs)
                targets[:, -1] = self.items[end]
            else:
                targets = gather_windows(self.items, start + 1, end + 1, width)
            yield WindowBatch(torch.from_numpy(inputs), torch.from_numpy(targets))
