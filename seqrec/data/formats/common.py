"""What every click-file reader shares: the ``Clicks`` table, read options, id encoding, text streams
and the delimited-text reader with its line-exact error messages.

Delimited files are parsed with pyarrow's multi-threaded CSV reader straight into typed columns.
When a file does not parse (or a required field is empty, or a number is negative where the field's
pattern has no minus sign: unix times), a streaming scan finds the first offending line so that the
error names the file, the line and what was expected. With ``on_bad_lines="skip"`` malformed rows,
negative times included, are dropped and counted.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from seqrec.configs import above, check_ranges, one_of, ranged

INT = r"-?\d+"
UNSIGNED_INT = r"\d+"  # a count or a unix time: never negative
UNSIGNED_FLOAT = r"(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
FLOAT = rf"-?{UNSIGNED_FLOAT}"
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"
ISO_ANY = r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?(Z|[+-]\d\d:?\d\d)?"
ANY = r".+"
ON_BAD_LINES = ("error", "skip")
LABEL = pa.dictionary(pa.int32(), pa.string())  # a column of few distinct texts (categories, event types)
TIME_UNITS = ("s", "ms", "iso")


class DataFormatError(ValueError):
    """A data file that cannot be read as the expected format; the message names file and line."""


@dataclass
class Clicks:
    """Click events as flat columns (one entry per click, in file order).

    Items are int32 codes into ``item_ids`` (the sorted distinct raw ids, integers or strings).
    Sessions are raw int64 ids, or, when the file's session ids are not integers, int64 codes
    into ``session_ids``.
    """

    session: np.ndarray
    item: np.ndarray
    time: np.ndarray  # float64 unix seconds
    item_ids: np.ndarray
    category: np.ndarray | None = None  # int32 codes into ``categories`` (raw YooChoose only)
    categories: list[str] | None = None
    skipped_lines: int = 0
    session_ids: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # what the reader found out (time unit, events kept, ...)

    def __len__(self) -> int:
        return len(self.session)

    @property
    def raw_items(self) -> np.ndarray:
        """The raw item id of each click."""
        return self.item_ids[self.item]

    @property
    def raw_sessions(self) -> np.ndarray:
        """The raw session id of each click."""
        return self.session if self.session_ids is None else self.session_ids[self.session]


@dataclass(frozen=True)
class ReadOptions:
    """How to read a click file (the ``preprocess`` parameters ``format`` .. ``session_gap``)."""

    on_bad_lines: str = ranged("error", one_of(*ON_BAD_LINES))
    columns: dict[str, str] = field(default_factory=dict)  # generic formats: role -> column name
    time_unit: str = ranged("", one_of("", *TIME_UNITS))  # generic formats: s, ms or iso ("" = s)
    sep: str = ""  # generic csv: field separator ("" = sniffed from the header)
    events: tuple[str, ...] = ()  # event types to keep (() = the format's click-like events)
    session_gap: float = ranged(1800.0, above(0))  # retailrocket: seconds of inactivity that end a session

    def __post_init__(self) -> None:
        check_ranges("ReadOptions", self)


def parse_columns(text: str) -> dict[str, str]:
    """``session=COL,item=COL,time=COL[,event=COL]`` -> ``{"session": COL, ...}``."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        role, sep, column = part.partition("=")
        if not sep or role.strip() not in ("session", "item", "time", "event") or not column.strip():
            raise ValueError(f"columns must look like session=COL,item=COL,time=COL[,event=COL], got {text!r}")
        out[role.strip()] = column.strip()
    missing = [r for r in ("session", "item", "time") if r not in out]
    if missing:
        raise ValueError(f"columns must name the {', '.join(missing)} column(s), got {text!r}")
    return out


def open_text(path: Path) -> io.TextIOBase:
    """A text stream of ``path``, decompressed by its suffix (.gz, .bz2, .zst)."""
    return io.TextIOWrapper(pa.input_stream(str(path), compression="detect"), encoding="utf-8",
                            errors="replace", newline="")


def first_line(path: Path) -> str:
    with open_text(path) as f:
        return f.readline().rstrip("\r\n")


def check_file(path: Path) -> None:
    """Fail with a one-line message for a missing, non-regular or empty file."""
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    if not path.is_file():
        raise DataFormatError(f"{path}: not a regular file")
    if path.stat().st_size == 0 or first_line(path) == "":
        raise DataFormatError(f"{path}:1: empty file, expected click rows")


Ids = tuple[np.ndarray, np.ndarray]  # (codes, the distinct values they index)


