"""YooChoose files: raw clicks and buys (``.dat``, no header) and the prepared TSV format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from seqrec.data.formats.common import (
    ANY,
    INT,
    ISO_UTC,
    LABEL,
    UNSIGNED_FLOAT,
    Clicks,
    DataFormatError,
    Field,
    check_file,
    first_line,
    make_clicks,
    nonempty,
    read_delimited,
    read_header,
    to_numpy,
)

_TIME = Field("time", "Timestamp", pa.timestamp("ms", tz="UTC"), ISO_UTC,
              "an ISO-8601 UTC Timestamp like 2014-04-07T10:51:09.277Z")
RAW_CLICKS_FIELDS = (
    Field("session", "SessionID", pa.int64(), INT, "an integer SessionID"),
    _TIME,
    Field("item", "ItemID", pa.int64(), INT, "an integer ItemID"),
    Field("category", "Category", LABEL, ANY, "a Category (0, S, 1-12 or a brand id)"),
)
_RAW_BUYS = (
    Field("session", "SessionID", pa.int64(), INT, "an integer SessionID"),
    _TIME,
    Field("item", "ItemID", pa.int64(), INT, "an integer ItemID"),
    Field("price", "Price", pa.int64(), INT, "an integer Price"),
    Field("quantity", "Quantity", pa.int64(), INT, "an integer Quantity"),
)
PREPARED_FIELDS = (
    Field("session", "SessionId", pa.int64(), INT, "an integer SessionId"),
    Field("item", "ItemId", pa.int64(), INT, "an integer ItemId"),
    Field("time", "Time", pa.float64(), UNSIGNED_FLOAT, "a unix Time in seconds (>= 0)"),
)


@dataclass
class Buys:
    """Buy events of the raw YooChoose buys file."""

    session: np.ndarray
    item: np.ndarray
    time: np.ndarray
    price: np.ndarray
    quantity: np.ndarray
    skipped_lines: int = 0


def detect_format(path: str | Path) -> str:
    """Return ``"prepared"`` for the tab-separated format with a header, ``"yoochoose"`` otherwise."""
    path = Path(path)
    check_file(path)
    first = first_line(path)
    return "prepared" if "\t" in first or first.startswith("SessionId") else "yoochoose"


def _millis_to_seconds(column: pa.ChunkedArray) -> np.ndarray:
    return to_numpy(column.cast(pa.int64())) / 1000.0


def read_prepared(path: Path, on_bad_lines: str) -> Clicks:
    """The prepared TSV (``SessionId\\tItemId\\tTime``, unix seconds)."""
    check_file(path)
    header = read_header(path, "\t", PREPARED_FIELDS)
    table, skipped = read_delimited(path, PREPARED_FIELDS, "\t", header, on_bad_lines)
    if table.num_rows == 0:
        raise DataFormatError(f"{path}:2: no click rows after the header")
    return make_clicks(table["session"], table["item"], to_numpy(table["time"]), skipped)


def read_raw_clicks(path: Path, on_bad_lines: str) -> Clicks:
    """Raw YooChoose clicks (``SessionID,Timestamp,ItemID,Category``, no header)."""
    check_file(path)
    table, skipped = read_delimited(path, RAW_CLICKS_FIELDS, ",", None, on_bad_lines)
    table = nonempty(table, path)
    time = _millis_to_seconds(table["time"])
    categories = table["category"].combine_chunks()  # one dictionary for all blocks
    table = table.drop_columns(["time", "category"])
    clicks = make_clicks(table["session"], table["item"], time, skipped)
    clicks.category = categories.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    clicks.categories = categories.dictionary.to_pylist()
    return clicks


def read_buys(path: str | Path, on_bad_lines: str = "error") -> Buys:
    """Read the raw YooChoose buys file (``SessionID,Timestamp,ItemID,Price,Quantity``)."""
    path = Path(path)
    check_file(path)
    table, skipped = read_delimited(path, _RAW_BUYS, ",", None, on_bad_lines)
    return Buys(
        session=to_numpy(table["session"]),
        item=to_numpy(table["item"]),
        time=_millis_to_seconds(table["time"]),
        price=to_numpy(table["price"]),
        quantity=to_numpy(table["quantity"]),
        skipped_lines=skipped,
    )
