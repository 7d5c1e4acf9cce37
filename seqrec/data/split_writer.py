"""A processed split written chunk by chunk: the bytes of :meth:`seqrec.data.dataset.SessionSplit.save` and the
content digest of :func:`seqrec.data.preprocess.dataset_digest`, without ever holding a split in memory.

The out-of-core engine (:mod:`seqrec.data.outofcore`) streams each array of a split from DuckDB in batches. Each
``.npy`` file gets numpy's own header (``write_array_header_1_0``, the one ``np.save`` writes for these shapes),
then its batches; the digest is fed the same bytes in the same order as ``dataset_digest`` feeds it (items,
offsets, times, session ids of each split), text session ids as Arrow's offsets and then its characters, so that
both engines give one digest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

Chunks = Callable[[], Iterator[np.ndarray]]  # a fresh iterator over an array's batches, each call


class NpyFile:
    """One 1-d ``.npy`` file of ``length`` values of ``dtype``, written batch by batch."""

    def __init__(self, path: Path, dtype: np.dtype, length: int):
        self.dtype, self.length, self.written = np.dtype(dtype), length, 0
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close(), after the last batch)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(self.file, header)

    def write(self, batch: np.ndarray) -> None:
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        self.file.write(batch.data.cast("B"))
        self.written += len(batch)

    def close(self) -> None:
        self.file.close()
        if self.written != self.length:
            raise RuntimeError(f"{self.file.name}: wrote {self.written} values, expected {self.length}")


def write_numbers(path: Path, dtype: np.dtype, length: int, chunks: Chunks, digest) -> None:
    """Write a numeric array to ``path`` and feed it to ``digest`` (its type's name, then its bytes)."""
    out = NpyFile(path, dtype, length)
    digest.update(str(out.dtype).encode())
    try:
        for batch in chunks():
            batch = np.ascontiguousarray(batch, dtype=out.dtype)
            out.write(batch)
            digest.update(batch.data.cast("B"))
    finally:
        out.close()


def write_offsets(path: Path, n_sessions: int, lengths: Chunks, digest) -> None:
    """Write the session boundaries (0, then the running sum of the sessions' lengths) to ``path``."""
    def offsets() -> Iterator[np.ndarray]:
        end = 0
        yield np.zeros(1, dtype=np.int64)
        for batch in lengths():
            running = np.cumsum(batch, dtype=np.int64) + end
            if len(running):
                end = int(running[-1])
            yield running

    write_numbers(path, np.dtype(np.int64), n_sessions + 1, offsets, digest)


def _text(batch: np.ndarray) -> pa.Array:
    """A batch of text as ``dataset_digest`` hashes it (numpy text, as Python strings, as Arrow large strings)."""
    return pa.array(batch.astype(object), pa.large_string())


def write_text(path: Path, width: int, length: int, chunks: Chunks, digest) -> None:
    """Write text ids as numpy ``<U{width}`` to ``path``; feed the digest Arrow's offsets of all of them, then their
    characters (two passes over ``chunks``)."""
    out = NpyFile(path, np.dtype(f"<U{width}"), length)
    digest.update(b"text")
    end = 0
    try:
        digest.update(np.zeros(1, dtype=np.int64).tobytes())
        for batch in chunks():
            batch = np.asarray(batch, dtype=out.dtype)
            out.write(batch)
            offsets = np.frombuffer(_text(batch).buffers()[1], dtype=np.int64, count=len(batch) + 1)
            digest.update((offsets[1:] + end).tobytes())
            end += int(offsets[-1])
    finally:
        out.close()
    for batch in chunks():
        text = _text(np.asarray(batch, dtype=out.dtype))
        size = int(np.frombuffer(text.buffers()[1], dtype=np.int64, count=len(text) + 1)[-1])
        if size:
            digest.update(memoryview(text.buffers()[2])[:size])
