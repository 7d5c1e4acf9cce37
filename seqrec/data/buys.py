"""Buys joined to the sessions of each processed split: which sessions buy, what, and how many.

The labels of a split are the buys of its sessions, matched by raw session id, and only those made
before the split's cut-off (``cutoffs``): a training session's buy made after the start of validation
(``train_tr``) or of test (``train_full``, ``valid``) is a buy of the future and is dropped, like the
clicks of the time split. Labels are never part of a model's input (that is the session's clicks
only); they are stored beside the splits as ``splits/<split>/buys.npz``, one row per (session, raw item).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqrec.data.dataset import SPLITS, SessionSplit
from seqrec.data.readers import Buys

FILE = "buys.npz"


@dataclass
class BasketLabels:
    """The buys of one split, one row per (session, raw item), sorted by session then item."""

    session: np.ndarray  # int64 index of the buying session in its split (0..n_sessions-1)
    item: np.ndarray  # int32 dense item id, 0 when the item is outside the training vocabulary
    raw_item: np.ndarray  # raw item id as a string
    quantity: np.ndarray  # int64 total quantity bought
    time: np.ndarray  # float64 unix seconds of the first buy of the item in the session

    def __len__(self) -> int:
        return len(self.session)

    def buying(self, n_sessions: int) -> np.ndarray:
        """Boolean mask ``[n_sessions]``: the sessions with at least one buy."""
        mask = np.zeros(n_sessions, dtype=bool)
        mask[self.session] = True
        return mask

    def basket_sizes(self, n_sessions: int) -> np.ndarray:
        """Number of distinct items bought by each session ``[n_sessions]``."""
        return np.bincount(self.session, minlength=n_sessions)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        _savez(directory / FILE, {"session": self.session, "item": self.item, "raw_item": self.raw_item.astype(np.str_),
                                  "quantity": self.quantity, "time": self.time})

    @classmethod
    def load(cls, directory: Path) -> BasketLabels:
        path = Path(directory) / FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no buys in this processed dataset; run preprocess with a buys file "
                                    f"(the built-in generated data always has one)")
        with np.load(path, allow_pickle=False) as z:
            return cls(z["session"], z["item"], z["raw_item"], z["quantity"], z["time"])


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez``'s file with a fixed date in the zip entries (``np.savez`` stamps the current time), so that the
    same labels give the same bytes whenever and by whichever preprocess engine they are written."""
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(entry, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(value), allow_pickle=False)


def _lookup(sorted_keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each of ``values`` in ``sorted_keys`` and whether it is there."""
    pos = np.clip(np.searchsorted(sorted_keys, values), 0, max(len(sorted_keys) - 1, 0))
    found = (sorted_keys[pos] == values) if len(sorted_keys) else np.zeros(len(values), dtype=bool)
    return pos, found


def _same_kind(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` comparable: both as they are when both are numeric, else both as strings."""
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return a.astype(np.int64), b.astype(np.int64)
    return a.astype(str), b.astype(str)


def join_buys(buys: Buys, splits: dict[str, SessionSplit], vocabulary: np.ndarray,
              cutoffs: dict[str, float]) -> dict[str, BasketLabels]:
    """The labels of every split: ``buys`` of its sessions made before ``cutoffs[split]`` (unix seconds;
    absent = no cut-off), aggregated per (session, raw item). ``vocabulary``: the raw id of each dense id
    1..n. Vectorised: one sort per split."""
    vocab, buy_items = _same_kind(np.asarray(vocabulary), np.asarray(buys.item))
    by_id = np.argsort(vocab, kind="stable")
    pos, known = _lookup(vocab[by_id], buy_items)
    dense = np.where(known, by_id[pos] + 1, 0).astype(np.int32)
    out = {}
    for name, split in splits.items():
        ids, buy_sessions = _same_kind(np.asarray(split.session_ids), np.asarray(buys.session))
        order = np.argsort(ids, kind="stable")
        pos, found = _lookup(ids[order], buy_sessions)
        rows = np.flatnonzero(found & (buys.time < cutoffs.get(name, np.inf)))
        session = order[pos[rows]].astype(np.int64)
        out[name] = _aggregate(session, dense[rows], buy_items[rows], buys.quantity[rows], buys.time[rows])
    return out


def _aggregate(session: np.ndarray, dense: np.ndarray, raw: np.ndarray, quantity: np.ndarray,
               time: np.ndarray) -> BasketLabels:
    """One row per (session, raw item): quantities summed, the first buy time kept."""
    order = np.lexsort((time, raw, session))
    session, dense, raw, quantity, time = session[order], dense[order], raw[order], quantity[order], time[order]
    first = np.ones(len(session), dtype=bool)
    first[1:] = (session[1:] != session[:-1]) | (raw[1:] != raw[:-1])
    starts = np.flatnonzero(first)
    total = np.add.reduceat(quantity.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
    return BasketLabels(session[starts], dense[starts], raw[starts].astype(str), total, time[starts])


def cutoffs(valid_start: float, test_start: float) -> dict[str, float]:
    """Each split's buy cut-off: buys at or after it belong to a later period and are not labels."""
    return {"train_tr": valid_start, "valid": test_start, "train_full": test_start}


def buy_stats(labels: dict[str, BasketLabels], splits: dict[str, SessionSplit]) -> dict[str, dict[str, int]]:
    """Per split: buying sessions, distinct (session, item) pairs bought, and those on a known item."""
    return {name: {"buying_sessions": int(labels[name].buying(splits[name].n_sessions).sum()),
                   "bought_items": len(labels[name]),
                   "bought_known_items": int((labels[name].item > 0).sum())}
            for name in SPLITS if name in labels}
