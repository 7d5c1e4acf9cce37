"""Preprocessing click logs bigger than memory (``engine=duckdb``): the protocol of docs/protocol.md run by DuckDB,
embedded, in bounded memory, with the same processed dataset, byte for byte, as the numpy engine
(:func:`seqrec.data.preprocess.preprocess`) writes from the same file.

DuckDB reads the file with its own readers (:mod:`seqrec.data.sql_sources`), runs the protocol as SQL
(:mod:`seqrec.data.sql_protocol`) within ``memory_limit``, spilling the rest to a temporary directory that this
module creates and removes (under ``TMPDIR``, never in the user's directories), and the splits are streamed from
it in batches to the ``.npy`` files (:mod:`seqrec.data.split_writer`). Python holds the item table (one row per
item) and one batch at a time, never the clicks. ``engine=auto`` (:func:`choose_engine`) takes this path when the
numpy engine would need more than half the memory available.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec.data.buys import buy_stats, cutoffs, join_buys
from seqrec.data.dataset import SPLITS, SessionSplit
from seqrec.data.preprocess import (
    BUYS_COLUMNS,
    PreprocessConfig,
    atomic_directory,
    check_output,
    digest_finish,
    digest_start,
    make_stats,
    stats_params,
    write_tables,
)
from seqrec.data.readers import Buys, ReadOptions
from seqrec.data.split_writer import Chunks, write_numbers, write_offsets, write_text
from seqrec.version import preprocess_code_version

if TYPE_CHECKING:  # DuckDB is imported when the engine runs: without it, auto keeps the memory engine
    from duckdb import DuckDBPyConnection

    from seqrec.data.sql_protocol import Plan

__all__ = ["Unsupported", "available_memory", "choose_engine", "memory_limit", "preprocess_outofcore"]

MEMORY_LIMIT_ENV = "SEQREC_DUCKDB_MEMORY_LIMIT"  # e.g. 16GB: DuckDB's memory_limit instead of the default rule
GB = 1 << 30
BATCH = 1 << 20  # rows per batch streamed from DuckDB to the split files
# peak memory of the numpy engine per byte of input file: 1.65 for raw YooChoose CSV, 0.93 for OTTO JSON lines
# (docs/benchmarks.md); compressed text and Parquet hold many more clicks per byte
_BYTES_FACTOR = {"text": 1.7, "compressed": 8.0, "parquet": 10.0}
_COMPRESSED = (".gz", ".bz2", ".zst", ".zstd")
# each split: (table of its clicks, table of its sessions, which rows), as seqrec.data.sql_protocol orders them
_SOURCES = {"train_full": ("out_train", "sess_train", "true"), "train_tr": ("out_train", "sess_train", "tr"),
            "valid": ("out_valid", "sess_valid", "true"), "test": ("out_test", "sess_test", "true")}


class Unsupported(Exception):
    """What the duckdb engine does not read natively; the step hands it to the memory engine, saying so."""


def available_memory() -> int:
    """Bytes of memory this process can still use: ``MemAvailable``, capped by a cgroup's limit (a container)."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit, used = (Path("/sys/fs/cgroup", f).read_text().strip() for f in ("memory.max", "memory.current"))
        if limit != "max":
            free = min(free, int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return max(free, 0)


def estimated_memory(paths: list[Path], fmt: str) -> int:
    """The numpy engine's peak memory for ``paths``, estimated from their size (``_BYTES_FACTOR``)."""
    total = 0.0
    for path in paths:
        kind = "parquet" if fmt == "parquet" else "compressed" if path.suffix.lower() in _COMPRESSED else "text"
        total += path.stat().st_size * _BYTES_FACTOR[kind] if path.exists() else 0
    return int(total)


def choose_engine(requested: str, paths: list[Path], fmt: str, on_bad_lines: str) -> tuple[str, str]:
    """The engine to run and why. ``auto`` takes ``duckdb`` when the numpy engine's estimated peak memory (input
    bytes times 1.7 for plain text, 8 for compressed text, 10 for Parquet) exceeds half the available memory
    (``MemAvailable``, or a container's limit), else ``memory``, which is the faster of the two on what fits.
    ``on_bad_lines=skip`` and a missing ``duckdb`` package keep ``memory``."""
    if requested != "auto":
        return requested, "asked for"
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return "memory", "the duckdb package is not installed"
    if on_bad_lines != "error":
        return "memory", "on_bad_lines=skip is read by the memory engine only"
    need, have = estimated_memory(paths, fmt), available_memory()
    verdict = "more" if need > have / 2 else "less"
    engine = "duckdb" if need > have / 2 else "memory"
    return engine, f"the memory engine would need about {need / 1e9:.1f} GB, {verdict} than half of the " \
                   f"{have / 1e9:.1f} GB available"


def memory_limit() -> str:
    """DuckDB's ``memory_limit``: ``$SEQREC_DUCKDB_MEMORY_LIMIT`` if set (``16GB``), else a quarter of the available
    memory within 1-3 GiB: a fixed ceiling, so that the peak stays flat however big the log; DuckDB spills the rest
    to disk (more memory only saves some of that spilling: YooChoose's 33 M clicks take 25 % more CPU time at
    2 GiB than at 4 GiB)."""
    return os.environ.get(MEMORY_LIMIT_ENV) or f"{min(max(available_memory() // 4, GB), 3 * GB) // (1 << 20)}MiB"


@contextmanager
def duckdb_session() -> Iterator[tuple[DuckDBPyConnection, Path]]:
    """An in-memory DuckDB database whose spill files (and decompressed bz2 copies) go to a new temporary directory,
    removed with everything in it at the end, whatever happens."""
    import duckdb

    from seqrec.data.sql_common import text

    work = Path(tempfile.mkdtemp(prefix="seqrec-duckdb-"))
    con = None
    try:
        con = duckdb.connect(":memory:")  # its tables spill to temp_directory beyond memory_limit
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        for setting, value in (("memory_limit", f"'{memory_limit()}'"), ("threads", threads),
                               ("temp_directory", text(str(work / "spill"))), ("preserve_insertion_order", "true"),
                               ("TimeZone", "'UTC'")):
            con.execute(f"SET {setting} = {value}")
        yield con, work
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(work, ignore_errors=True)


def _column(con: DuckDBPyConnection, table: str, column: str, where: str) -> Chunks:
    """The batches of one column of an ordered table (rows where ``where`` holds), in the table's order."""
    def chunks() -> Iterator[np.ndarray]:
        for batch in _batches(con, f"SELECT {column} FROM {table} WHERE {where}"):
            yield batch.to_numpy(zero_copy_only=False)

    return chunks


def _batches(con: DuckDBPyConnection, query: str) -> Iterator[pa.Array]:
    """The first column of ``query``'s rows, streamed in Arrow batches of ``BATCH`` rows."""
    relation = con.sql(query)
    reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    for batch in reader(BATCH):
        yield batch.column(0)


def _dense(con: DuckDBPyConnection, table: str, where: str, vocabulary: pa.Array) -> Chunks:
    """The dense ids (position in the sorted ``vocabulary`` + 1) of the raw items of an ordered table."""
    def chunks() -> Iterator[np.ndarray]:
        for batch in _batches(con, f"SELECT i FROM {table} WHERE {where}"):
            yield pc.index_in(batch, value_set=vocabulary).to_numpy(zero_copy_only=False).astype(np.int32) + 1

    return chunks


def _write_splits(con: DuckDBPyConnection, tmp: Path, counts: dict[str, dict[str, int]], width: int, digest) -> None:
    """Every split's four arrays, as ``SessionSplit.save`` writes them, fed to ``digest`` in its order."""
    vocabulary = pa.concat_arrays(list(_batches(con, "SELECT i FROM vocab ORDER BY i")))
    for split in SPLITS:
        clicks, sessions, rows = _SOURCES[split]
        n_clicks, n_sessions = counts[split]["clicks"], counts[split]["sessions"]
        directory = tmp / "splits" / split
        directory.mkdir(parents=True)
        write_numbers(directory / "items.npy", np.dtype(np.int32), n_clicks, _dense(con, clicks, rows, vocabulary),
                      digest)
        write_offsets(directory / "offsets.npy", n_sessions, _column(con, sessions, "n", rows), digest)
        write_numbers(directory / "times.npy", np.dtype(np.float64), n_clicks, _column(con, clicks, "t", rows),
                      digest)
        ids = _column(con, sessions, "s", rows)
        if width:
            write_text(directory / "session_ids.npy", width, n_sessions, ids, digest)
        else:
            write_numbers(directory / "session_ids.npy", np.dtype(np.int64), n_sessions, ids, digest)


def _add_baskets(tmp: Path, stats: dict, buys: Buys, raw_ids: np.ndarray, plan: Plan) -> None:
    """Buys joined to the written splits (their session ids read back, memory-mapped), as the numpy engine joins."""
    splits = {name: SessionSplit.load(tmp / "splits" / name, mmap=True) for name in SPLITS}
    baskets = join_buys(buys, splits, raw_ids, cutoffs(plan.valid_start, plan.test_start))
    for name, labels in baskets.items():
        labels.save(tmp / "splits" / name)
    for name, figures in buy_stats(baskets, splits).items():
        stats["splits"][name].update(figures)


def preprocess_outofcore(paths: list[Path], fmt: str, options: ReadOptions, out_dir: str | Path,
                         cfg: PreprocessConfig, name: str, source: dict, buys: Buys | None = None,
                         timings: dict | None = None) -> dict:
    """Preprocess the click files ``paths`` (format ``fmt``, read as ``options`` says) into ``out_dir``, the same
    dataset as ``preprocess(read_clicks(...))`` writes, in bounded memory. Returns ``stats.json``'s contents;
    ``timings`` gets ``seconds_after_read`` (the protocol and the writing). Raises ``Unsupported`` (before writing
    anything) for what DuckDB does not read natively, ``DataFormatError`` for bad data, as the numpy engine does."""
    from seqrec.data.sql_protocol import item_table, run_protocol
    from seqrec.data.sql_sources import load_clicks

    if cfg.fraction < 1:
        raise ValueError(f"fraction must be >= 1 (1 = all data), got {cfg.fraction}")
    if options.on_bad_lines != "error":
        raise Unsupported("on_bad_lines=skip (the duckdb engine stops at the first bad line)")
    check_output(out_dir)
    label = source.get("path", name)
    with duckdb_session() as (con, work):
        loaded, width = load_clicks(con, paths, fmt, options, work)
        read = time.perf_counter()
        plan = run_protocol(con, loaded, cfg, label)
        raw_ids, category, clicks_per_item = item_table(con, loaded, plan.category)
        boundaries = {"valid_start": plan.valid_start, "test_start": plan.test_start}
        stats = make_stats(name, cfg, source, plan.raw, plan.counts, plan.n_items, boundaries, buys)
        code = preprocess_code_version()
        digest = digest_start({"params": stats_params(cfg), "code_version": code, "raw": plan.raw})
        with atomic_directory(Path(out_dir)) as tmp:
            _write_splits(con, tmp, plan.counts, width, digest)
            if buys is not None:
                _add_baskets(tmp, stats, buys, raw_ids, plan)
            stats["code_version"] = code
            stats["digest"] = digest_finish(digest, raw_ids, category,
                                            None if buys is None else {c: getattr(buys, c) for c in BUYS_COLUMNS})
            write_tables(tmp, stats, raw_ids, category, clicks_per_item, buys)
    if timings is not None:
        timings["seconds_after_read"] = time.perf_counter() - read
    return stats
