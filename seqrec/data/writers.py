"""Generated clicks written in each readable format: small files for tests, large ones for benchmarks.

The clicks come from the built-in generator (:func:`seqrec.data.synthetic.generate`, raw YooChoose
layout); :func:`convert` streams such a file batch by batch into another format, building every line
with pyarrow's vectorised string functions, so the output size is not bound by memory. Every tenth
click is written as a non-click event (``addtocart``, ``carts``, ``cart``) where the format has event
types, so that event filtering has something to drop. Output is atomic (a temporary file, renamed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seqrec.data.synthetic import SyntheticConfig, generate

WRITABLE = ("yoochoose", "prepared", "diginetica", "retailrocket", "otto", "csv", "parquet", "jsonl")
GENERIC_COLUMNS = "session=session_id,item=item_id,time=timestamp,event=event"
_BATCH_BYTES = 1 << 26
_OTHER_EVENT = {"retailrocket": ("view", "addtocart"), "otto": ("clicks", "carts"), "generic": ("click", "cart")}


def _raw_batches(path: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(session, unix milliseconds, item) batches of a raw YooChoose clicks file; a session never spans
    two batches."""
    read = pacsv.ReadOptions(column_names=["session", "time", "item", "category"], block_size=_BATCH_BYTES)
    convert = pacsv.ConvertOptions(column_types={"session": pa.int64(), "time": pa.timestamp("ms", tz="UTC"),
                                                 "item": pa.int64()}, include_columns=["session", "time", "item"])
    carry = None
    for batch in pacsv.open_csv(path, read_options=read, convert_options=convert):
        cols = [batch.column(i).cast(pa.int64()).to_numpy() for i in range(3)]
        if carry is not None:
            cols = [np.concatenate([a, b]) for a, b in zip(carry, cols, strict=True)]
        cut = int(np.searchsorted(cols[0], cols[0][-1])) if np.all(np.diff(cols[0]) >= 0) else len(cols[0])
        carry = [c[cut:] for c in cols]
        if cut:
            yield cols[0][:cut], cols[1][:cut], cols[2][:cut]
    if carry is not None and len(carry[0]):
        yield carry[0], carry[1], carry[2]


def _text(values: np.ndarray, prefix: str = "") -> pa.Array:
    text = pc.cast(pa.array(values), pa.string())
    return pc.binary_join_element_wise(prefix, text, "") if prefix else text


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _kinds(first_row: int, n: int, names: tuple[str, str]) -> pa.Array:
    """Event type of each row: the second name for every tenth row of the file, else the first."""
    other = (np.arange(first_row, first_row + n) % 10) == 9
    return pa.array(np.where(other, names[1], names[0]))


def _lines(rows: pa.Array) -> bytes:
    """The strings of ``rows`` as newline-terminated lines."""
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows), "\n")
    return joined[0].as_py().encode() + b"\n"


def _csv_bytes(table: pa.Table, sep: str, header: bool) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, delimiter=sep, quoting_style="none"))
    head = (sep.join(table.column_names) + "\n").encode() if header else b""
    return head + sink.getvalue().to_pybytes()


def _otto(session: np.ndarray, ms: np.ndarray, item: np.ndarray, first: int, seconds: bool) -> bytes:
    starts = np.flatnonzero(np.concatenate([[True], session[1:] != session[:-1]]))
    ts = ms // 1000 if seconds else ms
    events = _join('{"aid":', _text(item), ',"ts":', _text(ts), ',"type":"', _kinds(first, len(item),
                                                                                      _OTHER_EVENT["otto"]), '"}')
    offsets = pa.array(np.append(starts, len(session)).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, events), ",")
    return _lines(_join('{"session":', _text(session[starts]), ',"events":[', joined, "]}"))


def _generic_table(session, ms, item, first, string_ids: bool, time_unit: str) -> pa.Table:
    time_unit = time_unit or "s"
    if time_unit == "iso":
        time = pc.strftime(pa.array(ms, pa.timestamp("ms", tz="UTC")), "%Y-%m-%dT%H:%M:%SZ")
    else:
        time = pa.array(ms / 1000.0 if time_unit == "s" else ms)
    ids = (_text(session, "s"), _text(item, "i")) if string_ids else (pa.array(session), pa.array(item))
    return pa.table({"session_id": ids[0], "item_id": ids[1], "timestamp": time,
                     "event": _kinds(first, len(session), _OTHER_EVENT["generic"])})


