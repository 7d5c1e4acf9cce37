"""JSON-lines click files: OTTO sessions and generic flat records, read in batches of lines.

The file (plain, .gz, .bz2 or .zst) is streamed in blocks of whole lines; each block is parsed by
pyarrow's JSON reader, flattened and filtered at once, and only the kept events' columns are held,
so memory grows with the events kept, not with the file. A block that arrow rejects, or that holds
an invalid record, is checked line by line to name the first bad line (``on_bad_lines="error"``) or
to drop and count the bad lines (``"skip"``); clean blocks never go through Python per record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from seqrec.data.formats.common import (
    ISO_ANY,
    Clicks,
    DataFormatError,
    ReadOptions,
    check_file,
    event_filter,
    events_to_keep,
    id_column,
    make_clicks,
    unix_seconds,
)

OTTO_EVENTS = ("clicks", "carts", "orders")
_OTTO_SCHEMA = pa.schema([
    ("session", pa.int64()),
    ("events", pa.list_(pa.struct([("aid", pa.int64()), ("ts", pa.int64()), ("type", pa.string())]))),
])
BLOCK_BYTES = 1 << 26  # lines are parsed 64 MiB at a time
MS_THRESHOLD = 1e11  # a largest ts below this is seconds (1e11 ms is 1973, 1e11 s is year 5138)


def line_blocks(path: Path, size: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """``(number of the first line, bytes of whole lines)`` blocks of a (compressed) text file."""
    with pa.input_stream(str(path), compression="detect") as stream:
        number, rest = 1, b""
        while block := stream.read(size):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            yield number, data[:cut]
            number += data.count(b"\n", 0, cut)
            rest = data[cut:]
        if rest.strip():
            yield number, rest + b"\n"


def _parse(block: bytes, schema: pa.Schema, infer: bool) -> pa.Table:
    """Parse whole JSON lines in parallel 4 MiB pieces (one piece per block if a line is longer)."""
    parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer" if infer else "ignore")

    def read(size: int) -> pa.Table:
        return pajson.read_json(pa.BufferReader(block), read_options=pajson.ReadOptions(block_size=size),
                                parse_options=parse)

    try:
        return read(1 << 22)
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc):
            raise
    return read(len(block))


def _reparse(path: Path, first: int, block: bytes, schema: pa.Schema, infer: bool) -> pa.Table:
    """Parse lines that passed the line-by-line check; a failure still names where the block starts."""
    try:
        return _parse(block, schema, infer)
    except pa.ArrowInvalid as exc:
        raise DataFormatError(f"{path}:{first}: cannot parse the lines from here on: {exc}") from exc


def _is_int(value: object) -> bool:
    return type(value) is int


def otto_problem(line: str) -> str | None:
    """What is wrong with one OTTO record (None if nothing)."""
    try:
        record = json.loads(line)
    except ValueError:
        return f"expected a JSON object like {{\"session\": 1, \"events\": [...]}}, got {line.strip()[:60]!r}"
    if not isinstance(record, dict) or not _is_int(record.get("session")):
        return "expected an integer \"session\""
    events = record.get("events")
    if not isinstance(events, list):
        return "expected \"events\": a list of {\"aid\": int, \"ts\": int, \"type\": ...}"
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            return f"event {i}: expected an object {{\"aid\", \"ts\", \"type\"}}"
        for key in ("aid", "ts"):
            if not _is_int(event.get(key)):
                return f"event {i}: expected an integer {key!r}, got {event.get(key)!r}"
        if event["ts"] < 0:
            return f"event {i}: expected a unix time 'ts' >= 0, got {event['ts']!r}"
        if event.get("type") not in OTTO_EVENTS:
            return f"event {i}: expected \"type\" clicks, carts or orders, got {event.get('type')!r}"
    return None


def check_lines(path: Path, first: int, block: bytes, problem: Callable[[str], str | None],
                 on_bad_lines: str) -> tuple[bytes, int]:
    """Check ``block`` line by line: raise on the first bad line, or return the good lines and the count
    of bad ones (``skip``). Blank lines are dropped."""
    good, bad = [], 0
    for offset, raw in enumerate(block.splitlines(keepends=True)):
        line = raw.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        issue = problem(line)
        if issue is None:
            good.append(raw)
        elif on_bad_lines == "error":
            raise DataFormatError(f"{path}:{first + offset}: {issue}")
        else:
            bad += 1
    return b"".join(good), bad


def _otto_block(table: pa.Table, keep: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """(session, aid, ts) of the kept events of one parsed block; None if a record is invalid."""
    if table.num_rows == 0:
        return pa.array([], pa.int64()), pa.array([], pa.int64()), pa.array([], pa.int64())
    table = table.combine_chunks()
    session, events = table["session"].chunk(0), table["events"].chunk(0)
    if session.null_count or events.null_count:
        return None
    flat = events.flatten()
    aid, ts, kind = flat.field("aid"), flat.field("ts"), flat.field("type")
    if aid.null_count or ts.null_count or not pc.all(pc.is_in(kind, value_set=pa.array(OTTO_EVENTS))).as_py() \
            or pc.any(pc.less(ts, 0)).as_py():
        return None
    mask = pc.is_in(kind, value_set=keep)
    parent = pc.list_parent_indices(events).filter(mask)
    return session.take(parent), aid.filter(mask), ts.filter(mask)


def read_otto(path: Path, options: ReadOptions) -> Clicks:
    """OTTO JSON lines: ``{"session": int, "events": [{"aid": int, "ts": int, "type": ...}]}``.

    ``ts`` is milliseconds in the published files and seconds in some converted copies: unless
    ``options.time_unit`` says which, the unit is detected from the largest ts and reported in ``info``.
    """
    check_file(path)
    keep = pa.array(events_to_keep(options.events, ("clicks",), OTTO_EVENTS, "otto"))
    sessions: list[pa.Array] = []
    aids: list[pa.Array] = []
    stamps: list[pa.Array] = []
    skipped = 0
    for first, block in line_blocks(path):
        try:
            part = _otto_block(_parse(block, _OTTO_SCHEMA, infer=False), keep)
        except pa.ArrowInvalid:
            part = None
        if part is None:
            block, bad = check_lines(path, first, block, otto_problem, options.on_bad_lines)
            skipped += bad
            part = _otto_block(_reparse(path, first, block, _OTTO_SCHEMA, infer=False), keep)
            assert part is not None, "check_lines keeps only valid records"
        for out, column in zip((sessions, aids, stamps), part, strict=True):
            out.append(column)
    session = pa.chunked_array(sessions, pa.int64())
    if len(session) == 0:
        raise DataFormatError(f"{path}: no valid {'/'.join(keep.to_pylist())} events")
    ts = pa.chunked_array(stamps, pa.int64())
    if options.time_unit in ("s", "ms"):
        unit, how = options.time_unit, "given"
    else:
        unit, how = ("ms", "detected") if pc.max(ts).as_py() >= MS_THRESHOLD else ("s", "detected")
    time = ts.to_numpy() / (1000.0 if unit == "ms" else 1.0)
    del ts, stamps
    info = {"events": keep.to_pylist(), "time_unit": unit, "time_unit_source": how}
    return make_clicks(session, pa.chunked_array(aids, pa.int64()), time, skipped, info)


def flat_problem(columns: dict[str, str], time_unit: str) -> Callable[[str], str | None]:
    iso = re.compile(ISO_ANY)

    def problem(line: str) -> str | None:
        try:
            record = json.loads(line)
        except ValueError:
            return f"expected a JSON object, got {line.strip()[:60]!r}"
        if not isinstance(record, dict):
            return f"expected a JSON object, got {line.strip()[:60]!r}"
        for role, column in columns.items():
            value = record.get(column)
            if role in ("session", "item", "event") and not (_is_int(value) or (isinstance(value, str) and value)):
                return f"expected a {role} id (integer or text) in {column!r}, got {value!r}"
            if role == "time":
                ok = isinstance(value, str) and iso.fullmatch(value) if time_unit == "iso" else \
                    isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
                if not ok:
                    what = "an ISO-8601 time" if time_unit == "iso" else f"a number of {time_unit or 's'} since 1970"
                    return f"expected {what} in {column!r}, got {value!r}"
        return None

    return problem


def read_jsonl(path: Path, options: ReadOptions) -> Clicks:
    """Generic JSON lines, one flat record per click, with the columns of ``options.columns``."""
    check_file(path)
    cols, unit = options.columns, options.time_unit or "s"
    time_type = pa.string() if unit == "iso" else pa.float64()
    schema = pa.schema([(cols["time"], time_type)] + ([(cols["event"], pa.string())] if "event" in cols else []))
    problem = flat_problem(cols, unit)
    parts, skipped = [], 0
    for first, block in line_blocks(path):
        try:
            table = _parse(block, schema, infer=True)
            table = table.select(list(cols.values()))
            if any(table[c].null_count for c in cols.values()):
                raise pa.ArrowInvalid("a record lacks a column")
            if unit != "iso" and pc.any(pc.less(table[cols["time"]], 0)).as_py():
                raise pa.ArrowInvalid("a negative unix time")
        except (pa.ArrowInvalid, KeyError):
            block, bad = check_lines(path, first, block, problem, options.on_bad_lines)
            skipped += bad
            table = _reparse(path, first, block, schema, infer=True).select(list(cols.values()))
        if "event" in cols and options.events:
            table = table.filter(event_filter(table[cols["event"]], options.events))
        parts.append(table.rename_columns(list(cols)))
    return flat_clicks(path, parts, unit, skipped, options)


def flat_clicks(path: Path, parts: list[pa.Table], unit: str, skipped: int, options: ReadOptions) -> Clicks:
    """Clicks from tables with columns session/item/time (ids as parsed: int or text, unified across parts)."""
    ids = {}
    for role in ("session", "item"):
        columns = [id_column(t[role]) for t in parts]
        if len({c.type for c in columns}) > 1:
            columns = [c.cast(pa.string()) for c in columns]
        ids[role] = pa.chunked_array([chunk for c in columns for chunk in c.chunks], columns[0].type)
    if len(ids["session"]) == 0:
        kept = f" with events {', '.join(options.events)}" if options.events else ""
        raise DataFormatError(f"{path}: no valid click records{kept}")
    time = np.concatenate([unix_seconds(t["time"], unit) for t in parts])
    info = {"time_unit": unit, "events": list(options.events) or "all"}
    return make_clicks(ids["session"], ids["item"], time, skipped, info)
