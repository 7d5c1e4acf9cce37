"""Reading click files of any supported format into ``Clicks`` (docs/protocol.md, "Input formats").

``read_clicks`` dispatches on ``format``: ``yoochoose`` (raw clicks), ``prepared`` (the TSV),
``diginetica``, ``retailrocket``, ``otto``, and the generic ``csv``/``parquet``/``jsonl`` with a column
mapping; ``auto`` tells raw YooChoose from the prepared TSV by the first line. The readers live in
``seqrec.data.formats``; this module is their one entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from seqrec.data.formats.common import Clicks, DataFormatError, ReadOptions, parse_columns
from seqrec.data.formats.generic import read_csv, read_parquet
from seqrec.data.formats.jsonl import read_jsonl, read_otto
from seqrec.data.formats.public import read_diginetica, read_retailrocket
from seqrec.data.formats.yoochoose import Buys, detect_format, read_buys, read_prepared, read_raw_clicks

__all__ = ["FORMATS", "GENERIC_FORMATS", "Buys", "Clicks", "DataFormatError", "ReadOptions", "check_click_only",
           "concat_clicks", "detect_format", "parse_columns", "read_buys", "read_clicks", "resolve_format"]

GENERIC_FORMATS = ("csv", "parquet", "jsonl")
_NO_EVENT_COLUMN = {"yoochoose": ("click",), "prepared": ("click",)}


def check_click_only(fmt: str, options: ReadOptions) -> None:
    """Refuse event types other than ``click`` for the formats without an event column (YooChoose, prepared)."""
    known = _NO_EVENT_COLUMN[fmt]
    if any(e not in known for e in options.events):
        raise ValueError(f"events: {fmt} files hold clicks only (event type 'click'), got {options.events}")


def _yoochoose(reader: Callable[[Path, str], Clicks], fmt: str) -> Callable[[Path, ReadOptions], Clicks]:
    def read(path: Path, options: ReadOptions) -> Clicks:
        check_click_only(fmt, options)
        return reader(path, options.on_bad_lines)

    return read


FORMATS: dict[str, Callable[[Path, ReadOptions], Clicks]] = {
    "yoochoose": _yoochoose(read_raw_clicks, "yoochoose"),
    "prepared": _yoochoose(read_prepared, "prepared"),
    "diginetica": read_diginetica,
    "retailrocket": read_retailrocket,
    "otto": read_otto,
    "csv": read_csv,
    "parquet": read_parquet,
    "jsonl": read_jsonl,
}


def read_clicks(path: str | Path, on_bad_lines: str = "error", fmt: str = "auto",
                options: ReadOptions | None = None) -> Clicks:
    """Read a click file of format ``fmt`` (``auto``: raw YooChoose or the prepared TSV, by the first line).

    ``options`` carries the column mapping, time unit, separator, event types and session gap;
    ``on_bad_lines`` overrides its field of that name.
    """
    path = Path(path)
    options = ReadOptions() if options is None else options
    options = replace(options, on_bad_lines=on_bad_lines)
    fmt = resolve_format(path, fmt, options)
    clicks = FORMATS[fmt](path, options)
    clicks.info = {"format": fmt, **clicks.info}
    pa.default_memory_pool().release_unused()  # hand the parse buffers back before preprocessing
    return clicks


def resolve_format(path: Path, fmt: str, options: ReadOptions) -> str:
    """The format of ``path`` (``auto``: raw YooChoose or the prepared TSV, by its first line), checked against the
    column mapping of ``options`` (needed by the generic formats, refused by the others)."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be auto or one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in GENERIC_FORMATS:
        if not options.columns:
            raise ValueError(f"format {fmt} needs columns=session=COL,item=COL,time=COL[,event=COL]")
        if options.events and "event" not in options.columns:
            raise ValueError("events needs an event column: columns=...,event=COL")
    elif options.columns:
        raise ValueError(f"columns applies to the generic formats ({', '.join(GENERIC_FORMATS)}), not {fmt}")
    return fmt


def concat_clicks(parts: list[Clicks]) -> Clicks:
    """One click table from several files of the same format (item, session and category codes re-coded)."""
    if len(parts) == 1:
        return parts[0]

    def recode(values: list[np.ndarray], codes: list[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
        kinds = {v.dtype.kind for v in values}
        values = [v.astype(str) for v in values] if len(kinds) > 1 else values
        union = np.unique(np.concatenate(values))
        return np.concatenate([np.searchsorted(union, v)[c].astype(dtype) for v, c in zip(values, codes,
                                                                                          strict=True)]), union

    item, item_ids = recode([p.item_ids for p in parts], [p.item for p in parts], np.int32)
    if all(p.session_ids is None for p in parts):
        session, session_ids = np.concatenate([p.session for p in parts]), None
    else:
        raw = [p.session_ids if p.session_ids is not None else np.unique(p.session) for p in parts]
        codes = [p.session if p.session_ids is not None else np.searchsorted(raw[i], p.session)
                 for i, p in enumerate(parts)]
        session, session_ids = recode(raw, codes, np.int64)
    category, categories = None, None
    part_categories = [p.category for p in parts if p.category is not None]
    if len(part_categories) == len(parts):
        category, union = recode([np.asarray(p.categories, dtype=str) for p in parts], part_categories, np.int32)
        categories = union.tolist()
    return Clicks(session=session, item=item, time=np.concatenate([p.time for p in parts]), item_ids=item_ids,
                  category=category, categories=categories, skipped_lines=sum(p.skipped_lines for p in parts),
                  session_ids=session_ids, info=parts[0].info)
