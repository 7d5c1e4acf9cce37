"""Any click log as CSV or Parquet, with a column mapping (``session=COL,item=COL,time=COL[,event=COL]``).

Ids are kept as they are: CSV ids are read as text (so ``007`` stays ``007``), Parquet integer ids stay
integers. Times are unix seconds, milliseconds or ISO-8601 text (``time_unit``); Parquet timestamp
columns are read as such.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec.data.formats.common import (
    ANY,
    ISO_ANY,
    LABEL,
    UNSIGNED_FLOAT,
    Clicks,
    DataFormatError,
    Field,
    ReadOptions,
    check_file,
    event_filter,
    first_line,
    id_column,
    read_delimited,
    read_header,
)
from seqrec.data.formats.jsonl import flat_clicks

_SEPARATORS = (",", ";", "\t", "|")


def sniff_separator(path: Path, columns: dict[str, str]) -> str:
    """The separator whose split of the header line holds every mapped column (else the most frequent)."""
    line = first_line(path)
    for sep in _SEPARATORS:
        names = [n.strip().strip('"') for n in line.split(sep)]
        if all(c in names for c in columns.values()):
            return sep
    return max(_SEPARATORS, key=line.count)


def csv_fields(columns: dict[str, str], unit: str) -> list[Field]:
    time = Field("time", columns["time"], pa.string(), ISO_ANY, "an ISO-8601 time like 2014-04-07T10:51:09Z") \
        if unit == "iso" else Field("time", columns["time"], pa.float64(), UNSIGNED_FLOAT,
                                    f"a number of {unit} since 1970")
    fields = [Field("session", columns["session"], pa.string(), ANY, "a session id"),
              Field("item", columns["item"], pa.string(), ANY, "an item id"), time]
    if "event" in columns:
        fields.append(Field("event", columns["event"], LABEL, ANY, "an event type"))
    return fields


def read_csv(path: Path, options: ReadOptions) -> Clicks:
    """A delimited text file with a header line naming the mapped columns."""
    check_file(path)
    unit = options.time_unit or "s"
    sep = options.sep or sniff_separator(path, options.columns)
    fields = csv_fields(options.columns, unit)
    header = read_header(path, sep, fields)
    table, skipped = read_delimited(path, fields, sep, header, options.on_bad_lines)
    if "event" in options.columns and options.events:
        table = table.filter(event_filter(table["event"], options.events))
    return flat_clicks(path, [table], unit, skipped, options)


def read_parquet(path: Path, options: ReadOptions) -> Clicks:
    """A Parquet file; a null in a mapped column, or a negative number of a numeric time column, is an error
    naming the record (or skipped and counted)."""
    check_file(path)
    unit = options.time_unit or "s"
    cols = options.columns
    parquet_schema(path, cols)
    table = pq.read_table(path, columns=list(cols.values())).rename_columns(list(cols))
    time_type = table["time"].type
    numeric = pa.types.is_integer(time_type) or pa.types.is_floating(time_type)
    if not (pa.types.is_timestamp(time_type) or (numeric and unit != "iso") or
            (pa.types.is_string(time_type) and unit == "iso")):
        raise DataFormatError(f"{path}: column {cols['time']!r} is {time_type}; expected a timestamp, numbers "
                              f"(time_unit=s|ms) or ISO-8601 text (time_unit=iso)")
    present = None
    for role in cols:
        ok = pc.is_valid(table[role])
        if role != "time" and not pa.types.is_integer(table[role].type):
            ok = pc.and_(ok, pc.not_equal(pc.fill_null(id_column(table[role]), ""), ""))
        present = ok if present is None else pc.and_(present, ok)
    assert present is not None  # cols has at least the session, item and time roles
    present = present.to_numpy(zero_copy_only=False)
    # unix times are never negative (a timestamp column's times are taken as they are)
    unsigned = pc.fill_null(pc.greater_equal(table["time"], 0), True).to_numpy(zero_copy_only=False) \
        if numeric else np.ones(len(present), dtype=bool)
    valid = present & unsigned
    bad = np.flatnonzero(~valid)
    if bad.size and options.on_bad_lines == "error":
        first = int(bad[0])
        row = table.slice(first, 1).to_pylist()[0]
        expected = f"a time >= 0 ({unit} since 1970) in column {cols['time']!r}" if present[first] else \
            "a value in every mapped column"
        raise DataFormatError(f"{path}: record {first + 1}: expected {expected}, got {row}")
    table = table.filter(pa.array(valid))
    if "event" in cols and options.events:
        table = table.filter(event_filter(table["event"], options.events))
    return flat_clicks(path, [table], unit, int(bad.size), options)


def parquet_schema(path: Path, cols: dict[str, str]) -> pa.Schema:
    """The schema of the Parquet file ``path``, refused naming the file when it is not Parquet or lacks one of the
    mapped columns ``cols`` (role -> column); both engines read Parquet through this check."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: expected a Parquet file: {exc}") from exc
    missing = [c for c in cols.values() if c not in schema.names]
    if missing:
        raise DataFormatError(f"{path}: expected columns {list(cols.values())}, missing {missing} "
                              f"(the file has {schema.names})")
    return schema
