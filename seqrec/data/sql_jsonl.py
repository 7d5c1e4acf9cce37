"""DuckDB loaders of the JSON-lines formats (out-of-core engine): OTTO sessions (their events unnested) and generic
flat records, the twins of :func:`seqrec.data.formats.jsonl.read_otto` and ``read_jsonl``. See
:mod:`seqrec.data.sql_sources`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from seqrec.data.formats.common import ReadOptions, events_to_keep
from seqrec.data.formats.jsonl import MS_THRESHOLD, OTTO_EVENTS, flat_problem, otto_problem
from seqrec.data.sql_common import (
    Loaded,
    create_checked,
    flat_empty,
    flat_info,
    iso_millis,
    lines_failure,
    name,
    nonempty,
    one,
    one_of,
    text,
)

Con = duckdb.DuckDBPyConnection
_EVENT = 'STRUCT(aid BIGINT, ts BIGINT, "type" VARCHAR)'


def otto(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """OTTO JSON lines, their events unnested in order; ``ts`` is milliseconds unless ``time_unit`` or the largest
    kept ts says seconds (as :func:`seqrec.data.formats.jsonl.read_otto` decides)."""
    keep = events_to_keep(options.events, ("clicks",), OTTO_EVENTS, "otto")
    src = (f"read_json({text(str(source))}, format='newline_delimited', "
           f"columns={{session: 'BIGINT', events: '{_EVENT}[]'}})")
    events = f"unnest(CASE WHEN events IS NULL THEN [NULL]::{_EVENT}[] ELSE events END)"  # a NULL list: a bad row
    valid = f"e.type IN {one_of(OTTO_EVENTS)} AND e.aid IS NOT NULL AND e.ts >= 0 AND s IS NOT NULL"
    dropped = [kind for kind in OTTO_EVENTS if kind not in keep]
    where = f"WHERE NOT coalesce(e.type IN {one_of(dropped)} AND {valid}, false)" if dropped else ""
    select = (f"SELECT s, e.aid AS i, CASE WHEN e.type IN {one_of(OTTO_EVENTS)} THEN CAST(e.ts AS DOUBLE) END AS t "
              f"FROM (SELECT session AS s, {events} AS e FROM {src}) {where}")
    create_checked(con, table, select, lines_failure(path, otto_problem),
                   "s IS NULL OR i IS NULL OR t IS NULL OR t < 0")
    nonempty(con, table, f"{path}: no valid {'/'.join(keep)} events")
    if options.time_unit in ("s", "ms"):
        unit, how = options.time_unit, "given"
    else:
        largest = one(con, f"SELECT max(t) FROM {table}")[0]
        unit, how = ("ms", "detected") if largest >= MS_THRESHOLD else ("s", "detected")
    return Loaded({"events": list(keep), "time_unit": unit, "time_unit_source": how}, 1000.0 if unit == "ms" else 1.0)


def _json_id(column: str, integers: bool) -> str:
    """SQL of a JSON id column as BIGINT, or as text (a JSON number as its digits)."""
    return f"CAST({column} AS BIGINT)" if integers else f"({column} ->> '$')"


def generic_jsonl(con: Con, path: Path, source: Path, options: ReadOptions, table: str) -> Loaded:
    """Flat JSON records; an id column stays integer where every value is one, else all its values are text (as
    the memory engine unifies the blocks it parses)."""
    unit, cols = options.time_unit or "s", options.columns
    types = {cols["session"]: "JSON", cols["item"]: "JSON", cols["time"]: "VARCHAR" if unit == "iso" else "DOUBLE"}
    if "event" in cols:
        types[cols["event"]] = "VARCHAR"
    columns = ", ".join(f"{text(c)}: {text(kind)}" for c, kind in types.items())
    src = f"read_json({text(str(source))}, format='newline_delimited', columns={{{columns}}})"
    s, i, e = name(cols["session"]), name(cols["item"]), name(cols.get("event", ""))
    ids = one_of(("BIGINT", "UBIGINT", "VARCHAR"))
    good = f"json_type({s}) IN {ids} AND json_type({i}) IN {ids}" + (f" AND {e} IS NOT NULL" if "event" in cols else "")
    time = iso_millis(name(cols["time"])) if unit == "iso" else name(cols["time"])
    raw = f"{table}_raw"
    event = f", {e} AS e" if "event" in cols else ""
    create_checked(con, raw, f"SELECT {s} AS s, {i} AS i, CASE WHEN {good} THEN {time} END AS t{event} FROM {src}",
                   lines_failure(path, flat_problem(cols, unit)), "t IS NULL" + ("" if unit == "iso" else " OR t < 0"))
    kept = f"e IN {one_of(options.events)}" if "event" in cols and options.events else "true"
    nonempty(con, raw, flat_empty(path, options), kept)
    text_s, text_i = one(con, f"SELECT bool_or(json_type(s) = 'VARCHAR'), bool_or(json_type(i) = 'VARCHAR') "
                                 f"FROM {raw}")  # over every record, as the memory engine types them
    con.execute(f"CREATE TABLE {table} AS SELECT {_json_id('s', not text_s)} AS s, {_json_id('i', not text_i)} AS i, "
                f"t FROM {raw} WHERE {kept}")
    con.execute(f"DROP TABLE {raw}")
    return Loaded(flat_info(options), 1000.0 if unit in ("ms", "iso") else 1.0, bool(text_s), bool(text_i))
