"""Bulk scoring (the ``predict`` step): a click log of open sessions -> the top-k raw item ids and scores of
each session, written to a Parquet file.

Clicks are grouped by session and put in time order with one sort (ties keep the file's order). Sessions
are then scored chunk by chunk with the model's own batched scoring (:meth:`Recommender.recommend`) and
each chunk is appended to a Parquet file, so the memory past the click columns themselves does not grow
with the number of sessions. Before a chunk is handed to the recommender, the clicks it would ignore
(unknown items, and known clicks older than its last ``max_len``) are dropped with array operations: the
answers are the same, the per-click Python work is smaller.

The output is written to a temporary sibling and renamed into place when complete; an existing file is
replaced only when asked, and only if it is an earlier output of this step (its Parquet metadata says so).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqrec.data.readers import Clicks
from seqrec.outputs import OutputConflict
from seqrec.progress import progress_bar
from seqrec.serving.recommender import MAX_K, Recommendation, Recommender

DEFAULT_CHUNK_SESSIONS = 10_000
MARKER_KEY = b"seqrec.output"
MARKER_VALUE = b"predict"


@dataclass(frozen=True)
class PredictOptions:
    """How many items per session, how many sessions per scored chunk, and whether an earlier output of this
    step may be replaced."""

    k: int = 20
    chunk_sessions: int = DEFAULT_CHUNK_SESSIONS
    overwrite: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be an integer between 1 and {MAX_K}, got {self.k!r}")
        if isinstance(self.chunk_sessions, bool) or not isinstance(self.chunk_sessions, int) or self.chunk_sessions < 1:
            raise ValueError(f"chunk_sessions must be a positive integer, got {self.chunk_sessions!r}")


@dataclass
class SessionClicks:
    """Clicks grouped by session, each session's clicks in time order.

    ``item`` holds the clicks' item codes (into ``item_ids``, the distinct raw item ids) session after
    session; session ``s`` is ``item[offsets[s]:offsets[s + 1]]`` and its raw id is ``session_ids[s]``.
    """

    item: np.ndarray
    offsets: np.ndarray
    item_ids: np.ndarray
    session_ids: pa.Array  # int64 or string, as in the input file

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_clicks(self) -> int:
        return len(self.item)


@dataclass
class PredictCounts:
    """What a prediction run saw: sessions, clicks, clicks on items the model does not know and sessions whose
    every click is on such an item."""

    sessions: int = 0
    clicks: int = 0
    unknown_items: int = 0
    unknown_sessions: int = 0
    chunks: int = 0


def group_clicks(clicks: Clicks) -> SessionClicks:
    """Group ``clicks`` by session (sessions in the order of their raw ids), each in time order, with one
    stable sort: clicks with equal times keep the order of the file."""
    order = np.lexsort((clicks.time, clicks.session))
    session = clicks.session[order]
    starts = np.flatnonzero(np.concatenate([[True], session[1:] != session[:-1]]))
    offsets = np.append(starts, len(session)).astype(np.int64)
    first = session[starts]
    if clicks.session_ids is None:
        session_ids = pa.array(first, pa.int64())
    else:
        session_ids = pa.array(np.asarray(clicks.session_ids)[first].astype(str), pa.string())
    return SessionClicks(clicks.item[order], offsets, clicks.item_ids, session_ids)


def model_item_ids(recommender: Recommender, item_ids: np.ndarray) -> np.ndarray:
    """The model's dense id of each distinct raw item id of the input (0: unknown), looked up once per item."""
    index = recommender.index
    return np.fromiter((index.get(str(raw), 0) for raw in item_ids), dtype=np.int64, count=len(item_ids))


@dataclass
class Chunk:
    """Sessions ``lo:hi`` ready for the recommender: each as the raw ids of the clicks it uses, plus counts."""

    sessions: list[list[str]]
    session_ids: pa.Array
    clicks: int
    unknown_items: int
    unknown_sessions: int


