"""The preprocessing protocol (docs/protocol.md, "Preprocessing", steps 1-5) as DuckDB SQL over the loaded clicks
(table ``ev``, :mod:`seqrec.data.sql_sources`): the out-of-core twin of :func:`seqrec.data.preprocess.preprocess`.

Every step is a group-by, a join or a window that DuckDB runs in bounded memory, spilling to its temporary
directory, so no step holds the clicks in Python. Each step decides as the numpy path decides, to the bit: clicks
in session order are ordered by (session id, time, position in the file), sessions by (start, session id); the time
boundaries are the same float64 sums; ties in the most clicked category go to the category met first in that
order. The one big sort puts the training clicks in the dataset's order (``out_train``); the vocabulary, the
items' clicks and train_tr's items are read from it. What is left for the writer (:mod:`seqrec.data.outofcore`):
``out_train``/``sess_train`` (train_full, with ``tr`` marking train_tr), ``out_valid``/``sess_valid`` and
``out_test``/``sess_test``, clicks (raw item ``i``, time ``t``) and sessions (id ``s``, clicks ``n``) in order, and
``vocab`` (raw ids ``i`` in dense-id order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np

from seqrec.data.dataset import SPLITS
from seqrec.data.formats.common import DataFormatError
from seqrec.data.preprocess import PreprocessConfig
from seqrec.data.sql_common import Loaded, double, one

DAY = 86_400.0
Con = duckdb.DuckDBPyConnection


@dataclass
class Plan:
    """What the SQL steps found: the raw figures, the time boundaries and the size of each split."""

    raw: dict
    test_start: float = 0.0
    valid_start: float = 0.0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    n_items: int = 0
    category: np.ndarray | None = None  # each item's category (raw YooChoose only)


def filter_clicks(con: Con, loaded: Loaded, min_support: int, min_length: int, label: str) -> dict:
    """Protocol step 1 (one pass, as the numpy path: sessions of ``min_length`` clicks, items clicked
    ``min_support`` times in them, then sessions still that long): the view ``kept`` (the clicks on those items,
    ``p`` their position in the file, ``t`` in seconds) and ``ks`` (the sessions left: clicks, start, end); returns
    the raw figures."""
    con.execute("CREATE TABLE sess AS SELECT s, count(*) AS n FROM ev GROUP BY s")
    con.execute(f"CREATE TABLE support AS SELECT ev.i, count(*) FILTER (WHERE sess.n >= {min_length}) AS n, "
                f"count(*) AS clicks, min(ev.t) AS lo, max(ev.t) AS hi FROM ev JOIN sess USING (s) GROUP BY ev.i")
    clicks, t_min, t_max, items, supported = one(con, f"SELECT sum(clicks), min(lo), max(hi), count(*), "
                                                       f"count(*) FILTER (WHERE n >= {min_support}) FROM support")
    sessions, short = one(con, "SELECT count(*), count(*) FILTER (WHERE n < 2) FROM sess")
    raw = {"clicks": int(clicks), "skipped_lines": 0, "time_min": float(t_min) / loaded.scale,
           "time_max": float(t_max) / loaded.scale, "reader": loaded.info, "sessions": int(sessions),
           "length1_sessions": int(short), "items": int(items), "items_under_support": int(items - supported)}
    con.execute(f"CREATE TABLE supported AS SELECT i FROM support WHERE n >= {min_support}")
    category = ", c" if loaded.categories else ""
    con.execute(f"CREATE VIEW kept AS SELECT rowid AS p, s, i, t / {double(loaded.scale)} AS t{category} FROM ev "
                f"WHERE i IN (SELECT i FROM supported)")
    con.execute(f"CREATE TABLE ks AS SELECT s, count(*) AS n, min(t) AS t0, max(t) AS t1 FROM kept "
                f"WHERE s IN (SELECT s FROM sess WHERE n >= {min_length}) GROUP BY s HAVING count(*) >= {min_length}")
    for table in ("sess", "support"):
        con.execute(f"DROP TABLE {table}")
    if one(con, "SELECT count(*) FROM ks")[0] == 0:
        raise DataFormatError(f"{label}: no sessions left after filtering (min_item_support={min_support}, "
                              f"min_session_length={min_length})")
    return raw


def split_train(con: Con, plan: Plan, test_days: float, val_days: float, fraction: int, label: str) -> None:
    """Protocol steps 2 and 4: test sessions end in the last ``test_days``; the most recent 1/``fraction`` of the
    others (by start, then session id) are the training sessions, ``train_s`` with ``r`` their rank in the
    dataset's order (start, then id); the validation boundary is ``val_days`` before their end."""
    plan.test_start = float(one(con, "SELECT max(t1) FROM ks")[0]) - test_days * DAY
    before = f"t1 < {double(plan.test_start)}"
    n_train = one(con, f"SELECT count(*) FROM ks WHERE {before}")[0]
    keep = n_train - max(1, n_train // fraction) if fraction > 1 else -1
    con.execute(f"CREATE TABLE train_s AS SELECT * FROM (SELECT s, n, t1, row_number() OVER (ORDER BY t0, s) AS r "
                f"FROM ks WHERE {before}) WHERE r > {keep}")
    if one(con, "SELECT count(*) FROM train_s")[0] == 0:
        raise DataFormatError(f"{label}: the split leaves no training sessions (test_days={test_days})")
    plan.valid_start = float(one(con, "SELECT max(t1) FROM train_s")[0]) - val_days * DAY


def _sort(con: Con, table: str, query: str, source: str) -> None:
    """``CREATE TABLE table AS query`` (a sort), then drop ``source``: a join and the sort of its result run as two
    statements, so that each has the whole memory limit (one statement of both ran out of memory on 300 M events
    at 2.8 GiB; two run within it)."""
    con.execute(f"CREATE TABLE {table} AS {query}")
    con.execute(f"DROP TABLE {source}")


def sort_train(con: Con, plan: Plan, categories: bool) -> None:
    """Protocol step 5 for train_full and train_tr: their clicks in the dataset's order (sessions by start then
    id, clicks by time then position in the file) and sessions in that order; the vocabulary (dense ids by raw id)
    and train_tr's items from them."""
    tr = f"t1 < {double(plan.valid_start)}"
    category = ", c" if categories else ""
    con.execute(f"CREATE TABLE train_c AS SELECT x.r, k.t, k.p, k.i, x.{tr} AS tr{category} "
                f"FROM kept k JOIN (SELECT s, r, t1 FROM train_s) x USING (s)")
    _sort(con, "out_train", f"SELECT i, t, tr{category} FROM train_c ORDER BY r, t, p", "train_c")
    con.execute(f"CREATE TABLE sess_train AS SELECT s, n, {tr} AS tr FROM train_s ORDER BY r")
    con.execute("CREATE TABLE vocab AS SELECT i, count(*) AS n FROM out_train GROUP BY i ORDER BY i")
    con.execute("CREATE TABLE vocab_tr AS SELECT DISTINCT i FROM out_train WHERE tr")


def _filtered_part(con: Con, part: str, sessions: str, vocabulary: str, min_length: int) -> None:
    """Protocol step 3 for one part (its sessions: ``sessions``): its clicks on ``vocabulary`` items and its
    sessions still ``min_length`` long, in the dataset's order (``out_{part}``, ``sess_{part}``)."""
    con.execute(f"CREATE TABLE {part}_c AS SELECT p, s, i, t FROM late WHERE s IN ({sessions}) "
                f"AND i IN (SELECT i FROM {vocabulary})")
    con.execute(f"CREATE TABLE {part}_s AS SELECT s, count(*) AS n, min(t) AS t0 FROM {part}_c GROUP BY s "
                f"HAVING count(*) >= {min_length}")
    con.execute(f"CREATE TABLE {part}_j AS SELECT x.t0, c.s, c.t, c.p, c.i FROM {part}_c c JOIN {part}_s x USING (s)")
    _sort(con, f"out_{part}", f"SELECT i, t FROM {part}_j ORDER BY t0, s, t, p", f"{part}_j")
    con.execute(f"CREATE TABLE sess_{part} AS SELECT s, n FROM {part}_s ORDER BY t0, s")
    con.execute(f"DROP TABLE {part}_c")
    con.execute(f"DROP TABLE {part}_s")


def split_parts(con: Con, plan: Plan, min_length: int, label: str, params: str) -> None:
    """Protocol step 3: valid (filtered to train_tr's items) and test (filtered to the vocabulary), from the clicks
    of the sessions that end after the validation boundary; fails like the numpy path when a part is empty."""
    con.execute(f"CREATE TABLE late AS SELECT p, s, i, t FROM kept "
                f"WHERE s IN (SELECT s FROM ks WHERE t1 >= {double(plan.valid_start)})")
    _filtered_part(con, "test", f"SELECT s FROM ks WHERE t1 >= {double(plan.test_start)}", "vocab", min_length)
    _filtered_part(con, "valid", f"SELECT s FROM train_s WHERE t1 >= {double(plan.valid_start)}", "vocab_tr",
                   min_length)
    sizes = {"train_full": ("sess_train", "true", "SELECT count(*) FROM vocab"),
             "train_tr": ("sess_train", "tr", "SELECT count(*) FROM vocab_tr"),
             "valid": ("sess_valid", "true", "SELECT count(DISTINCT i) FROM out_valid"),
             "test": ("sess_test", "true", "SELECT count(DISTINCT i) FROM out_test")}
    for part in SPLITS:
        table, rows, items = sizes[part]
        clicks, sessions = one(con, f"SELECT sum(n), count(*) FROM {table} WHERE {rows}")
        if not sessions:
            raise DataFormatError(f"{label}: the split leaves no {part} sessions ({params}); expected data "
                                  f"spanning more days")
        plan.counts[part] = {"clicks": int(clicks), "sessions": int(sessions),
                             "predictions": int(clicks) - int(sessions), "items": int(one(con, items)[0])}
    plan.n_items = plan.counts["train_full"]["items"]
    con.execute("DROP VIEW kept")
    for table in ("ev", "supported", "ks", "train_s", "late", "vocab_tr"):
        con.execute(f"DROP TABLE {table}")


def categories(con: Con) -> np.ndarray:
    """Each vocabulary item's most clicked category in training (dense-id order); a tie goes to the category met
    first in session order (session id, time, position), as the numpy path's stable sort of first appearances."""
    con.execute("CREATE TABLE best AS SELECT i, c FROM (SELECT i, c, n, max(n) OVER (PARTITION BY i) AS top "
                "FROM (SELECT i, c, count(*) AS n FROM out_train GROUP BY i, c)) WHERE n = top")
    tied = "SELECT i, c FROM best WHERE i IN (SELECT i FROM best GROUP BY i HAVING count(*) > 1)"
    con.execute(f"CREATE TABLE firsts AS SELECT k.i, k.c, min((k.s, k.t, k.p)) AS first FROM kept k JOIN ({tied}) "
                f"USING (i, c) WHERE k.s IN (SELECT s FROM train_s) GROUP BY k.i, k.c")
    names = con.execute("SELECT b.c FROM best b LEFT JOIN firsts f USING (i, c) "
                        "QUALIFY row_number() OVER (PARTITION BY b.i ORDER BY f.first NULLS LAST) = 1 "
                        "ORDER BY b.i").fetchnumpy()["c"]
    con.execute("DROP TABLE best")
    con.execute("DROP TABLE firsts")
    return np.asarray(names, dtype=object)


def item_table(con: Con, loaded: Loaded, category: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw id of each dense id 1..n (int64, or text as ``str``), its category (``"0"`` without categories) and
    its training clicks."""
    table = con.execute("SELECT i, n FROM vocab ORDER BY i").fetchnumpy()
    raw = np.asarray(table["i"]).astype(str) if loaded.text_items else np.asarray(table["i"], dtype=np.int64)
    names = np.full(len(raw), "0", dtype=object) if category is None else category
    return raw, names, np.asarray(table["n"], dtype=np.int64)


def run_protocol(con: Con, loaded: Loaded, cfg: PreprocessConfig, label: str) -> Plan:
    """Steps 1-5 over ``ev``; returns the figures of ``stats.json`` (the ordered tables stay for the writer)."""
    plan = Plan(filter_clicks(con, loaded, cfg.min_item_support, cfg.min_session_length, label))
    split_train(con, plan, cfg.test_days, cfg.val_days, cfg.fraction, label)
    sort_train(con, plan, loaded.categories)
    plan.category = categories(con) if loaded.categories else None
    params = f"test_days={cfg.test_days}, val_days={cfg.val_days}, fraction={cfg.fraction}"
    split_parts(con, plan, cfg.min_session_length, label, params)
    return plan
