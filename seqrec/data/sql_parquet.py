"""DuckDB loader of generic Parquet click logs (out-of-core engine), the twin of
:func:`seqrec.data.formats.generic.read_parquet`: integer ids stay integers, text ids stay text, a bad record is
named by its number with the memory engine's message. See :mod:`seqrec.data.sql_sources`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from seqrec.data.formats.common import DataFormatError, ReadOptions
from seqrec.data.formats.generic import parquet_schema
from seqrec.data.outofcore import Unsupported
from seqrec.data.sql_common import (
    Loaded,
    event_filter,
    flat_empty,
    flat_info,
    iso_millis,
    name,
    nonempty,
    one,
    text,
)

Con = duckdb.DuckDBPyConnection


def _schema(path: Path, cols: dict[str, str]) -> dict[str, pa.DataType]:
    """The arrow type of each mapped role, with the memory engine's messages for a file that is not Parquet or
    lacks a column."""
    schema = parquet_schema(path, cols)
    return {role: schema.field(column).type for role, column in cols.items()}


def _time(path: Path, column: str, kind: pa.DataType, unit: str) -> tuple[str, float, bool]:
    """(SQL of the time times its scale, the scale, whether a negative value is a bad record)."""
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if pa.types.is_timestamp(kind):
        return f"CAST(epoch_ms({column}) AS DOUBLE)", 1000.0, False
    if numeric and unit != "iso":
        return f"CAST({column} AS DOUBLE)", 1000.0 if unit == "ms" else 1.0, True
    if pa.types.is_string(kind) and unit == "iso":
        return iso_millis(column), 1000.0, False
    raise DataFormatError(f"{path}: column {column.strip(chr(34))!r} is {kind}; expected a timestamp, numbers "
                          f"(time_unit=s|ms) or ISO-8601 text (time_unit=iso)")


def _id(column: str, kind: pa.DataType, role: str) -> tuple[str, bool]:
    """(SQL of an id column, whether it is text); other types than integers and text are left to the memory engine."""
    if pa.types.is_integer(kind):
        return f"CAST({column} AS BIGINT)", False
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or role == "event":
        return f"CAST({column} AS VARCHAR)", True
    raise Unsupported(f"the {role} column is {kind} (the duckdb engine reads integer or text ids)")


def _first_bad(path: Path, cols: dict[str, str], unit: str, record: int) -> DataFormatError:
    """The memory engine's message for bad record ``record`` (0-based), read from its row group alone."""
    meta = pq.ParquetFile(path)
    start = 0
    for group in range(meta.num_row_groups):
        rows = meta.metadata.row_group(group).num_rows
        if record < start + rows:
            break
        start += rows
    table = meta.read_row_group(group, columns=list(cols.values())).rename_columns(list(cols))
    row = table.slice(record - start, 1).to_pylist()[0]
    texts = [r for r in cols if r != "time" and not pa.types.is_integer(table[r].type)]
    present = all(v is not None for v in row.values()) and all(str(row[r]) != "" for r in texts)
    expected = f"a time >= 0 ({unit} since 1970) in column {cols['time']!r}" if present else \
        "a value in every mapped column"
    return DataFormatError(f"{path}: record {record + 1}: expected {expected}, got {row}")


def generic_parquet(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """A Parquet file with the mapped columns; a null, an empty text id or a negative numeric time is a bad record."""
    unit, cols = options.time_unit or "s", options.columns
    kinds = _schema(path, cols)
    time, scale, unsigned = _time(path, name(cols["time"]), kinds["time"], unit)
    ids = {role: _id(name(column), kinds[role], role) for role, column in cols.items() if role != "time"}
    bad = [f"{name(c)} IS NULL" for c in cols.values()]
    bad += [f"{sql} = ''" for sql, is_text in ids.values() if is_text]
    bad += [f"{name(cols['time'])} < 0"] if unsigned else []
    good = f"NOT coalesce({' OR '.join(bad)}, true)"
    where = event_filter(options, ids["event"][0], good) if "event" in ids else ""
    con.execute(f"CREATE TABLE {table} AS SELECT {ids['session'][0]} AS s, {ids['item'][0]} AS i, "
                f"CASE WHEN {good} THEN {time} END AS t FROM read_parquet({text(str(source))}) {where}")
    if one(con, f"SELECT count(*) FROM {table} WHERE t IS NULL")[0]:
        src = f"read_parquet({text(str(source))}, file_row_number = true)"
        first = one(con, f"SELECT min(file_row_number) FROM {src} WHERE NOT ({good})")[0]
        if first is not None:
            raise _first_bad(path, cols, unit, int(first))
        raise DataFormatError(f"{path}: column {cols['time']!r} holds text that is not an ISO-8601 time")
    nonempty(con, table, flat_empty(path, options))
    return Loaded(flat_info(options), scale, ids["session"][1], ids["item"][1])
