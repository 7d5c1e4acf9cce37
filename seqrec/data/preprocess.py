"""The preprocessing of docs/protocol.md ("Preprocessing"): filter, split by session end time,
encode items, write a processed dataset.

Everything is vectorised over the click arrays (cumulative sums, lookup tables, ``bincount`` and hashed
group-bys; the clicks are sorted only when the file is not already in session order), so the full
YooChoose file (33 million clicks) fits in a few GB and well under a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec.data.buys import BasketLabels, buy_stats, cutoffs, join_buys
from seqrec.data.dataset import SPLITS, ProcessedDataset, SessionSplit
from seqrec.data.readers import Buys, Clicks, DataFormatError
from seqrec.outputs import check_output_dir, swap_directory, umask_mode
from seqrec.version import preprocess_code_version

DAY = 86_400.0
# what a processed dataset directory holds (check_output replaces nothing else)
BUYS_COLUMNS = ("session", "item", "time", "price", "quantity")
OUTPUT_FILES = frozenset({"stats.json", "item_mapping.json", "items.parquet", "buys.parquet", "splits"})
# memory: the numpy path of this module; duckdb: seqrec.data.outofcore (bigger than memory); auto: by input size
ENGINES = ("auto", "memory", "duckdb")


@dataclass(frozen=True)
class PreprocessConfig:
    """The preprocessing parameters (docs/protocol.md, "Preprocessing"; names as in "Entry points")."""

    min_item_support: int = 5
    min_session_length: int = 2
    test_days: float = 1.0
    val_days: float = 1.0
    fraction: int = 1
    max_len: int = 50
    engine: str = "auto"  # how, never what: both engines write the same bytes (not part of stats.json)

    def __post_init__(self) -> None:
        """Each field in its range (``seqrec.configs``) before anything is read: a session of one click has no
        prediction (the protocol drops it), an empty time window or a fraction below 1 splits nothing."""
        from seqrec.configs import above, at_least, check_range, one_of

        for name, allowed in (("min_item_support", at_least(1)), ("min_session_length", at_least(2)),
                              ("test_days", above(0)), ("val_days", above(0)), ("fraction", at_least(1)),
                              ("max_len", at_least(1)), ("engine", one_of(*ENGINES))):
            check_range("PreprocessConfig", name, getattr(self, name), allowed)


def stats_params(cfg: PreprocessConfig) -> dict:
    """The parameters that shape the dataset (``stats.json``'s ``params``, part of its digest): all but ``engine``,
    which changes how the dataset is computed, never its bytes."""
    return {key: value for key, value in asdict(cfg).items() if key != "engine"}


@dataclass
class _Sessions:
    """Clicks grouped by session and sorted by time; a working view during preprocessing.

    Per-click arrays are kept narrow (int32 item codes into ``codes``, float64 times) and session
    ids are stored once per session, so the full YooChoose file stays within a few GB.
    """

    session_ids: np.ndarray  # raw id of each session
    item: np.ndarray  # int32 item code of each click (index into the item table ``codes``)
    time: np.ndarray
    category: np.ndarray | None
    offsets: np.ndarray

    @classmethod
    def build(cls, clicks: Clicks) -> tuple[_Sessions, np.ndarray]:
        """Group and sort ``clicks`` (only if the file is not already ordered); returns the view and
        the raw item id of each item code."""
        session, time, category = clicks.session, clicks.time, clicks.category
        ds = np.diff(session)
        ordered = bool(np.all(ds >= 0)) and bool(np.all((np.diff(time) >= 0) | (ds != 0)))
        order = None if ordered else np.lexsort((time, session))
        if order is not None:
            session, time = session[order], time[order]
            category = None if category is None else category[order]
            ds = np.diff(session)
        starts = np.flatnonzero(ds != 0) + 1
        del ds
        offsets = np.concatenate([[0], starts, [len(session)]]).astype(np.int64)
        codes = clicks.item if order is None else clicks.item[order]
        session_ids = session[offsets[:-1]]
        if clicks.session_ids is not None:  # text session ids: ``session`` holds codes into them
            session_ids = clicks.session_ids[session_ids]
        return cls(session_ids, codes.astype(np.int32, copy=False), time, category, offsets), clicks.item_ids

    @property
    def n_clicks(self) -> int:
        return len(self.item)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def counts(self, mask: np.ndarray) -> np.ndarray:
        """The number of clicks of each session where ``mask`` is true (a cumulative sum: no group-by)."""
        kept_before = np.zeros(len(mask) + 1, dtype=np.int32 if len(mask) < 2**31 else np.int64)
        np.cumsum(mask, out=kept_before[1:])
        return kept_before[self.offsets[1:]] - kept_before[self.offsets[:-1]]

    def keep_clicks(self, mask: np.ndarray) -> _Sessions:
        """Keep the clicks where ``mask`` is true (order and grouping preserved)."""
        counts = self.counts(mask)
        kept = counts > 0
        offsets = np.concatenate([[0], np.cumsum(counts[kept])]).astype(np.int64)
        cat = None if self.category is None else self.category[mask]
        return _Sessions(self.session_ids[kept], self.item[mask], self.time[mask], cat, offsets)

    def keep_sessions(self, mask: np.ndarray) -> _Sessions:
        """Keep the sessions where ``mask`` (one entry per session) is true."""
        return self.keep_clicks(np.repeat(mask, self.lengths))

    def drop_short(self, min_length: int) -> _Sessions:
        short = self.lengths < min_length
        return self.keep_sessions(~short) if short.any() else self

    def end_times(self) -> np.ndarray:
        return self.time[self.offsets[1:] - 1]

    def start_times(self) -> np.ndarray:
        return self.time[self.offsets[:-1]]

    def split_by_end(self, days: float) -> tuple[_Sessions, _Sessions]:
        """(earlier, last ``days``): sessions ending at or after ``tmax - days`` go to the second."""
        tmax = self.time.max()
        late = self.end_times() >= tmax - days * DAY
        return self.keep_sessions(~late), self.keep_sessions(late)

    def to_split(self, vocabulary: np.ndarray) -> SessionSplit:
        """Encode items to dense ids (position in ``vocabulary`` + 1) and order sessions by start time."""
        order = np.lexsort((self.session_ids, self.start_times()))
        lengths = self.lengths[order]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        index = np.int32 if offsets[-1] < 2**31 else np.int64  # positions of the clicks, in new order
        gather = np.repeat((self.offsets[:-1][order] - offsets[:-1]).astype(index), lengths)
        gather += np.arange(offsets[-1], dtype=index)
        dense = _dense_ids(vocabulary, int(self.item.max(initial=0)) + 1)[self.item[gather]]
        session_ids = self.session_ids[order]
        return SessionSplit(
            items=dense,
            offsets=offsets,
            times=self.time[gather].astype(np.float64, copy=False),
            session_ids=session_ids.astype(np.int64) if session_ids.dtype.kind in "iu" else session_ids,
        )


def _dense_ids(vocabulary: np.ndarray, n_codes: int) -> np.ndarray:
    """Lookup table item code -> dense id (position in the sorted ``vocabulary`` + 1, 0 if absent)."""
    table = np.zeros(max(n_codes, int(vocabulary.max(initial=0)) + 1), dtype=np.int32)
    table[vocabulary] = np.arange(1, len(vocabulary) + 1, dtype=np.int32)
    return table


def _present(codes: np.ndarray) -> np.ndarray:
    """The sorted distinct values of non-negative int ``codes`` (a bincount: no sort of the clicks)."""
    return np.flatnonzero(np.bincount(codes)).astype(codes.dtype)


def _filter_to_vocabulary(part: _Sessions, vocabulary: np.ndarray, min_length: int) -> _Sessions:
    """Preprocessing step 3: drop clicks on items outside ``vocabulary``, then sessions now too short."""
    known = np.zeros(int(max(part.item.max(initial=0), vocabulary.max(initial=0))) + 1, dtype=bool)
    known[vocabulary] = True
    return part.keep_clicks(known[part.item]).drop_short(min_length)


def _most_frequent_category(items: np.ndarray, category: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """The most clicked category code of each vocabulary item."""
    dense = _dense_ids(vocabulary, int(items.max(initial=0)) + 1)[items] - 1
    n_cat = int(category.max()) + 1
    pairs = pc.value_counts(pa.array(dense.astype(np.int64) * n_cat + category))  # hashed: no sort of clicks
    uniq, counts = pairs.field("values").to_numpy(), pairs.field("counts").to_numpy()
    item_of, cat_of = uniq // n_cat, uniq % n_cat
    best = np.lexsort((-counts, item_of))  # per item, highest count first
    first = np.concatenate([[True], np.diff(item_of[best]) != 0])
    out = np.zeros(len(vocabulary), dtype=np.int64)
    out[item_of[best][first]] = cat_of[best][first]
    return out


def file_digest(*paths: str | Path, chunk: int = 1 << 23) -> str:
    """SHA-256 of the bytes of one or more files, in order (hex, first 16 characters)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()[:16]


def _update(h, array: np.ndarray) -> None:
    """Feed ``array`` (numbers, or text as Arrow's offsets and bytes) and its type to the hash ``h``."""
    if array.dtype.kind in "OU":
        text = pa.array(array.astype(object), pa.large_string())
        h.update(b"text")
        for buffer in text.buffers()[1:]:
            h.update(buffer)
    else:
        h.update(str(array.dtype).encode())
        h.update(np.ascontiguousarray(array).data.cast("B"))


def digest_start(stats: dict):
    """The hash of :func:`dataset_digest` fed with its settings part (parameters, code version, reader): the
    split arrays follow in ``SPLITS`` order (items, offsets, times, session ids), then :func:`digest_finish`."""
    return hashlib.sha256(json.dumps({"params": stats["params"], "code": stats.get("code_version", ""),
                                      "reader": stats["raw"].get("reader", {})}, sort_keys=True, default=str).encode())


def digest_finish(h, raw_ids: np.ndarray, category: np.ndarray, buys: dict[str, np.ndarray] | None) -> str:
    """Feed the item table and the buys to ``h`` (after every split) and return the digest."""
    _update(h, np.asarray(raw_ids).astype(str))
    _update(h, np.asarray(category).astype(str))
    if buys is not None:
        for column in BUYS_COLUMNS:
            _update(h, np.asarray(buys[column]))
    return h.hexdigest()[:16]


def dataset_digest(stats: dict, splits: dict[str, SessionSplit], raw_ids: np.ndarray, category: np.ndarray,
                   buys: dict[str, np.ndarray] | None) -> str:
    """The dataset's identity from its content (docs/protocol.md, "Dataset identity"): the processed clicks of
    every split (items, session boundaries, times, session ids), the raw item ids and categories, the buys,
    the preprocessing parameters and the preprocessing code version; never a path. The same bytes read from
    two paths give one digest; other parameters, buys or preprocessing code give another."""
    h = digest_start(stats)
    for name in SPLITS:
        for array in (splits[name].items, splits[name].offsets, splits[name].times, splits[name].session_ids):
            _update(h, array)
    return digest_finish(h, raw_ids, category, buys)


def digest_on_disk(path: str | Path) -> str:
    """:func:`dataset_digest` recomputed from the files of the processed dataset at ``path``: equal to its
    ``stats.json`` digest only while nothing in it was changed, replaced or left over from other settings."""
    data = ProcessedDataset.load(path)
    items = pq.read_table(data.path / "items.parquet").to_pandas().sort_values("item")
    buys_file = data.path / "buys.parquet"
    buys = None
    if buys_file.exists():
        table = pq.read_table(buys_file)
        buys = {column: table[column].to_numpy() for column in BUYS_COLUMNS}
    splits = {name: data.split(name, mmap=True) for name in SPLITS}
    return dataset_digest(data.stats, splits, items["raw_id"].to_numpy(), items["category"].to_numpy(), buys)


def preprocess(clicks: Clicks, out_dir: str | Path, cfg: PreprocessConfig, name: str, source: dict,
               buys: Buys | None = None) -> dict:
    """Preprocess ``clicks`` (docs/protocol.md, "Preprocessing") and write the processed dataset to
    ``out_dir`` atomically.

    ``buys``, when given, is stored beside the splits (``buys.parquet``) for the EDA step and joined to
    each split's sessions (``splits/<split>/buys.npz``, :mod:`seqrec.data.buys`) as basket labels.
    Returns the contents of ``stats.json``. Raises ``DataFormatError`` when the split leaves a part
    empty (for example no test sessions).
    """
    if cfg.fraction < 1:
        raise ValueError(f"fraction must be >= 1 (1 = all data), got {cfg.fraction}")
    check_output(out_dir)
    label = source.get("path", name)
    data, raw_items, raw = _filter_clicks(clicks, cfg, label)
    categories = clicks.categories
    del clicks  # a caller that handed over its only reference frees the raw click columns here
    test_start = float(data.time.max()) - cfg.test_days * DAY
    train, test = data.split_by_end(cfg.test_days)
    del data  # free the filtered clicks before the training part is split further
    train = _keep_recent(train, cfg.fraction)
    if train.n_clicks == 0:
        raise DataFormatError(f"{label}: the split leaves no training sessions (test_days={cfg.test_days})")
    vocabulary = _present(train.item)
    category = _item_categories(train, vocabulary, categories)
    valid_start = float(train.time.max()) - cfg.val_days * DAY
    parts = _split_valid(train, test, vocabulary, cfg, label)
    del train, test  # ``parts`` now holds the only references, released one by one by ``_encode``
    splits, clicks_per_item = _encode(parts, vocabulary)
    boundaries = {"valid_start": valid_start, "test_start": test_start}
    stats = make_stats(name, cfg, source, raw, split_counts(splits), len(vocabulary), boundaries, buys)
    baskets = None if buys is None else join_buys(buys, splits, raw_items[vocabulary],
                                                  cutoffs(valid_start, test_start))
    for split_name, counts in buy_stats(baskets or {}, splits).items():
        stats["splits"][split_name].update(counts)
    stats["code_version"] = preprocess_code_version()
    stats["digest"] = dataset_digest(stats, splits, raw_items[vocabulary], category,
                                     None if buys is None else {c: getattr(buys, c) for c in BUYS_COLUMNS})
    _write_atomically(Path(out_dir), stats, splits, raw_items[vocabulary], category, clicks_per_item, buys,
                      baskets)
    return stats


def _filter_clicks(clicks: Clicks, cfg: PreprocessConfig, label: str) -> tuple[_Sessions, np.ndarray, dict]:
    """Protocol step 1: drop short sessions and rare items; also returns raw item ids and pre-filter figures."""
    raw = {"clicks": len(clicks), "skipped_lines": clicks.skipped_lines,
           "time_min": float(clicks.time.min()), "time_max": float(clicks.time.max()), "reader": clicks.info}
    data, raw_items = _Sessions.build(clicks)
    raw["sessions"] = len(data.session_ids)
    raw["length1_sessions"] = int((data.lengths < 2).sum())
    raw["items"] = len(raw_items)
    # one click mask for the three filters, so that the clicks are copied once
    lengths = data.lengths
    mask = np.repeat(lengths >= cfg.min_session_length, lengths)
    support = np.bincount(data.item[mask], minlength=len(raw_items))
    raw["items_under_support"] = int((support < cfg.min_item_support).sum())
    mask &= (support >= cfg.min_item_support)[data.item]
    mask &= np.repeat(data.counts(mask) >= cfg.min_session_length, lengths)
    data = data.keep_clicks(mask)
    if data.n_clicks == 0:
        raise DataFormatError(f"{label}: no sessions left after filtering (min_item_support="
                              f"{cfg.min_item_support}, min_session_length={cfg.min_session_length})")
    return data, raw_items, raw


def _keep_recent(train: _Sessions, fraction: int) -> _Sessions:
    """Protocol step 4: keep the most recent 1/``fraction`` of training sessions by start time (1 = all)."""
    if fraction > 1:
        starts = train.start_times()
        n_keep = max(1, len(starts) // fraction)
        recent = np.zeros(len(starts), dtype=bool)
        recent[np.argsort(starts, kind="stable")[-n_keep:]] = True
        train = train.keep_sessions(recent)
    return train


def _item_categories(train: _Sessions, vocabulary: np.ndarray, categories: list[str] | None) -> np.ndarray:
    """Each vocabulary item's most clicked category in training ("0" when the input has no categories)."""
    if train.category is not None:
        names = np.array(categories, dtype=object)
        return names[_most_frequent_category(train.item, train.category, vocabulary)]
    return np.full(len(vocabulary), "0", dtype=object)


def _split_valid(train: _Sessions, test: _Sessions, vocabulary: np.ndarray, cfg: PreprocessConfig,
                 label: str) -> dict[str, _Sessions]:
    """Protocol steps 2-3 for valid, step 3 for test; fails early if any of the four parts is empty."""
    test = _filter_to_vocabulary(test, vocabulary, cfg.min_session_length)
    train_tr, valid = train.split_by_end(cfg.val_days)
    valid = _filter_to_vocabulary(valid, _present(train_tr.item), cfg.min_session_length)
    parts = {"train_full": train, "train_tr": train_tr, "valid": valid, "test": test}
    for part_name, part in parts.items():
        if part.n_clicks == 0:
            raise DataFormatError(
                f"{label}: the split leaves no {part_name} sessions (test_days={cfg.test_days}, "
                f"val_days={cfg.val_days}, fraction={cfg.fraction}); expected data spanning more days"
            )
    return parts


def _encode(parts: dict[str, _Sessions], vocabulary: np.ndarray) -> tuple[dict[str, SessionSplit], np.ndarray]:
    """Protocol step 5: dense-encode each part (popping it to free memory) and count train clicks per item."""
    splits = {part_name: parts.pop(part_name).to_split(vocabulary) for part_name in SPLITS}
    clicks_per_item = np.bincount(splits["train_full"].items, minlength=len(vocabulary) + 1)[1:]
    return splits, clicks_per_item


def split_counts(splits: dict[str, SessionSplit]) -> dict[str, dict[str, int]]:
    """Per split: clicks, sessions, predictions and distinct items (``stats.json``'s ``splits``)."""
    return {s: {"clicks": splits[s].n_clicks, "sessions": splits[s].n_sessions, "predictions": splits[s].n_predictions,
                "items": int(np.count_nonzero(np.bincount(splits[s].items)[1:]))} for s in SPLITS}


def make_stats(name: str, cfg: PreprocessConfig, source: dict, raw: dict, counts: dict[str, dict[str, int]],
               n_items: int, boundaries: dict[str, float], buys: Buys | None) -> dict:
    """The contents of ``stats.json`` (protocol step 6): sizes, raw figures, boundaries, params, digest."""
    stats = {
        "name": name,
        "n_items": int(n_items),
        "splits": counts,
        "raw": raw,
        "boundaries": boundaries,
        "params": stats_params(cfg),
        "source": source,
    }
    if buys is not None:
        stats["buys"] = {"rows": int(len(buys.session)), "sessions": int(len(np.unique(buys.session))),
                         "skipped_lines": buys.skipped_lines}
    return stats


def _write_atomically(out: Path, stats: dict, splits: dict[str, SessionSplit], vocabulary: np.ndarray,
                      category: np.ndarray, clicks_per_item: np.ndarray, buys: Buys | None,
                      baskets: dict[str, BasketLabels] | None = None) -> None:
    """Write the whole dataset into a temporary sibling directory, then swap it into place."""
    with atomic_directory(out) as tmp:
        for split_name, split in splits.items():
            split.save(tmp / "splits" / split_name)
            if baskets is not None:
                baskets[split_name].save(tmp / "splits" / split_name)
        write_tables(tmp, stats, vocabulary, category, clicks_per_item, buys)


@contextmanager
def atomic_directory(out: Path) -> Iterator[Path]:
    """A temporary sibling directory to write the dataset into, swapped into place when the block ends without an
    error (only over an earlier processed dataset: :func:`check_output`), removed when it fails."""
    check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        os.chmod(tmp, umask_mode())  # a temporary directory is 0700; the dataset follows the umask
        yield tmp
        swap_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_tables(tmp: Path, stats: dict, vocabulary: np.ndarray, category: np.ndarray, clicks_per_item: np.ndarray,
                 buys: Buys | None) -> None:
    """Everything but the splits: the item table, the item mapping, the buys and ``stats.json`` (written last)."""
    raw_ids = vocabulary.astype(str)
    ids = np.arange(1, len(vocabulary) + 1)
    pq.write_table(pa.table({"item": ids, "raw_id": raw_ids, "category": category.astype(str),
                             "clicks": clicks_per_item}), tmp / "items.parquet")
    mapping = dict(zip(map(str, ids.tolist()), raw_ids.tolist(), strict=True))
    (tmp / "item_mapping.json").write_text(json.dumps(mapping))
    if buys is not None:
        pq.write_table(pa.table({c: getattr(buys, c) for c in BUYS_COLUMNS}), tmp / "buys.parquet")
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2))


def check_output(out: str | Path) -> None:
    """Refuse ``out`` unless it is missing, empty or an earlier processed dataset (``stats.json`` and only the
    files preprocessing writes): preprocessing replaces its own output, never anything else."""
    check_output_dir(out, "preprocess", "stats.json", OUTPUT_FILES,
                     "choose another -P out (a new or empty directory), or move those files away")


def _remove_leftovers(out: Path) -> None:
    """Remove the temporary siblings of ``out`` (``.NAME.tmp-PID-*``, ``.NAME.old-PID``) that a killed
    writer left behind; those of a process still alive (a concurrent writer) are left alone."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(?:tmp|old)-(\d+)(?:-.*)?")
    for path in out.parent.glob(f".{out.name}.*"):
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
