"""Public session datasets in their published CSV layout: DIGINETICA and RetailRocket."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec.data.formats.common import (
    INT,
    LABEL,
    UNSIGNED_INT,
    Clicks,
    Field,
    ReadOptions,
    check_file,
    event_filter,
    events_to_keep,
    make_clicks,
    nonempty,
    read_delimited,
    read_header,
    to_numpy,
)

DIGINETICA_EVENTS = ("view",)
DIGINETICA_FIELDS = (
    Field("session", "session_id", pa.int64(), INT, "an integer session_id"),
    Field("item", "item_id", pa.int64(), INT, "an integer item_id"),
    Field("timeframe", "timeframe", pa.int64(), UNSIGNED_INT,
          "an integer timeframe >= 0 (milliseconds since the day's start)"),
    Field("day", "eventdate", pa.date32(), r"\d{4}-\d\d-\d\d", "an eventdate like 2016-05-09"),
)
RETAILROCKET_EVENTS = ("view", "addtocart", "transaction")
RETAILROCKET_FIELDS = (
    Field("time", "timestamp", pa.int64(), UNSIGNED_INT, "an integer timestamp >= 0 in milliseconds"),
    Field("visitor", "visitorid", pa.int64(), INT, "an integer visitorid"),
    Field("event", "event", LABEL, "|".join(RETAILROCKET_EVENTS), "an event view, addtocart or transaction"),
    Field("item", "itemid", pa.int64(), INT, "an integer itemid"),
)


def read_diginetica(path: Path, options: ReadOptions) -> Clicks:
    """``train-item-views.csv``: ``session_id;user_id;item_id;timeframe;eventdate``; every row is a view.

    A click's time is its eventdate (a UTC day) plus timeframe milliseconds.
    """
    check_file(path)
    events_to_keep(options.events, DIGINETICA_EVENTS, DIGINETICA_EVENTS, "diginetica")
    header = read_header(path, ";", DIGINETICA_FIELDS)
    table, skipped = read_delimited(path, DIGINETICA_FIELDS, ";", header, options.on_bad_lines)
    table = nonempty(table, path)
    days = to_numpy(table["day"].cast(pa.int32())).astype(np.float64)
    time = days * 86_400.0 + to_numpy(table["timeframe"]) / 1000.0
    return make_clicks(table["session"], table["item"], time, skipped, {"events": list(DIGINETICA_EVENTS)})


def cut_sessions(user: np.ndarray, time: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Order events by (user, time) and number sessions 1.. : a session ends where the user changes or
    more than ``gap`` seconds pass between two events. Returns the order and each ordered event's session."""
    order = np.lexsort((time, user))
    user, time = user[order], time[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (time[1:] - time[:-1] > gap)
    return order, np.cumsum(new, dtype=np.int64)


def read_retailrocket(path: Path, options: ReadOptions) -> Clicks:
    """``events.csv``: ``timestamp,visitorid,event,itemid,transactionid`` (ms timestamps); sessions are cut
    from each visitor's kept events at gaps of more than ``options.session_gap`` seconds."""
    check_file(path)
    keep = events_to_keep(options.events, ("view",), RETAILROCKET_EVENTS, "retailrocket")
    header = read_header(path, ",", RETAILROCKET_FIELDS)
    table, skipped = read_delimited(path, RETAILROCKET_FIELDS, ",", header, options.on_bad_lines)
    table = nonempty(table.filter(event_filter(table["event"], keep)), path, f"{'/'.join(keep)} events")
    time = to_numpy(table["time"]) / 1000.0
    order, session = cut_sessions(to_numpy(table["visitor"]), time, options.session_gap)
    item = pc.take(table["item"], pa.array(order))
    info = {"events": list(keep), "session_gap_s": options.session_gap}
    return make_clicks(pa.array(session), item, time[order], skipped, info)
