"""DuckDB loaders of the delimited formats (out-of-core engine): raw YooChoose, the prepared TSV, DIGINETICA,
RetailRocket and generic CSV, each the twin of its reader in :mod:`seqrec.data.formats` (same ids, times, event
filter, sessions and reader info; the same message for a bad line). See :mod:`seqrec.data.sql_sources`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from seqrec.data.formats.common import ReadOptions, events_to_keep, read_header
from seqrec.data.formats.generic import csv_fields, sniff_separator
from seqrec.data.formats.public import DIGINETICA_EVENTS, DIGINETICA_FIELDS, RETAILROCKET_EVENTS, RETAILROCKET_FIELDS
from seqrec.data.formats.yoochoose import PREPARED_FIELDS, RAW_CLICKS_FIELDS
from seqrec.data.readers import check_click_only
from seqrec.data.sql_common import (
    Loaded,
    create_checked,
    csv_source,
    delimited_failure,
    double,
    event_filter,
    flat_empty,
    flat_info,
    iso_millis,
    name,
    nonempty,
    one_of,
)

Con = duckdb.DuckDBPyConnection


def yoochoose(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """Raw YooChoose clicks: ``SessionID,Timestamp,ItemID,Category``, no header, ISO times in UTC."""
    check_click_only("yoochoose", options)
    names = [f.source for f in RAW_CLICKS_FIELDS]
    src = csv_source(source, ",", names, {"SessionID": "BIGINT", "Timestamp": "TIMESTAMPTZ", "ItemID": "BIGINT"}, False)
    select = (f'SELECT "SessionID" AS s, "ItemID" AS i, CAST(epoch_ms("Timestamp") AS DOUBLE) AS t, '
              f'"Category" AS c FROM {src}')
    create_checked(con, table, select, delimited_failure(path, RAW_CLICKS_FIELDS, ",", None),
                   "s IS NULL OR i IS NULL OR t IS NULL OR c IS NULL OR c = ''")
    nonempty(con, table, f"{path}: no valid click rows")
    return Loaded({}, 1000.0, categories=True)


def prepared(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """The prepared TSV: ``SessionId\\tItemId\\tTime`` (unix seconds) with a header."""
    check_click_only("prepared", options)
    header = read_header(path, "\t", PREPARED_FIELDS)
    src = csv_source(source, "\t", header, {"SessionId": "BIGINT", "ItemId": "BIGINT", "Time": "DOUBLE"}, True)
    create_checked(con, table, f'SELECT "SessionId" AS s, "ItemId" AS i, "Time" AS t FROM {src}',
                   delimited_failure(path, PREPARED_FIELDS, "\t", header),
                   "s IS NULL OR i IS NULL OR t IS NULL OR t < 0")
    nonempty(con, table, f"{path}:2: no click rows after the header")
    return Loaded({})


def diginetica(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """DIGINETICA's ``train-item-views.csv``: a click's time is its eventdate plus timeframe milliseconds."""
    events_to_keep(options.events, DIGINETICA_EVENTS, DIGINETICA_EVENTS, "diginetica")
    header = read_header(path, ";", DIGINETICA_FIELDS)
    types = {"session_id": "BIGINT", "item_id": "BIGINT", "timeframe": "BIGINT", "eventdate": "DATE"}
    src = csv_source(source, ";", header, types, True)
    days = "CAST(eventdate - DATE '1970-01-01' AS DOUBLE)"
    time = f"CASE WHEN timeframe >= 0 THEN {days} * {double(86400)} + CAST(timeframe AS DOUBLE) / {double(1000)} END"
    create_checked(con, table, f"SELECT session_id AS s, item_id AS i, {time} AS t FROM {src}",
                   delimited_failure(path, DIGINETICA_FIELDS, ";", header), "s IS NULL OR i IS NULL OR t IS NULL")
    nonempty(con, table, f"{path}: no valid click rows")
    return Loaded({"events": list(DIGINETICA_EVENTS)})


def retailrocket(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """RetailRocket's ``events.csv``: sessions cut from each visitor's kept events at gaps over ``session_gap``,
    numbered 1.. in (visitor, time, file) order as :func:`seqrec.data.formats.public.cut_sessions` numbers them."""
    keep = events_to_keep(options.events, ("view",), RETAILROCKET_EVENTS, "retailrocket")
    header = read_header(path, ",", RETAILROCKET_FIELDS)
    src = csv_source(source, ",", header, {"timestamp": "BIGINT", "visitorid": "BIGINT", "itemid": "BIGINT"}, True)
    raw = f"{table}_raw"
    time = f"CASE WHEN event IN {one_of(RETAILROCKET_EVENTS)} THEN CAST(timestamp AS DOUBLE) / {double(1000)} END"
    create_checked(con, raw, f"SELECT visitorid AS u, itemid AS i, {time} AS t, event AS e FROM {src}",
                   delimited_failure(path, RETAILROCKET_FIELDS, ",", header),
                   "u IS NULL OR i IS NULL OR t IS NULL OR t < 0")
    kept = f"e IN {one_of(keep)}"
    nonempty(con, raw, f"{path}: no valid {'/'.join(keep)} events", kept)
    con.execute(f"""CREATE TABLE {table} AS
        WITH ordered AS (SELECT u, i, t, rowid AS p FROM {raw} WHERE {kept}),
        marked AS (SELECT *, CASE WHEN lag(t) OVER w IS NULL OR t - lag(t) OVER w > {double(options.session_gap)}
                                  THEN 1 ELSE 0 END AS new
                   FROM ordered WINDOW w AS (PARTITION BY u ORDER BY t, p)),
        numbered AS (SELECT *, sum(new) OVER (PARTITION BY u ORDER BY t, p ROWS UNBOUNDED PRECEDING) AS k FROM marked),
        base AS (SELECT u, sum(max(k)) OVER (ORDER BY u ROWS UNBOUNDED PRECEDING) - max(k) AS b
                 FROM numbered GROUP BY u)
        SELECT CAST(b + k AS BIGINT) AS s, i, t FROM numbered JOIN base USING (u) ORDER BY u, t, p""")
    con.execute(f"DROP TABLE {raw}")
    return Loaded({"events": list(keep), "session_gap_s": options.session_gap})


def generic_csv(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """A delimited file with a header naming the mapped columns; ids are text, as the memory engine reads them."""
    unit, cols = options.time_unit or "s", options.columns
    sep = options.sep or sniff_separator(path, cols)
    fields = csv_fields(cols, unit)
    header = read_header(path, sep, fields)
    src = csv_source(source, sep, header, {} if unit == "iso" else {cols["time"]: "DOUBLE"}, True)
    s, i, e = name(cols["session"]), name(cols["item"]), name(cols.get("event", ""))
    time = iso_millis(name(cols["time"])) if unit == "iso" else name(cols["time"])
    if "event" in cols:
        time = f"CASE WHEN {e} IS NOT NULL AND {e} <> '' THEN {time} END"
    valid = f"{s} <> '' AND {i} <> ''" + ("" if unit == "iso" else f" AND ({time}) >= 0")
    select = f"SELECT {s} AS s, {i} AS i, {time} AS t FROM {src} {event_filter(options, e, valid)}"
    negative = "" if unit == "iso" else " OR t < 0"
    create_checked(con, table, select, delimited_failure(path, fields, sep, header),
                   f"s IS NULL OR s = '' OR i IS NULL OR i = '' OR t IS NULL{negative}")
    nonempty(con, table, flat_empty(path, options))
    return Loaded(flat_info(options), 1000.0 if unit in ("ms", "iso") else 1.0, True, True)
