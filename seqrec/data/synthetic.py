"""A generator of YooChoose-format click and buy files, the project's built-in data.

The marginals imitate the RecSys Challenge 2015 clicks (and the real sample the project is checked
against, ``benchmarks/bench_generator.py``): long-tailed (Zipf-like) item popularity, heavy-tailed session
lengths, YooChoose's category codes (``0``, ``S``, ``1``..``12`` and 8-10 digit brand ids), a daily
rhythm, lognormal dwell times, and a few percent of sessions that buy.

What decides which model wins is the sequential structure, and it is planted the way shoppers make it:

* every session has a hidden *intent* (a set of related items; an item belongs to several intents,
  popular items to many), so a click says little about the intent on its own and the whole session
  says more; intents drift within a session (to a neighbouring intent, to another intent of the
  current item, back to the session's first intent, or anywhere);
* the next click repeats the current item, goes back to an earlier item of the session, moves one or
  two places along the current intent's listing in the session's direction (so the order of the last
  clicks, not the last item alone, tells the next one; an item's neighbours differ between its
  intents), or picks an item of the intent by popularity;
* part of the catalogue is released during the period, so later days click items that earlier days
  never saw (a time split has cold items, as real data has);
* buys carry a learnable signal: a session buys with a probability that grows with its length, its
  repeat clicks, its dwell times, the buy propensity of its items (by category and item) and the
  evening hours; it buys mostly items it clicked, preferring repeated, long-viewed and late ones.

The data continues in time: a :class:`LaterConfig` writes the days after a dataset (:func:`generate_later`), from
the same catalogue plus items released during them, with the items' popularity drifting day by day (the ``monitor``
step's built-in later clicks).

The walk is vectorised over sessions (one numpy step per click position) and files are written chunk
by chunk, so memory does not grow with the output size.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

YOOCHOOSE_ITEMS = 52_739
YOOCHOOSE_CLICKS = 33_003_944
_START = np.datetime64("2014-04-01T00:00:00", "s").astype(np.int64)
# Relative click volume per hour of day (UTC), shaped like an e-commerce daily curve.
_HOURLY = np.array([3, 2, 1, 1, 1, 2, 4, 6, 8, 9, 9, 9, 9, 9, 9, 9, 10, 11, 12, 12, 11, 9, 7, 5], float)
# Buy-logit shift per hour of day: evenings buy more, nights less.
_HOURLY_BUY = np.array([-.4, -.5, -.5, -.5, -.5, -.4, -.3, -.2, -.1, 0, 0, 0, 0, 0, 0, 0, .1, .2, .3, .4, .4, .3,
                        .1, -.2])
_CATEGORY_BUY = {"0": -0.4, "S": 0.6, "numbered": 0.0, "brand": 0.4}  # buy-propensity shift per category kind
_RELEASE_REJECTIONS = 6  # redraws of an item not yet released before the intent's evergreen item is taken
_LATER_STREAM = 1  # the later period draws from (seed, _LATER_STREAM): the earlier period's draws stay as they were


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of a generated dataset."""

    n_clicks: int = 100_000
    n_items: int = 0  # 0: scaled from n_clicks (3,876 for 100,000 clicks, 52,739 at full YooChoose size)
    days: int = 0  # 0: scaled from n_clicks (14 days for small data, 183 at full size)
    seed: int = 0
    popularity_exponent: float = 1.8  # Zipf-Mandelbrot exponent of the items' base popularity ...
    popularity_offset: float = 80.0  # ... and its rank offset (a flatter head than a pure Zipf law)
    intent_size: int = 40  # mean number of items per intent
    memberships_base: float = 0.6  # mean extra intents of an item (it has one primary intent) ...
    memberships_popular: float = 5.0  # ... plus this many for the most popular item, fewer for less popular ones
    p_repeat: float = 0.18  # the next click repeats the current item
    p_back: float = 0.05  # ... goes back to an earlier item of the session
    p_drift: float = 0.12  # ... moves to another intent (and picks an item of it)
    p_follow: float = 0.55  # ... moves along the intent's listing in the session's direction
    new_item_share: float = 0.3  # share of the items released during the period (not there from the start)
    buy_rate: float = 0.055  # share of sessions with a buy
    length_log_mean: float = 0.65  # session lengths are 1 + floor(lognormal(this, 0.9)): a mean near 3.6
    chunk_sessions: int = 250_000

    def resolved_items(self) -> int:
        if self.n_items:
            return self.n_items
        scaled = YOOCHOOSE_ITEMS * (self.n_clicks / YOOCHOOSE_CLICKS) ** 0.45
        return int(np.clip(scaled, 500, YOOCHOOSE_ITEMS))

    def resolved_days(self) -> int:
        if self.days:
            return self.days
        return int(np.clip(183 * (self.n_clicks / YOOCHOOSE_CLICKS) ** 0.5, 14, 183))


