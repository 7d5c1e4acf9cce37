"""Readers for YooChoose click files: raw ``.dat`` clicks and buys, and the prepared TSV format.

Files are parsed with pyarrow's multi-threaded CSV reader straight into typed columns. When a file
does not parse, a streaming scan finds the first offending line so that the error names the file,
the line and what was expected. With ``on_bad_lines="skip"`` malformed rows are dropped and counted.
"""

from __future__ import annotations

import bz2
import gzip
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

PREPARED_HEADER = ("SessionId", "ItemId", "Time")

_INT = r"-?\d+"
_FLOAT = r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"
_CATEGORY = r"[^,]+"

# (column name, arrow type, regex, what the error message calls it)
_RAW_CLICKS = (
    ("session", pa.int64(), _INT, "an integer SessionID"),
    ("time", pa.timestamp("ms", tz="UTC"), _ISO, "an ISO-8601 UTC Timestamp like 2014-04-07T10:51:09.277Z"),
    ("item", pa.int64(), _INT, "an integer ItemID"),
    ("category", pa.string(), _CATEGORY, "a Category (0, S, 1-12 or a brand id)"),
)
_RAW_BUYS = (
    ("session", pa.int64(), _INT, "an integer SessionID"),
    ("time", pa.timestamp("ms", tz="UTC"), _ISO, "an ISO-8601 UTC Timestamp like 2014-04-07T10:51:09.277Z"),
    ("item", pa.int64(), _INT, "an integer ItemID"),
    ("price", pa.int64(), _INT, "an integer Price"),
    ("quantity", pa.int64(), _INT, "an integer Quantity"),
)
_PREPARED = (
    ("session", pa.int64(), _INT, "an integer SessionId"),
    ("item", pa.int64(), _INT, "an integer ItemId"),
    ("time", pa.float64(), _FLOAT, "a unix Time in seconds"),
)


class DataFormatError(ValueError):
    """A data file that cannot be read as the expected format; the message names file and line."""


@dataclass
class Clicks:
    """Click events as flat columns (one entry per click, in file order)."""

    session: np.ndarray  # int64 raw session ids
    item: np.ndarray  # int64 raw item ids
    time: np.ndarray  # float64 unix seconds
    category: np.ndarray | None = None  # int32 codes into ``categories`` (raw format only)
    categories: list[str] | None = None
    skipped_lines: int = 0

    def __len__(self) -> int:
        return len(self.session)


@dataclass
class Buys:
    """Buy events of the raw YooChoose buys file."""

    session: np.ndarray
    item: np.ndarray
    time: np.ndarray
    price: np.ndarray
    quantity: np.ndarray
    skipped_lines: int = 0


def _open_text(path: Path) -> io.TextIOBase:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _first_line(path: Path) -> str:
    with _open_text(path) as f:
        return f.readline().rstrip("\r\n")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    if not path.is_file():
        raise DataFormatError(f"{path}: not a regular file")
    if path.stat().st_size == 0 or _first_line(path) == "":
        raise DataFormatError(f"{path}:1: empty file, expected click rows")


def detect_format(path: str | Path) -> str:
    """Return ``"prepared"`` for the tab-separated format with a header, ``"raw"`` otherwise."""
    path = Path(path)
    _check_file(path)
    first = _first_line(path)
    return "prepared" if "\t" in first or first.startswith("SessionId") else "raw"


