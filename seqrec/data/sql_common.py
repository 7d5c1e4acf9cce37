"""What the DuckDB loaders of the out-of-core engine share (:mod:`seqrec.data.sql_sources`): SQL literals, the
``Loaded`` record, and the checks that hand a bad file to the memory engine's own scanners.

Every loader keeps a bad row (its ``t`` NULL) until its check, so that no filter hides it; the check then finds
the first bad line (or record) with the memory engine's scanner, which names it with the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import duckdb

from seqrec.data.formats.common import ISO_ANY, DataFormatError, Field, ReadOptions, raise_first_problem
from seqrec.data.formats.jsonl import check_lines, line_blocks

PARSE_ERRORS = (duckdb.InvalidInputException, duckdb.ConversionException)


@dataclass
class Loaded:
    """What a loader put into its table, beside the rows."""

    info: dict  # the reader's figures, as the memory engine's reader reports them
    scale: float = 1.0  # unix seconds = t / scale
    text_sessions: bool = False
    text_items: bool = False
    categories: bool = False


def text(value: str) -> str:
    """An SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def name(column: str) -> str:
    """An SQL identifier."""
    return '"' + column.replace('"', '""') + '"'


def double(value: float) -> str:
    """An SQL DOUBLE of exactly ``value`` (a bare ``0.1`` would be a DECIMAL)."""
    return f"CAST({float(value)!r} AS DOUBLE)"


def one_of(values: Sequence[str]) -> str:
    """An SQL list of text literals, for ``IN``."""
    return "(" + ", ".join(text(v) for v in values) + ")"


def one(con: duckdb.DuckDBPyConnection, query: str) -> tuple:
    """The one row of ``query``."""
    row = con.execute(query).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query}")
    return row


def _first_line(exc: Exception | None) -> DataFormatError | None:
    """DuckDB's complaint in one line (its messages run over several)."""
    return None if exc is None else DataFormatError(str(exc).strip().splitlines()[0])


def create_checked(con: duckdb.DuckDBPyConnection, table: str, select: str,
                   fail: Callable[[Exception | None], NoReturn], bad: str) -> None:
    """``CREATE TABLE table AS select``, then the check: a parse error, or a row where ``bad`` holds, goes to
    ``fail`` (which names the first bad line and raises)."""
    try:
        con.execute(f"CREATE TABLE {table} AS {select}")
    except PARSE_ERRORS as exc:
        fail(exc)
    if one(con, f"SELECT count(*) FROM {table} WHERE {bad}")[0]:
        fail(None)


def nonempty(con: duckdb.DuckDBPyConnection, table: str, message: str, where: str = "true") -> None:
    """Fail with ``message`` when no row of ``table`` satisfies ``where``."""
    if one(con, f"SELECT count(*) FROM {table} WHERE {where}")[0] == 0:
        raise DataFormatError(message)


def csv_source(path: Path, sep: str, names: Sequence[str], types: dict[str, str], header: bool) -> str:
    """DuckDB's reader of a delimited file with the columns ``names`` (VARCHAR unless ``types`` says), quoted as the
    memory engine's reader quotes (double quotes, doubled inside)."""
    columns = ", ".join(f"{text(n)}: {text(types.get(n, 'VARCHAR'))}" for n in names)
    return (f"read_csv({text(str(path))}, delim={text(sep)}, header={str(header).lower()}, columns={{{columns}}}, "
            f"auto_detect=false, quote='\"', escape='\"', strict_mode=false)")


def delimited_failure(path: Path, fields: Sequence[Field], sep: str,
                       header: list[str] | None) -> Callable[[Exception | None], NoReturn]:
    """Scan the delimited file as the memory engine does: the first bad line is named, else DuckDB's complaint."""
    def fail(exc: Exception | None) -> NoReturn:
        raise_first_problem(path, fields, sep, header, _first_line(exc))
        raise AssertionError("unreachable")  # raise_first_problem always raises

    return fail


def lines_failure(path: Path, problem: Callable[[str], str | None]) -> Callable[[Exception | None], NoReturn]:
    """Scan the JSON lines as the memory engine does: the first bad line is named, else DuckDB's complaint."""
    def fail(exc: Exception | None) -> NoReturn:
        for first, block in line_blocks(path):
            check_lines(path, first, block, problem, "error")
        raise DataFormatError(f"{path}: cannot parse the file: {_first_line(exc) or 'a record breaks the format'}")

    return fail


def flat_info(options: ReadOptions) -> dict:
    """The reader info of the generic formats, as :func:`seqrec.data.formats.jsonl.flat_clicks` reports it."""
    return {"time_unit": options.time_unit or "s", "events": list(options.events) or "all"}


def flat_empty(path: Path, options: ReadOptions) -> str:
    """The generic formats' message for a file without a valid click."""
    kept = f" with events {', '.join(options.events)}" if options.events else ""
    return f"{path}: no valid click records{kept}"


def iso_millis(column: str) -> str:
    """Milliseconds since 1970 (DOUBLE) of ISO-8601 text (UTC unless it names a zone); NULL where not ISO-8601."""
    return (f"CASE WHEN regexp_full_match({column}, {text(ISO_ANY)}) "
            f"THEN CAST(epoch_ms(TRY_CAST({column} AS TIMESTAMPTZ)) AS DOUBLE) END")


def event_filter(options: ReadOptions, event: str, valid: str) -> str:
    """The WHERE clause that drops valid rows of event types not asked for (bad rows stay for the check)."""
    if "event" not in options.columns or not options.events:
        return ""
    return f"WHERE NOT coalesce(CAST({event} AS VARCHAR) NOT IN {one_of(options.events)} AND {valid}, false)"