@dataclass(frozen=True)
class LaterConfig(SyntheticConfig):
    """The period right after a generated dataset (the fields it shares with :class:`SyntheticConfig` name that
    dataset): the same catalogue and shoppers for ``later_days`` more days, at the same clicks per day, while
    new items are released and the items' popularity drifts away from what the earlier period knew."""

    later_days: int = 4
    later_new_item_share: float = 0.15  # items released during the later period, as a share of the catalogue
    popularity_drift: float = 1.0  # sd of each item's log-popularity change by the last later day (linear in time)

    @classmethod
    def after(cls, cfg: SyntheticConfig, **changes) -> LaterConfig:
        """The later period of the dataset that ``cfg`` generates."""
        return cls(**{**asdict(cfg), **changes})

    def clicks_per_day(self) -> float:
        return self.n_clicks / self.resolved_days()


class _Catalogue:
    """Items (popularity, release time, category, buy propensity, dwell) and their intent memberships.

    A membership row is one (intent, item) pair; rows are sorted by intent, and within an intent in a
    random listing order that sessions browse one or two places at a time, each session in its own
    direction. The walk's state is a row: the current item *and* the intent it was clicked in.
    """

    def __init__(self, cfg: SyntheticConfig, span: float, rng: np.random.Generator):
        n = cfg.resolved_items()
        self.n_items = n
        self.raw_ids = 214_500_000 + np.sort(rng.choice(max(900_000, 4 * n), size=n, replace=False))
        weight = rng.permutation(1.0 / (np.arange(1, n + 1) + cfg.popularity_offset) ** cfg.popularity_exponent)
        # Memberships: one primary intent per item, more for popular items (clicked across intents).
        extra = rng.poisson(cfg.memberships_base + cfg.memberships_popular * (weight / weight.max()) ** 0.5)
        count = 1 + extra
        n_intents = max(4, int(count.sum() // cfg.intent_size))
        self.n_intents = n_intents
        item = np.repeat(np.arange(n), count)
        primary = rng.permutation(np.arange(n) % n_intents)  # no intent is empty
        first = np.zeros(len(item), dtype=bool)
        first[np.concatenate([[0], np.cumsum(count)[:-1]])] = True
        near = (primary[item] + rng.integers(-4, 5, size=len(item))) % n_intents  # related intents are neighbours
        anywhere = rng.integers(0, n_intents, size=len(item))
        intent = np.where(first, primary[item], np.where(rng.random(len(item)) < 0.5, near, anywhere))
        row_weight = weight[item] * rng.lognormal(0.0, 0.7, size=len(item)) * np.where(first, 1.0, 0.5)
        order = np.lexsort((rng.random(len(item)), intent))  # within an intent: a random listing order
        self.weight = weight
        self.list_rows(item[order], intent[order])
        self.weigh(row_weight[order])
        # Release times: the most popular percent and each intent's top item are there from the start.
        released_late = (rng.random(n) < cfg.new_item_share) & (weight < np.quantile(weight, 0.99))
        released_late[self.row_item[self.top]] = False
        self.release = np.where(released_late, _START + span * rng.uniform(0.02, 1.0, size=n), -np.inf)
        # Categories in YooChoose's code space, and what they do to buying.
        kind = rng.choice(4, size=n, p=[0.55, 0.1, 0.25, 0.1])
        numbered = rng.integers(1, 13, size=n).astype(str)
        brands = rng.integers(10_000_000, 9_999_999_999, size=max(1, n // 200)).astype(str)
        brand = brands[rng.integers(0, len(brands), size=n)]
        self.category = np.where(kind == 0, "0", np.where(kind == 1, "S", np.where(kind == 2, numbered, brand)))
        shift = np.array([_CATEGORY_BUY[k] for k in ("0", "S", "numbered", "brand")])[kind]
        self.buy_logit = shift + rng.normal(0.0, 0.8, size=n)
        # Items people look at longer are also bought more often.
        self.dwell = np.exp(0.3 * self.buy_logit + rng.normal(0.0, 0.3, size=n))
        self.price = (np.round(rng.lognormal(6.5, 0.9, size=n) / 10) * 10 + 10).astype(np.int64)

    def list_rows(self, row_item: np.ndarray, row_intent: np.ndarray) -> None:
        """Take the membership rows (sorted by intent, in listing order) and index them by intent and by item."""
        self.row_item, self.row_intent = row_item, row_intent
        self.size = np.bincount(row_intent, minlength=self.n_intents)
        self.start = np.concatenate([[0], np.cumsum(self.size)])
        # Rows of each item (to pivot to another intent of the current item).
        self.item_rows = np.argsort(row_item, kind="stable")
        self.item_start = np.concatenate([[0], np.cumsum(np.bincount(row_item, minlength=self.n_items))])

    def weigh(self, row_weight: np.ndarray, eligible: np.ndarray | None = None) -> None:
        """Set the rows' popularity: the search keys of ``draw`` and each intent's most popular row among the
        ``eligible`` rows (default: all; the fallback of ``draw``, so it must be released from the start)."""
        self.row_weight = row_weight
        ranked = -row_weight if eligible is None else np.where(eligible, -row_weight, np.inf)
        by_weight = np.lexsort((ranked, self.row_intent))
        self.top = by_weight[self.start[:-1]]  # each intent's most popular row
        cs = np.cumsum(row_weight)
        mass = np.add.reduceat(row_weight, self.start[:-1])
        before = cs[self.start[:-1]] - row_weight[self.start[:-1]]
        seg = self.row_intent
        # intent index + the row's cumulative share inside its intent: one increasing search key
        self.cdf_key = seg + (cs - before[seg]) / mass[seg]
        self.intent_cdf = np.cumsum(mass) / mass.sum()

    def random_intents(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.intent_cdf, rng.random(size)), self.n_intents - 1)

    def draw(self, intents: np.ndarray, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One row per entry of ``intents`` by popularity within the intent, among items released by ``times``."""
        rows = np.empty(len(intents), dtype=np.int64)
        todo = np.arange(len(intents))
        for _ in range(_RELEASE_REJECTIONS):
            th = intents[todo]
            pos = np.searchsorted(self.cdf_key, th + rng.random(len(todo)))
            rows[todo] = np.clip(pos, self.start[th], self.start[th + 1] - 1)
            todo = todo[self.release[self.row_item[rows[todo]]] > times[todo]]
            if len(todo) == 0:
                return rows
        rows[todo] = self.top[intents[todo]]  # the intent's most popular item, there from the start
        return rows

    def step(self, rows: np.ndarray, moves: np.ndarray) -> np.ndarray:
        """The rows ``moves`` places further in each row's intent listing (wrapping around)."""
        intent = self.row_intent[rows]
        return self.start[intent] + (rows - self.start[intent] + moves) % self.size[intent]

    def pivot(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another intent of each row's item (a random one of its memberships)."""
        item = self.row_item[rows]
        lo, hi = self.item_start[item], self.item_start[item + 1]
        return self.row_intent[self.item_rows[lo + (rng.random(len(rows)) * (hi - lo)).astype(np.int64)]]


def _session_lengths(size: int, rng: np.random.Generator, log_mean: float = 0.65) -> np.ndarray:
    """Heavy-tailed lengths: 1 + floor(lognormal(log_mean, 0.9)), a mean near 3.6 at 0.65, capped at 200."""
    return np.minimum(1 + np.floor(rng.lognormal(log_mean, 0.9, size=size)), 200).astype(np.int64)


def _start_times(size: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted session start times in ``[lo, hi)`` following the daily rhythm (rejection sampling)."""
    accept = _HOURLY / _HOURLY.max()
    out: list[np.ndarray] = []
    need = size
    while need > 0:
        t = rng.uniform(lo, hi, size=int(need * 1.8) + 16)
        hour = ((t // 3600) % 24).astype(np.int64)
        t = t[rng.random(len(t)) < accept[hour]]
        out.append(t[:need])
        need -= len(out[-1])
    return np.sort(np.concatenate(out))


def _walk(cat: _Catalogue, lengths: np.ndarray, starts: np.ndarray, cfg: SyntheticConfig,
          rng: np.random.Generator) -> np.ndarray:
    """The membership rows clicked by sessions of the given lengths, concatenated; one vectorised step
    per position (each active session draws one next click)."""
    n = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = np.empty(offsets[-1], dtype=np.int64)
    home = cat.random_intents(n, rng)
    direction = rng.choice([-1, 1], size=n)  # which way a session browses the listings
    current = cat.draw(home, starts, rng)
    rows[offsets[:-1]] = current
    cuts = np.cumsum([cfg.p_repeat, cfg.p_back, cfg.p_drift, cfg.p_follow])
    for t in range(1, int(lengths.max())):
        active = np.flatnonzero(lengths > t)
        cur, when = current[active], starts[active]
        u = rng.random(len(active))
        intent = cat.row_intent[cur]
        # drift: back to the session's first intent, to a neighbour, to another intent of the item, anywhere
        drift = (u >= cuts[1]) & (u < cuts[2])
        v = rng.random(len(active))
        neighbour = (intent + rng.integers(-3, 4, size=len(active))) % cat.n_intents
        moved = np.where(v < 0.3, home[active], np.where(v < 0.6, neighbour, np.where(
            v < 0.85, cat.pivot(cur, rng), cat.random_intents(len(active), rng))))
        intent = np.where(drift, moved, intent)
        nxt = cat.draw(intent, when, rng)
        follow = (u >= cuts[2]) & (u < cuts[3])
        successor = cat.step(cur, direction[active] * np.where(rng.random(len(active)) < 0.85, 1, 2))
        fresh = cat.release[cat.row_item[successor]] <= when
        nxt = np.where(follow & fresh, successor, nxt)
        nxt = np.where(u < cuts[0], cur, nxt)
        back = (u >= cuts[0]) & (u < cuts[1]) & (t >= 2)
        if back.any():  # the click before the current one mostly, sometimes an older one
            older = (rng.random(len(active)) * (t - 1)).astype(np.int64)
            earlier = np.where(rng.random(len(active)) < 0.6, t - 2, older)
            nxt = np.where(back, rows[offsets[active] + earlier], nxt)
        current[active] = nxt
        rows[offsets[active] + t] = nxt
    return rows


def _iso(seconds: np.ndarray) -> pa.Array:
    """ISO-8601 UTC strings with milliseconds (``2014-04-07T10:51:09.277Z``); a cast, 10x faster than strftime."""
    text = pc.cast(pa.array(np.round(seconds * 1000).astype(np.int64), type=pa.timestamp("ms")), pa.string())
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T"), "Z", "")


def _write_csv(table: pa.Table, sink) -> None:
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def _fit_to_room(lengths: np.ndarray, room: int) -> np.ndarray:
    """Cut the session lengths of the last chunk so that they sum to exactly ``room`` clicks."""
    cum = np.cumsum(lengths)
    if cum[-1] > room:
        keep = int(np.searchsorted(cum, room))
        lengths = lengths[: keep + 1].copy()
        lengths[-1] -= int(cum[keep] - room)
        lengths = lengths[lengths > 0]
    return lengths


def _click_gaps(cat: _Catalogue, items: np.ndarray, lengths: np.ndarray, first: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Seconds from each click to the previous one of its session (0 for a session's first click):
    lognormal, scaled by the session's pace and by how long the previous item holds attention."""
    pace = np.repeat(rng.lognormal(0.0, 0.5, size=len(lengths)), lengths)
    previous = np.concatenate([[0], items[:-1]])
    gaps = np.minimum(rng.lognormal(4.0, 1.0, size=len(items)) * pace * cat.dwell[previous], 3600.0)
    gaps[first] = 0.0
    return gaps


def _buys(cat: _Catalogue, items: np.ndarray, rows: np.ndarray, lengths: np.ndarray, times: np.ndarray,
          gaps: np.ndarray, first: np.ndarray, cfg: SyntheticConfig, rng: np.random.Generator) -> dict:
    """The buy rows of a chunk of sessions (columns of the buys file, with click indices into the chunk).

    A session buys with probability ``sigmoid(b + features)``, ``b`` set so that ``cfg.buy_rate`` of the
    sessions buy. Its bought items are drawn (without replacement) from its clicked items with weights
    that favour repeated, long-viewed and late clicks and items of high propensity; now and then it also
    buys an item of its last intent that it never clicked.
    """
    n = len(lengths)
    session = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ends = starts + lengths - 1
    dwell = np.append(gaps[1:], 0.0)  # seconds until the next click (0 after the session's last click)
    dwell[ends] = np.median(gaps[~first]) if (~first).any() else 60.0
    key = session.astype(np.int64) * (cat.n_items + 1) + items
    distinct = np.add.reduceat(np.concatenate([[1], (np.diff(np.sort(key)) != 0).astype(np.int64)]), starts)
    repeat_share = 1.0 - distinct / lengths
    log_dwell = np.add.reduceat(np.log1p(dwell), starts) / lengths
    propensity = np.add.reduceat(cat.buy_logit[items], starts) / lengths
    hour = ((times[starts] // 3600) % 24).astype(np.int64)
    z = (0.9 * np.log(lengths) + 2.0 * repeat_share + 0.5 * (log_dwell - np.median(log_dwell)) + 0.8 * propensity
         + _HOURLY_BUY[hour])
    lo, hi = -12.0, 4.0
    for _ in range(40):  # bisection on the intercept: the mean buy probability equals cfg.buy_rate
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 / (1 + np.exp(-(z + mid)))).mean() < cfg.buy_rate else (lo, mid)
    buyer = rng.random(n) < 1 / (1 + np.exp(-(z + lo)))
    # Distinct clicked items of buying sessions, weighted, and the top-k of a Gumbel draw.
    clicks = np.flatnonzero(buyer[session])
    position = (clicks - starts[session[clicks]] + 1) / lengths[session[clicks]]
    w = np.exp(cat.buy_logit[items[clicks]]) * np.log1p(dwell[clicks] / 30.0) * (0.1 + position) ** 2
    pair, inverse = np.unique(key[clicks], return_inverse=True)
    weight = np.bincount(inverse, weights=w, minlength=len(pair))  # repeats add up
    last = np.zeros(len(pair), dtype=np.int64)
    np.maximum.at(last, inverse, clicks)
    pair_session = session[last]
    gumbel = np.log(weight) - np.log(-np.log(rng.random(len(pair))))
    order = np.lexsort((-gumbel, pair_session))
    pair_session, last = pair_session[order], last[order]
    rank = np.arange(len(order)) - np.searchsorted(pair_session, pair_session)
    wanted = 1 + rng.poisson(0.6, size=n)
    take = rank < wanted[pair_session]
    bought_session, bought_item = pair_session[take], items[last[take]]
    # bought soon after the item's last click (often before the session's last click), or after the session
    after = np.where(rng.random(len(last[take])) < 0.5, times[last[take]], times[ends[bought_session]])
    bought_time = after + rng.uniform(20, 600, size=len(after))
    # A few buying sessions also buy an unclicked item of their last intent.
    extra = np.flatnonzero(buyer & (rng.random(n) < 0.08))
    extra_rows = cat.draw(cat.row_intent[rows[ends[extra]]], times[ends[extra]], rng)
    bought_session = np.concatenate([bought_session, extra])
    bought_item = np.concatenate([bought_item, cat.row_item[extra_rows]])
    bought_time = np.concatenate([bought_time, times[ends[extra]] + rng.uniform(20, 600, size=len(extra))])
    order = np.lexsort((bought_time, bought_session))
    bought_session, bought_item, bought_time = bought_session[order], bought_item[order], bought_time[order]
    m = len(bought_session)
    unpriced = rng.random(m) < 0.3  # YooChoose has buys without price and quantity
    quantity = np.where(unpriced, 0, np.minimum(rng.geometric(0.75, size=m), 10))
    return {"session": bought_session, "time": bought_time, "item": bought_item,
            "price": np.where(unpriced, 0, cat.price[bought_item]), "quantity": quantity}


def _write_sessions(cat: _Catalogue, lengths: np.ndarray, starts: np.ndarray, first_id: int, cfg: SyntheticConfig,
                    rng: np.random.Generator, clicks_file, buys_file) -> None:
    """Walk sessions of ``lengths`` starting at ``starts`` (ids from ``first_id`` on) and append their clicks and
    buys to the open files."""
    rows = _walk(cat, lengths, starts, cfg, rng)
    items = cat.row_item[rows]
    first = np.zeros(len(items), dtype=bool)
    first[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True
    gaps = _click_gaps(cat, items, lengths, first, rng)
    cum = np.cumsum(gaps)
    times = np.round(np.repeat(starts, lengths) + cum - np.repeat(cum[first], lengths), 3)
    category = np.where(rng.random(len(items)) < 0.03, "S", cat.category[items])
    sid = np.repeat(np.arange(first_id, first_id + len(lengths)), lengths)
    _write_csv(pa.table({
        "s": pa.array(sid), "t": _iso(times), "i": pa.array(cat.raw_ids[items]), "c": pa.array(category),
    }), clicks_file)
    buys = _buys(cat, items, rows, lengths, times, gaps, first, cfg, rng)
    _write_csv(pa.table({
        "s": pa.array(first_id + buys["session"]), "t": _iso(buys["time"]),
        "i": pa.array(cat.raw_ids[buys["item"]]), "p": pa.array(buys["price"]),
        "q": pa.array(buys["quantity"]),
    }), buys_file)


def generate(out_dir: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> tuple[Path, Path]:
    """Write ``clicks.dat`` and ``buys.dat`` (raw YooChoose format) into ``out_dir``; return their paths.

    A :class:`LaterConfig` writes the period after its dataset instead (:func:`generate_later`).
    """
    if isinstance(cfg, LaterConfig):
        return generate_later(out_dir, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    span = cfg.resolved_days() * 86_400.0
    cat = _Catalogue(cfg, span, rng)
    est_sessions = max(1, int(cfg.n_clicks / 3.6))
    n_chunks = max(1, -(-est_sessions // cfg.chunk_sessions))
    clicks_path, buys_path = out_dir / "clicks.dat", out_dir / "buys.dat"
    tmp_clicks, tmp_buys = clicks_path.with_suffix(".dat.tmp"), buys_path.with_suffix(".dat.tmp")
    written, next_session, chunk = 0, 1, 0
    with pa.OSFile(str(tmp_clicks), "wb") as fc, pa.OSFile(str(tmp_buys), "wb") as fb:
        while written < cfg.n_clicks:
            size = cfg.chunk_sessions if chunk < n_chunks else max(1_000, cfg.chunk_sessions // 10)
            lengths = _fit_to_room(_session_lengths(size, rng, cfg.length_log_mean), cfg.n_clicks - written)
            frac_lo, frac_hi = min(chunk / n_chunks, 1.0), min((chunk + 1) / n_chunks, 1.0)
            if frac_lo >= 1.0:  # overflow chunks (rare): squeeze into the last minutes
                frac_lo, frac_hi = 1.0 - 1e-6, 1.0
            starts = _start_times(len(lengths), _START + span * frac_lo, _START + span * frac_hi, rng)
            _write_sessions(cat, lengths, starts, next_session, cfg, rng, fc, fb)
            written += int(lengths.sum())
            next_session += len(lengths)
            chunk += 1
    os.replace(tmp_clicks, clicks_path)
    os.replace(tmp_buys, buys_path)
    return clicks_path, buys_path


def _later_catalogue(cat: _Catalogue, cfg: LaterConfig, span: float, rng: np.random.Generator) -> _Catalogue:
    """``cat`` with the items released during the later period added: new raw ids, memberships drawn like the
    earlier items' (inserted at random places of the intents' listings, whose order otherwise stays), release
    times spread over the later period, and the category, buy propensity, dwell and price of a random earlier
    item."""
    n, m = cat.n_items, int(round(cfg.later_new_item_share * cat.n_items))
    later = copy.copy(cat)
    later.n_items = n + m
    room = max(900_000, 4 * n)
    later.raw_ids = np.concatenate([cat.raw_ids, 214_500_000 + room + np.sort(rng.choice(room, size=m,
                                                                                        replace=False))])
    weight = 1.0 / (rng.integers(1, n + 1, size=m) + cfg.popularity_offset) ** cfg.popularity_exponent
    count = 1 + rng.poisson(cfg.memberships_base + cfg.memberships_popular * (weight / cat.weight.max()) ** 0.5)
    item = n + np.repeat(np.arange(m), count)
    first = np.zeros(len(item), dtype=bool)
    first[np.concatenate([[0], np.cumsum(count)[:-1]])] = True
    primary = rng.integers(0, cat.n_intents, size=m)[item - n]
    near = (primary + rng.integers(-4, 5, size=len(item))) % cat.n_intents
    anywhere = rng.integers(0, cat.n_intents, size=len(item))
    intent = np.where(first, primary, np.where(rng.random(len(item)) < 0.5, near, anywhere))
    row_weight = weight[item - n] * rng.lognormal(0.0, 0.7, size=len(item)) * np.where(first, 1.0, 0.5)
    # earlier rows keep their listing order (place = their index in the intent), new rows fall in between
    place = np.concatenate([np.arange(len(cat.row_item)) - cat.start[cat.row_intent],
                            rng.uniform(-0.5, cat.size[intent] - 0.5)])
    all_intents = np.concatenate([cat.row_intent, intent])
    order = np.lexsort((place, all_intents))
    later.list_rows(np.concatenate([cat.row_item, item])[order], all_intents[order])
    later.row_weight = np.concatenate([cat.row_weight, row_weight])[order]
    later.release = np.concatenate([cat.release, _START + span + cfg.later_days * 86_400.0 * rng.random(m)])
    donor = rng.integers(0, n, size=m)
    for name in ("category", "buy_logit", "dwell", "price"):
        setattr(later, name, np.concatenate([getattr(cat, name), getattr(cat, name)[donor]]))
    later.weigh(later.row_weight, later.row_item < n)
    return later


def _day_lengths(clicks: int, rng: np.random.Generator) -> np.ndarray:
    """Session lengths that add up to exactly ``clicks``."""
    parts = [_session_lengths(int(clicks / 3.6 * 1.2) + 16, rng)]
    while sum(int(p.sum()) for p in parts) < clicks:
        parts.append(_session_lengths(int(clicks / 3.6 * 0.2) + 16, rng))
    return _fit_to_room(np.concatenate(parts), clicks)


def later_session_ids(cfg: SyntheticConfig) -> int:
    """The first session id of the later period: above every id of the earlier period (it has at most one
    session per click), a round number, so that the two periods can be read as one click log."""
    return 10 ** len(str(cfg.n_clicks))


def generate_later(out_dir: str | Path, cfg: LaterConfig) -> tuple[Path, Path]:
    """Write ``clicks.dat`` and ``buys.dat`` of the ``cfg.later_days`` days after the dataset of the same settings
    (:func:`generate`): the same catalogue (rebuilt from the same seed) plus items released during these days;
    day by day, each item's popularity moves further along its own random drift. Returns the two paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    span = cfg.resolved_days() * 86_400.0
    base = _Catalogue(cfg, span, np.random.default_rng(cfg.seed))  # the earlier period's catalogue, draw for draw
    rng = np.random.default_rng([cfg.seed, _LATER_STREAM])
    cat = _later_catalogue(base, cfg, span, rng)
    drift = rng.normal(0.0, 1.0, size=cat.n_items)
    row_weight, eligible = cat.row_weight, cat.row_item < base.n_items
    clicks_path, buys_path = out_dir / "clicks.dat", out_dir / "buys.dat"
    tmp_clicks, tmp_buys = clicks_path.with_suffix(".dat.tmp"), buys_path.with_suffix(".dat.tmp")
    next_session, per_day = later_session_ids(cfg), cfg.clicks_per_day()
    with pa.OSFile(str(tmp_clicks), "wb") as fc, pa.OSFile(str(tmp_buys), "wb") as fb:
        for day in range(cfg.later_days):
            cat.weigh(row_weight * np.exp(cfg.popularity_drift * (day + 1) / cfg.later_days * drift[cat.row_item]),
                      eligible)
            lengths = _day_lengths(int(round(per_day * (day + 1)) - round(per_day * day)), rng)
            day_start = _START + span + day * 86_400.0
            for lo in range(0, len(lengths), cfg.chunk_sessions):
                part = lengths[lo : lo + cfg.chunk_sessions]
                lo_t, hi_t = (day_start + 86_400.0 * x / len(lengths) for x in (lo, lo + len(part)))
                _write_sessions(cat, part, _start_times(len(part), lo_t, hi_t, rng), next_session, cfg, rng, fc, fb)
                next_session += len(part)
    os.replace(tmp_clicks, clicks_path)
    os.replace(tmp_buys, buys_path)
    return clicks_path, buys_path