def sorted_codes(column: pa.ChunkedArray | pa.Array, index_type: pa.DataType | None = None) -> Ids:
    """Codes (int32 unless ``index_type``) into the sorted distinct values of ``column``, and those values
    (hash-based: only the distinct values are sorted)."""
    values = pc.unique(column)
    values = values.take(pc.sort_indices(values))
    codes = pc.index_in(column, value_set=values)
    index_type = index_type or pa.int32()
    chunks = codes.chunks if isinstance(codes, pa.ChunkedArray) else [codes]
    empty = np.zeros(0, index_type.to_pandas_dtype())
    codes = np.concatenate([empty] + [c.cast(index_type).to_numpy() for c in chunks])
    out = values.to_numpy(zero_copy_only=False)
    return codes, out if pa.types.is_integer(values.type) else out.astype(str)


def id_column(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Integer ids stay integers (int64); anything else becomes its text."""
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64())
    return column.cast(pa.string())


def to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        return column.to_numpy()
    return column.to_numpy(zero_copy_only=False)


def make_clicks(session: pa.ChunkedArray | pa.Array, item: pa.ChunkedArray | pa.Array, time: np.ndarray,
                skipped: int = 0, info: dict | None = None) -> Clicks:
    """A ``Clicks`` table from id columns (integers or strings) and unix-second times."""
    codes, item_ids = sorted_codes(id_column(item))
    session = id_column(session)
    session_ids = None
    if pa.types.is_integer(session.type):
        session_codes = to_numpy(session)
    else:
        session_codes, session_ids = sorted_codes(session, pa.int64())
    return Clicks(session=session_codes, item=codes, time=np.asarray(time, dtype=np.float64), item_ids=item_ids,
                  skipped_lines=skipped, session_ids=session_ids, info=info or {})


def event_filter(column: pa.ChunkedArray | pa.Array, keep: Sequence[str]) -> pa.ChunkedArray | pa.Array:
    """Boolean mask of the rows whose event type is one of ``keep``."""
    return pc.fill_null(pc.is_in(column.cast(pa.string()), value_set=pa.array(list(keep), pa.string())), False)


def events_to_keep(requested: Sequence[str], default: Sequence[str], known: Sequence[str] | None,
                   fmt: str) -> tuple[str, ...]:
    """The requested event types (or the format's default), checked against the format's known types."""
    keep = tuple(requested) or tuple(default)
    if known is not None:
        unknown = [e for e in keep if e not in known]
        if unknown:
            raise ValueError(f"events: {fmt} has event types {', '.join(known)}; got {', '.join(unknown)}")
    return keep


def unix_seconds(column: pa.ChunkedArray | pa.Array, unit: str) -> np.ndarray:
    """Float64 unix seconds of a numeric (``s``/``ms``), timestamp or ISO-8601 text column."""
    if pa.types.is_timestamp(column.type):
        return to_numpy(column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())) / 1000.0
    if unit == "iso":
        text = column.cast(pa.string())
        zoned = pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$")
        out = np.empty(len(text), dtype=np.float64)
        for mask, typ in ((zoned, pa.timestamp("ms", tz="UTC")), (pc.invert(zoned), pa.timestamp("ms"))):
            rows = np.flatnonzero(to_numpy(mask))
            if rows.size:
                out[rows] = to_numpy(text.filter(mask).cast(typ).cast(pa.int64())) / 1000.0
        return out
    seconds = to_numpy(column.cast(pa.float64()))
    return seconds / 1000.0 if unit == "ms" else seconds


@dataclass(frozen=True)
class Field:
    """One column of a delimited file: its name here, its header name, arrow type, pattern and description."""

    name: str
    source: str
    type: pa.DataType
    regex: str
    what: str


def _scan_lines(path: Path, fields: Sequence[Field], sep: str, header: list[str] | None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, problem)`` for each malformed line, streaming the file."""
    n_cols = len(header) if header is not None else len(fields)
    positions = [header.index(f.source) for f in fields] if header is not None else list(range(len(fields)))
    patterns = [re.compile(f.regex) for f in fields]
    with open_text(path) as stream:
        for number, line in enumerate(stream, start=1):
            if header is not None and number == 1:
                continue
            values = line.rstrip("\r\n").split(sep)
            if len(values) != n_cols:
                yield number, f"expected {n_cols} columns, got {len(values)}: {line.strip()[:80]!r}"
                continue
            for f, position, pattern in zip(fields, positions, patterns, strict=True):
                value = values[position]
                if not pattern.fullmatch(value):
                    hint = " (a header line? this format has none)" if number == 1 and header is None else ""
                    where = "" if re.search(rf"\b{re.escape(f.source)}\b", f.what) else f" in column {f.source}"
                    yield number, f"expected {f.what}{where}, got {value[:40]!r}{hint}"
                    break


def raise_first_problem(path: Path, fields: Sequence[Field], sep: str, header: list[str] | None,
                        cause: Exception | None) -> None:
    for number, problem in _scan_lines(path, fields, sep, header):
        raise DataFormatError(f"{path}:{number}: {problem}") from cause
    raise DataFormatError(f"{path}: cannot parse file: {cause}") from cause


def read_header(path: Path, sep: str, fields: Sequence[Field]) -> list[str]:
    """The header's column names; fails naming the columns that the format needs and the file lacks."""
    header = [name.strip().strip('"') for name in first_line(path).split(sep)]
    missing = [f.source for f in fields if f.source not in header]
    if missing:
        wanted = sep.join(f.source for f in fields)
        raise DataFormatError(f"{path}:1: expected a header with columns {wanted!r} ({sep!r}-separated), "
                              f"missing {missing}")
    return header


def _unsigned(f: Field) -> bool:
    """Whether ``f`` is a number whose pattern refuses a minus sign (a unix time: ``UNSIGNED_FLOAT``), so that
    the parsed column is checked for negative values too."""
    numeric = pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    return numeric and re.fullmatch(f.regex, "-1") is None


def _all_match(column: pa.ChunkedArray, regex: str) -> bool:
    """Whether every text value is non-empty and, for a pattern other than ``ANY``, matches it in full
    (for a dictionary column: every distinct value)."""
    if pa.types.is_dictionary(column.type):
        return all(_all_match(pa.chunked_array([chunk.dictionary]), regex) for chunk in column.chunks)
    if regex == ANY:
        return not pc.any(pc.equal(column, "")).as_py()
    return bool(pc.all(pc.match_substring_regex(column, f"^(?:{regex})$")).as_py())


def read_delimited(path: Path, fields: Sequence[Field], sep: str, header: list[str] | None,
                   on_bad_lines: str) -> tuple[pa.Table, int]:
    """Read the ``fields`` of a delimited file into a typed table named by ``Field.name``; returns the
    table and the number of skipped lines. ``header`` is the file's column names (None: no header line,
    ``fields`` are the columns in order)."""
    read_opts = pacsv.ReadOptions(column_names=None if header else [f.source for f in fields],
                                  block_size=1 << 24, use_threads=True)
    include = [f.source for f in fields]
    if on_bad_lines == "error":
        convert = pacsv.ConvertOptions(column_types={f.source: f.type for f in fields}, include_columns=include)
        try:
            table = pacsv.read_csv(path, read_options=read_opts, parse_options=pacsv.ParseOptions(delimiter=sep),
                                   convert_options=convert)
        except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
            raise_first_problem(path, fields, sep, header, exc)
        texts = (pa.string(), LABEL)
        if any(table[f.source].null_count or (f.type in texts and not _all_match(table[f.source], f.regex))
               or (_unsigned(f) and pc.any(pc.less(table[f.source], 0)).as_py())
               for f in fields):  # an empty, unexpected or negative field: find and name its line
            raise_first_problem(path, fields, sep, header, None)
        return table.rename_columns([f.name for f in fields]), 0
    bad_rows: list[int] = []

    def count_bad(_row: pacsv.InvalidRow) -> str:
        bad_rows.append(1)
        return "skip"

    convert = pacsv.ConvertOptions(column_types={f.source: pa.string() for f in fields}, include_columns=include,
                                   strings_can_be_null=True)
    parse = pacsv.ParseOptions(delimiter=sep, invalid_row_handler=count_bad)
    try:
        table = pacsv.read_csv(path, read_options=read_opts, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise_first_problem(path, fields, sep, header, exc)
    valid = None
    for f in fields:
        ok = pc.fill_null(pc.match_substring_regex(table[f.source], f"^(?:{f.regex})$"), False)
        valid = ok if valid is None else pc.and_(valid, ok)
    n_before = table.num_rows
    table = table.filter(valid)
    table = pa.table({f.name: table[f.source].cast(f.type) for f in fields})
    return table, len(bad_rows) + n_before - table.num_rows


def nonempty(table: pa.Table, path: Path, what: str = "click rows") -> pa.Table:
    if table.num_rows == 0:
        raise DataFormatError(f"{path}: no valid {what}")
    return table