def _jsonl(table: pa.Table) -> bytes:
    def value(name: str) -> pa.Array:
        column = table[name].combine_chunks()
        text = _text(column.to_numpy(zero_copy_only=False)) if not pa.types.is_string(column.type) else column
        return _join('"', text, '"') if pa.types.is_string(column.type) else text

    return _lines(_join('{"session_id":', value("session_id"), ',"item_id":', value("item_id"), ',"timestamp":',
                        value("timestamp"), ',"event":', value("event"), "}"))


def _rows(fmt: str, session, ms, item, first: int, header: bool, string_ids: bool, time_unit: str) -> bytes:
    """One batch of clicks as the bytes of format ``fmt`` (all but parquet and yoochoose)."""
    if fmt == "prepared":
        return _csv_bytes(pa.table({"SessionId": session, "ItemId": item, "Time": ms / 1000.0}), "\t", header)
    if fmt == "diginetica":
        day = ms // 86_400_000
        return _csv_bytes(pa.table({
            "session_id": session, "user_id": pa.array(["NA"] * len(session)), "item_id": item,
            "timeframe": ms - day * 86_400_000, "eventdate": pa.array(day.astype(np.int32), pa.date32())}), ";", header)
    if fmt == "retailrocket":
        return _csv_bytes(pa.table({
            "timestamp": ms, "visitorid": session, "event": _kinds(first, len(session), _OTHER_EVENT["retailrocket"]),
            "itemid": item, "transactionid": pa.nulls(len(session), pa.int64())}), ",", header)
    if fmt == "otto":
        return _otto(session, ms, item, first, seconds=time_unit == "s")
    table = _generic_table(session, ms, item, first, string_ids, time_unit)
    return _csv_bytes(table, ",", header) if fmt == "csv" else _jsonl(table)


def convert(raw_clicks: str | Path, fmt: str, out: str | Path, string_ids: bool = False, time_unit: str = "") -> Path:
    """Write the clicks of a raw YooChoose file as format ``fmt`` to ``out`` (compressed by its suffix:
    .gz, .bz2, .zst). ``string_ids`` (generic formats) writes ids as text (``s12``, ``i34``);
    ``time_unit``: generic formats s (default), ms or iso; otto ms (default, as published) or s."""
    if fmt not in WRITABLE:
        raise ValueError(f"format must be one of {', '.join(WRITABLE)}, got {fmt!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            empty = np.zeros(0, np.int64)
            with pq.ParquetWriter(tmp, _generic_table(empty, empty, empty, 0, string_ids, time_unit).schema) as writer:
                first = 0
                for session, ms, item in _raw_batches(Path(raw_clicks)):
                    writer.write_table(_generic_table(session, ms, item, first, string_ids, time_unit))
                    first += len(session)
        else:
            with pa.output_stream(str(tmp), compression=_compression(out)) as sink:
                if fmt == "yoochoose":
                    with pa.input_stream(str(raw_clicks), compression="detect") as source:
                        while block := source.read(_BATCH_BYTES):
                            sink.write(block)
                else:
                    first = 0
                    for session, ms, item in _raw_batches(Path(raw_clicks)):
                        sink.write(_rows(fmt, session, ms, item, first, first == 0, string_ids, time_unit))
                        first += len(session)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _compression(path: Path) -> str | None:
    return {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}.get(path.suffix.lower())


def write_generated(fmt: str, out: str | Path, cfg: SyntheticConfig | None = None, string_ids: bool = False,
                    time_unit: str = "") -> Path:
    """Generate clicks (:func:`seqrec.data.synthetic.generate`, default size) and write them as format ``fmt``
    to ``out``."""
    cfg = cfg or SyntheticConfig()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.gen-", dir=out.parent))
    try:
        clicks, _ = generate(work, cfg)
        return convert(clicks, fmt, out, string_ids, time_unit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