def _scan_lines(path: Path, spec: tuple, sep: str, skip_header: bool) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, problem)`` for each malformed line, streaming the file."""
    patterns = [re.compile(regex) for _, _, regex, _ in spec]
    n_cols = len(spec)
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if skip_header and number == 1:
                continue
            fields = line.rstrip("\r\n").split(sep)
            if len(fields) != n_cols:
                yield number, f"expected {n_cols} columns, got {len(fields)}: {line.strip()[:80]!r}"
                continue
            for (_, _, _, what), pattern, value in zip(spec, patterns, fields, strict=True):
                if not pattern.fullmatch(value):
                    hint = " (a header line? this format has none)" if number == 1 and not skip_header else ""
                    yield number, f"expected {what}, got {value[:40]!r}{hint}"
                    break


def _raise_first_problem(path: Path, spec: tuple, sep: str, skip_header: bool, cause: Exception) -> None:
    for number, problem in _scan_lines(path, spec, sep, skip_header):
        raise DataFormatError(f"{path}:{number}: {problem}") from cause
    raise DataFormatError(f"{path}: cannot parse file: {cause}") from cause


def _read_table(path: Path, spec: tuple, sep: str, has_header: bool, on_bad_lines: str) -> tuple[pa.Table, int]:
    """Read ``path`` into a typed table; returns the table and the number of skipped lines."""
    if on_bad_lines not in ("error", "skip"):
        raise ValueError(f"on_bad_lines must be 'error' or 'skip', got {on_bad_lines!r}")
    names = [name for name, *_ in spec]
    read_opts = pacsv.ReadOptions(
        column_names=None if has_header else names, block_size=1 << 24, use_threads=True
    )
    include = list(PREPARED_HEADER) if has_header else names
    if on_bad_lines == "error":
        types = {col: typ for col, (_, typ, _, _) in zip(include, spec, strict=True)}
        convert = pacsv.ConvertOptions(column_types=types, include_columns=include)
        try:
            table = pacsv.read_csv(
                path, read_options=read_opts, parse_options=pacsv.ParseOptions(delimiter=sep),
                convert_options=convert,
            )
        except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
            _raise_first_problem(path, spec, sep, has_header, exc)
        table = table.rename_columns(names)
        skipped = 0
    else:
        bad_rows: list[int] = []

        def count_bad(_row: pacsv.InvalidRow) -> str:
            bad_rows.append(1)
            return "skip"

        strings = {col: pa.string() for col in include}
        convert = pacsv.ConvertOptions(column_types=strings, include_columns=include)
        parse = pacsv.ParseOptions(delimiter=sep, invalid_row_handler=count_bad)
        try:
            table = pacsv.read_csv(path, read_options=read_opts, parse_options=parse, convert_options=convert)
        except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
            _raise_first_problem(path, spec, sep, has_header, exc)
        table = table.rename_columns(names)
        valid = None
        for name, _, regex, _ in spec:
            ok = pc.fill_null(pc.match_substring_regex(table[name], f"^{regex}$"), False)
            valid = ok if valid is None else pc.and_(valid, ok)
        n_before = table.num_rows
        table = table.filter(valid)
        table = pa.table({name: table[name].cast(typ) for name, typ, _, _ in spec})
        skipped = len(bad_rows) + n_before - table.num_rows
    return table, skipped


def _timestamp_seconds(column: pa.ChunkedArray) -> np.ndarray:
    millis = column.cast(pa.int64()).to_numpy()
    return millis / 1000.0


def read_clicks(path: str | Path, on_bad_lines: str = "error") -> Clicks:
    """Read raw YooChoose clicks or the prepared TSV format (detected from the first line)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "prepared":
        header = tuple(_first_line(path).split("\t"))
        missing = [c for c in PREPARED_HEADER if c not in header]
        if missing:
            raise DataFormatError(
                f"{path}:1: expected a header with columns {'/'.join(PREPARED_HEADER)}, missing {missing}"
            )
        table, skipped = _read_table(path, _PREPARED, "\t", True, on_bad_lines)
        if table.num_rows == 0:
            raise DataFormatError(f"{path}:2: no click rows after the header")
        return Clicks(
            session=table["session"].to_numpy(),
            item=table["item"].to_numpy(),
            time=table["time"].to_numpy(),
            skipped_lines=skipped,
        )
    table, skipped = _read_table(path, _RAW_CLICKS, ",", False, on_bad_lines)
    if table.num_rows == 0:
        raise DataFormatError(f"{path}:1: no valid click rows")
    categories = table["category"].combine_chunks().dictionary_encode()
    return Clicks(
        session=table["session"].to_numpy(),
        item=table["item"].to_numpy(),
        time=_timestamp_seconds(table["time"]),
        category=categories.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        categories=categories.dictionary.to_pylist(),
        skipped_lines=skipped,
    )


def read_buys(path: str | Path, on_bad_lines: str = "error") -> Buys:
    """Read the raw YooChoose buys file (``SessionID,Timestamp,ItemID,Price,Quantity``)."""
    path = Path(path)
    _check_file(path)
    table, skipped = _read_table(path, _RAW_BUYS, ",", False, on_bad_lines)
    return Buys(
        session=table["session"].to_numpy(),
        item=table["item"].to_numpy(),
        time=_timestamp_seconds(table["time"]),
        price=table["price"].to_numpy(),
        quantity=table["quantity"].to_numpy(),
        skipped_lines=skipped,
    )


def concat_clicks(parts: list[Clicks]) -> Clicks:
    """One click table from several files of the same format (categories re-coded to one list)."""
    if len(parts) == 1:
        return parts[0]
    categories = None
    if all(p.category is not None for p in parts):
        categories = sorted({c for p in parts for c in p.categories})
        code = {c: i for i, c in enumerate(categories)}
        recoded = [np.array([code[c] for c in p.categories], dtype=np.int32)[p.category] for p in parts]
    return Clicks(
        session=np.concatenate([p.session for p in parts]),
        item=np.concatenate([p.item for p in parts]),
        time=np.concatenate([p.time for p in parts]),
        category=np.concatenate(recoded) if categories is not None else None,
        categories=categories,
        skipped_lines=sum(p.skipped_lines for p in parts),
    )
