"""The processed dataset: compact sessions per split, the item table, and batch gathering.

A split is stored as four flat arrays (docs/protocol.md, "Preprocessing", step 5): ``items``
(dense ids, 1..n_items, 0 is padding), ``offsets`` (session boundaries, length n_sessions + 1),
``times`` (unix seconds) and ``session_ids`` (raw ids). Padding and truncation to ``max_len`` happen
only when a batch is gathered, so memory grows with the number of clicks and never with clicks times
``max_len``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq

SPLITS = ("train_full", "train_tr", "valid", "test")
_ARRAYS = ("items", "offsets", "times", "session_ids")


@dataclass
class SessionSplit:
    """Sessions of one split in compact form, ordered by start time."""

    items: np.ndarray  # int32 dense item ids of all clicks, session after session
    offsets: np.ndarray  # int64, session s spans items[offsets[s]:offsets[s + 1]]
    times: np.ndarray  # float64 unix seconds, one per click
    session_ids: np.ndarray  # int64 raw session ids, one per session

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_clicks(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_predictions(self) -> int:
        return self.n_clicks - self.n_sessions

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def session_of_click(self) -> np.ndarray:
        """Index of the session each click belongs to."""
        return np.repeat(np.arange(self.n_sessions), self.lengths)

    def prediction_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(session_start, target)`` global positions of every next-click prediction ("Evaluation").

        Each session of length n gives n - 1 predictions: the target is click i (i = 1..n-1) and the
        input is the clicks before it, from the session's first click.
        """
        is_target = np.ones(self.n_clicks, dtype=bool)
        is_target[self.offsets[:-1]] = False
        target = np.flatnonzero(is_target)
        start = np.repeat(self.offsets[:-1], self.lengths - 1)
        return start, target

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, directory: Path, mmap: bool = False) -> SessionSplit:
        mode: Literal["r"] | None = "r" if mmap else None
        return cls(**{name: np.load(directory / f"{name}.npy", mmap_mode=mode) for name in _ARRAYS})


def gather_windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """Left-padded ``[B, max_len]`` windows ``items[max(start, end - max_len):end]``, 0 = padding.

    ``starts`` and ``ends`` are global positions into the flat ``items`` array; a window never reaches
    before its ``start`` (the session's first click), and keeps the LAST ``max_len`` clicks.
    """
    idx = ends[:, None] - max_len + np.arange(max_len)[None, :]
    valid = idx >= starts[:, None]
    return np.where(valid, items[np.where(valid, idx, 0)], 0)


@dataclass
class ProcessedDataset:
    """A processed dataset directory written by :func:`seqrec.data.preprocess.preprocess`."""

    path: Path
    stats: dict

    @classmethod
    def load(cls, path: str | Path) -> ProcessedDataset:
        path = Path(path)
        stats_file = path / "stats.json"
        if not stats_file.exists():
            raise FileNotFoundError(f"{path}: not a processed dataset (no stats.json); run the preprocess step")
        return cls(path=path, stats=json.loads(stats_file.read_text()))

    @property
    def n_items(self) -> int:
        return int(self.stats["n_items"])

    @property
    def name(self) -> str:
        return str(self.stats.get("name", self.path.name))

    @property
    def digest(self) -> str:
        return str(self.stats.get("digest", ""))

    def split(self, name: str, mmap: bool = False) -> SessionSplit:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}, expected one of {SPLITS}")
        return SessionSplit.load(self.path / "splits" / name, mmap=mmap)

    @cached_property
    def item_table(self):
        """The item table (``item``, ``raw_id``, ``category``, ``clicks``) as a pandas DataFrame."""
        return pq.read_table(self.path / "items.parquet").to_pandas()

    @cached_property
    def raw_ids(self) -> np.ndarray:
        """Raw item id (string) of each dense id; index 0 (padding) is the empty string."""
        table = self.item_table
        out = np.empty(self.n_items + 1, dtype=object)
        out[0] = ""
        out[table["item"].to_numpy()] = table["raw_id"].to_numpy()
        return out

    @cached_property
    def popularity(self) -> np.ndarray:
        """Training (train_full) click count of each dense id; index 0 is 0."""
        table = self.item_table
        out = np.zeros(self.n_items + 1, dtype=np.int64)
        out[table["item"].to_numpy()] = table["clicks"].to_numpy()
        return out
