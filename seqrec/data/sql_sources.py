"""Click files loaded into DuckDB for the out-of-core engine (:mod:`seqrec.data.outofcore`).

One loader per format (:mod:`seqrec.data.sql_delimited`, :mod:`seqrec.data.sql_jsonl`, :mod:`seqrec.data.sql_parquet`)
reads a file with DuckDB's own CSV, JSON-lines or Parquet reader (no Python per row) into a table with the columns
``s`` (session id: BIGINT, or VARCHAR where the file's ids are text), ``i`` (item id, the same), ``t`` (DOUBLE: unix
seconds times ``Loaded.scale``) and, for raw YooChoose, ``c`` (the category), in file order (the table's rowid), with
the same ids, times, event filter and reader info as :mod:`seqrec.data.formats`. Several files become one table
``ev``, as :func:`seqrec.data.readers.concat_clicks` joins them.

A file DuckDB cannot parse, or whose parsed columns break a rule of its format (an empty field, a negative unix time,
an unknown event type), goes to the memory engine's own scanner, which names the first bad line (or record) with the
same message. DuckDB casts a little more leniently than the memory engine's readers: a JSON ``"7"`` or ``7.0`` where
an integer is due is read as 7 here and refused there. bz2 files, which DuckDB cannot decompress, are decompressed
in streaming blocks into the work directory first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from seqrec.data.formats.common import ReadOptions, check_file
from seqrec.data.outofcore import Unsupported
from seqrec.data.readers import resolve_format
from seqrec.data.sql_common import Loaded, double, one
from seqrec.data.sql_delimited import diginetica, generic_csv, prepared, retailrocket, yoochoose
from seqrec.data.sql_jsonl import generic_jsonl, otto
from seqrec.data.sql_parquet import generic_parquet

__all__ = ["LOADERS", "Loaded", "Unsupported", "load_clicks"]

Loader = Callable[[duckdb.DuckDBPyConnection, Path, Path, ReadOptions, str], Loaded]
LOADERS: dict[str, Loader] = {
    "yoochoose": yoochoose, "prepared": prepared, "diginetica": diginetica, "retailrocket": retailrocket,
    "otto": otto, "csv": generic_csv, "parquet": generic_parquet, "jsonl": generic_jsonl,
}
_INT64_TEXT_WIDTH = 21  # numpy's width of int64 ids turned into text (``astype(str)``: '<U21')
_BLOCK = 1 << 26


def native(path: Path, work: Path) -> Path:
    """``path`` as DuckDB can read it: a bz2 file decompressed, in streaming blocks, into ``work``."""
    if path.suffix.lower() != ".bz2":
        return path
    out = work / path.stem
    with pa.input_stream(str(path), compression="bz2") as source, open(out, "wb") as sink:
        while block := source.read(_BLOCK):
            sink.write(block)
    return out


def load_clicks(con: duckdb.DuckDBPyConnection, paths: list[Path], fmt: str, options: ReadOptions,
                work: Path) -> tuple[Loaded, int]:
    """Load the click files ``paths`` (one format; ``auto`` resolved per file) into the table ``ev``; returns what was
    loaded (the reader info names the format) and the numpy width of text session ids (0 for integer ids)."""
    formats = [resolve_format(path, fmt, options) for path in paths]
    if len(set(formats)) > 1:
        raise Unsupported(f"the files are of different formats ({', '.join(formats)})")
    parts = []
    for k, path in enumerate(paths):
        check_file(path)
        parts.append(LOADERS[formats[0]](con, path, native(path, work), options, f"part{k}"))
    loaded = _merge(con, parts)
    loaded.info = {"format": formats[0], **loaded.info}
    width = 0
    if loaded.text_sessions:
        width = max(1, one(con, "SELECT max(length(s)) FROM ev")[0])
        if not all(p.text_sessions for p in parts):
            width = max(width, _INT64_TEXT_WIDTH)
    return loaded, width


def _merge(con: duckdb.DuckDBPyConnection, parts: list[Loaded]) -> Loaded:
    """The parts as one table ``ev``, file after file: text ids if any file has text ids, times in seconds."""
    if len(parts) == 1:
        con.execute("ALTER TABLE part0 RENAME TO ev")
        return parts[0]
    text_s, text_i = any(p.text_sessions for p in parts), any(p.text_items for p in parts)
    categories = all(p.categories for p in parts)

    def select(k: int, part: Loaded) -> str:
        s = "CAST(s AS VARCHAR)" if text_s and not part.text_sessions else "s"
        i = "CAST(i AS VARCHAR)" if text_i and not part.text_items else "i"
        return f"SELECT {s} AS s, {i} AS i, t / {double(part.scale)} AS t{', c' if categories else ''} FROM part{k}"

    con.execute(f"CREATE TABLE ev AS {select(0, parts[0])}")
    for k, part in enumerate(parts[1:], start=1):
        con.execute(f"INSERT INTO ev {select(k, part)}")
    for k in range(len(parts)):
        con.execute(f"DROP TABLE part{k}")
    return Loaded(parts[0].info, 1.0, text_s, text_i, categories)