def chunk_of(grouped: SessionClicks, to_model: np.ndarray, recommender: Recommender, lo: int, hi: int) -> Chunk:
    """Sessions ``lo:hi`` as lists of raw ids, keeping only what the recommender uses: known items, the last
    ``max_len`` of them (the recommender drops the rest itself, so its answers do not change)."""
    begin, end = grouped.offsets[lo], grouped.offsets[hi]
    bounds = grouped.offsets[lo : hi + 1] - begin
    lengths = np.diff(bounds)
    dense = to_model[grouped.item[begin:end]]  # [clicks], 0 = unknown
    known = dense > 0
    seen = np.cumsum(known)  # known clicks up to and including each click
    known_after = np.repeat(seen[bounds[1:] - 1], lengths) - seen  # known clicks after each, same session
    keep = known & (known_after < recommender.max_len)
    kept = np.add.reduceat(keep, bounds[:-1], dtype=np.int64)
    names = recommender.raw_ids[dense[keep]].tolist()
    cuts = np.concatenate([[0], np.cumsum(kept)]).tolist()
    sessions = [names[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return Chunk(sessions, grouped.session_ids[lo:hi], int(end - begin), int(len(known) - known.sum()),
                 int((kept == 0).sum()))


def output_schema(session_type: pa.DataType) -> pa.Schema:
    """``session`` (the input's id type), ``items`` (list<string>), ``scores`` (list<float>), marked as written
    by this step."""
    return pa.schema([("session", session_type), ("items", pa.list_(pa.string())),
                      ("scores", pa.list_(pa.float32()))], metadata={MARKER_KEY: MARKER_VALUE})


def to_batch(session_ids: pa.Array, recs: list[Recommendation], schema: pa.Schema) -> pa.RecordBatch:
    """One record batch of a chunk's recommendations (lists built from flat arrays and offsets)."""
    offsets = pa.array(np.concatenate([[0], np.cumsum([len(r.items) for r in recs])]), pa.int32())
    items = pa.array(list(chain.from_iterable(r.items for r in recs)), pa.string())
    scores = pa.array(list(chain.from_iterable(r.scores for r in recs)), pa.float32())
    return pa.RecordBatch.from_arrays([session_ids, pa.ListArray.from_arrays(offsets, items),
                                       pa.ListArray.from_arrays(offsets, scores)], schema=schema)


def is_predict_output(path: Path) -> bool:
    """Whether ``path`` is a Parquet file that this step wrote (its schema metadata carries the marker)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return metadata.get(MARKER_KEY) == MARKER_VALUE


def check_output_file(out: str | Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``out`` that exists unless ``overwrite`` is set and it is an earlier output of
    this step: a file that predict did not write is never replaced."""
    path = Path(out)
    if not str(out):
        raise ValueError("out: give the Parquet file to write (-P out=recs.parquet)")
    if path.is_dir():
        raise OutputConflict(f"{path} is a directory: give a file name for -P out")
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise OutputConflict(f"{path} exists: choose another -P out, or give -P overwrite=true to replace an "
                             f"earlier predict output")
    if not is_predict_output(path):
        raise OutputConflict(f"{path} exists and was not written by predict: choose another -P out; predict never "
                             f"overwrites what it did not write")


def chunk_bounds(n_sessions: int, size: int) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` of consecutive chunks of at most ``size`` sessions."""
    for lo in range(0, n_sessions, size):
        yield lo, min(lo + size, n_sessions)


def write_predictions(recommender: Recommender, grouped: SessionClicks, out: str | Path, options: PredictOptions,
                      desc: str = "predict") -> PredictCounts:
    """Score every session of ``grouped`` chunk by chunk and write the top ``options.k`` to ``out`` (Parquet),
    through a temporary sibling renamed into place once complete."""
    out = Path(out)
    check_output_file(out, options.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    to_model = model_item_ids(recommender, grouped.item_ids)
    schema = output_schema(grouped.session_ids.type)
    counts = PredictCounts()
    try:
        with pq.ParquetWriter(tmp, schema) as writer, \
                progress_bar(None, total=grouped.n_sessions, unit="session", unit_scale=True, desc=desc) as bar:
            for lo, hi in chunk_bounds(grouped.n_sessions, options.chunk_sessions):
                chunk = chunk_of(grouped, to_model, recommender, lo, hi)
                recs = recommender.recommend(chunk.sessions, options.k)
                writer.write_batch(to_batch(chunk.session_ids, recs, schema))
                add_chunk(counts, chunk)
                bar.update(hi - lo)
        check_output_file(out, options.overwrite)  # nothing appeared there meanwhile
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return counts


def add_chunk(counts: PredictCounts, chunk: Chunk) -> None:
    """Add one chunk's figures to the running ``counts``."""
    counts.sessions += len(chunk.sessions)
    counts.clicks += chunk.clicks
    counts.unknown_items += chunk.unknown_items
    counts.unknown_sessions += chunk.unknown_sessions
    counts.chunks += 1
