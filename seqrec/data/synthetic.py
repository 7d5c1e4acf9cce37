"""A generator of YooChoose-format click and buy files, the project's built-in data.

The generated data imitates the shape of the RecSys Challenge 2015 clicks:

* item popularity is long-tailed (Zipf-like), both across themes and within a theme;
* session lengths are heavy-tailed with a mean near YooChoose's 3.6 clicks;
* categories use YooChoose's code space (``0``, ``S``, ``1``..``12`` and 8-10 digit brand ids);
* timestamps cover several days with a daily rhythm (quiet nights, busy evenings);
* a few percent of sessions end with buys.

It also plants sequential structure that a popularity model cannot see: items are grouped in
themes, and within a session the next click usually follows a Markov transition from the current
item (to one of a few fixed successors), sometimes repeats it, and otherwise picks a popular item
of the theme. Files are written chunk by chunk, so memory does not grow with the output size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of a generated dataset."""

    n_clicks: int = 100_000
    n_items: int = 0  # 0: scaled from n_clicks (52,739 at full YooChoose size)
    days: int = 0  # 0: scaled from n_clicks (14 days for small data, 183 at full size)
    seed: int = 0
    theme_size: int = 40
    p_transition: float = 0.55  # next click follows the current item's Markov successors
    p_repeat: float = 0.08  # next click repeats the current item
    p_switch: float = 0.04  # next click jumps to another theme
    buy_rate: float = 0.05
    chunk_sessions: int = 250_000

    def resolved_items(self) -> int:
        if self.n_items:
            return self.n_items
        scaled = YOOCHOOSE_ITEMS * (self.n_clicks / YOOCHOOSE_CLICKS) ** 0.5
        return int(np.clip(scaled, 500, YOOCHOOSE_ITEMS))

    def resolved_days(self) -> int:
        if self.days:
            return self.days
        return int(np.clip(183 * (self.n_clicks / YOOCHOOSE_CLICKS) ** 0.5, 14, 183))


class _Catalogue:
    """Items, their themes, Markov successors and categories."""

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator):
        n = cfg.resolved_items()
        self.n_items = n
        self.raw_ids = 214_500_000 + np.sort(rng.choice(max(900_000, 4 * n), size=n, replace=False))
        self.n_themes = max(1, n // cfg.theme_size)
        self.theme = rng.permutation(np.arange(n) % self.n_themes)
        order = np.argsort(self.theme, kind="stable")
        self.theme_items = np.split(order, np.cumsum(np.bincount(self.theme, minlength=self.n_themes))[:-1])
        self.theme_start = np.concatenate([[0], np.cumsum([len(t) for t in self.theme_items])])
        self.flat_theme_items = np.concatenate(self.theme_items)
        # Zipf-like popularity: across themes and inside each theme.
        theme_weight = 1.0 / np.arange(1, self.n_themes + 1) ** 0.9
        self.theme_p = rng.permutation(theme_weight / theme_weight.sum())
        self.theme_cdf = np.cumsum(self.theme_p)
        sizes = np.diff(self.theme_start)
        segment = np.repeat(np.arange(self.n_themes), sizes)
        within = np.concatenate([1.0 / np.arange(1, len(t) + 1) ** 1.1 for t in self.theme_items])
        cs = np.cumsum(within)
        sums = np.add.reduceat(within, self.theme_start[:-1])
        begin = cs[self.theme_start[1:] - 1] - sums
        # theme index + the item's cumulative share inside its theme: one increasing search key
        self.cdf_key = segment + (cs - begin[segment]) / sums[segment]
        # Three Markov successors per item, drawn from its theme; the first is the most likely.
        pos_in_theme = np.empty(n, dtype=np.int64)
        pos_in_theme[self.flat_theme_items] = np.arange(n) - np.repeat(self.theme_start[:-1],
                                                                         np.diff(self.theme_start))
        size = np.diff(self.theme_start)[self.theme]
        offsets = rng.integers(1, np.maximum(size, 2)[:, None], size=(n, 3))
        succ_pos = (pos_in_theme[:, None] + offsets) % np.maximum(size, 1)[:, None]
        self.successors = self.flat_theme_items[self.theme_start[self.theme][:, None] + succ_pos]
        # Categories in YooChoose's code space.
        kind = rng.choice(4, size=n, p=[0.55, 0.1, 0.25, 0.1])
        numbered = rng.integers(1, 13, size=n).astype(str)
        brands = rng.integers(10_000_000, 9_999_999_999, size=max(1, n // 200)).astype(str)
        brand = brands[rng.integers(0, len(brands), size=n)]
        self.category = np.where(kind == 0, "0", np.where(kind == 1, "S", np.where(kind == 2, numbered, brand)))

    def popular_in(self, themes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one item per entry of ``themes`` by within-theme popularity."""
        lo, hi = self.theme_start[themes], self.theme_start[themes + 1]
        pos = np.searchsorted(self.cdf_key, themes + rng.random(len(themes)))
        return self.flat_theme_items[np.clip(pos, lo, hi - 1)]

    def random_themes(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.theme_cdf, rng.random(size)), self.n_themes - 1)


def _session_lengths(size: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed lengths: 1 + floor(lognormal) with a mean near 3.6, capped at 200."""
    return np.minimum(1 + np.floor(rng.lognormal(0.72, 0.9, size=size)), 200).astype(np.int64)


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


def _walk(cat: _Catalogue, lengths: np.ndarray, cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Item sequences of the given lengths, concatenated; one vectorised step per position."""
    n = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = np.empty(offsets[-1], dtype=np.int64)
    theme = cat.random_themes(n, rng)
    current = cat.popular_in(theme, rng)
    items[offsets[:-1]] = current
    for t in range(1, int(lengths.max())):
        active = np.flatnonzero(lengths > t)
        cur, th = current[active], theme[active]
        u = rng.random(len(active))
        switch = u < cfg.p_switch
        th = np.where(switch, cat.random_themes(len(active), rng), th)
        nxt = cat.popular_in(th, rng)
        follow = (~switch) & (u < cfg.p_switch + cfg.p_transition)
        choice = np.minimum(rng.geometric(0.6, size=len(active)) - 1, 2)
        nxt = np.where(follow, cat.successors[cur, choice], nxt)
        repeat = (~switch) & (~follow) & (u < cfg.p_switch + cfg.p_transition + cfg.p_repeat)
        nxt = np.where(repeat, cur, nxt)
        theme[active], current[active] = th, nxt
        items[offsets[active] + t] = nxt
    return items


def _iso(seconds: np.ndarray) -> pa.Array:
    ts = pa.array((seconds * 1000).astype(np.int64), type=pa.timestamp("ms", tz="UTC"))
    return pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ")


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


def _click_times(starts: np.ndarray, lengths: np.ndarray, n_clicks: int, rng: np.random.Generator) -> np.ndarray:
    """Click timestamps: each session's start plus lognormal gaps (capped at an hour), rounded to the millisecond."""
    gaps = np.minimum(rng.lognormal(4.0, 1.1, size=n_clicks), 3600.0)
    first = np.zeros(n_clicks, dtype=bool)
    first[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True
    gaps[first] = 0.0
    session_start = np.repeat(starts, lengths)
    cum_gaps = np.cumsum(gaps)
    base = np.repeat(cum_gaps[first], lengths)
    return np.round(session_start + cum_gaps - base, 3)


def generate(out_dir: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> tuple[Path, Path]:
    """Write ``clicks.dat`` and ``buys.dat`` (raw YooChoose format) into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    cat = _Catalogue(cfg, rng)
    span = cfg.resolved_days() * 86_400.0
    est_sessions = max(1, int(cfg.n_clicks / 3.6))
    n_chunks = max(1, -(-est_sessions // cfg.chunk_sessions))
    clicks_path, buys_path = out_dir / "clicks.dat", out_dir / "buys.dat"
    tmp_clicks, tmp_buys = clicks_path.with_suffix(".dat.tmp"), buys_path.with_suffix(".dat.tmp")
    written, next_session, chunk = 0, 1, 0
    with pa.OSFile(str(tmp_clicks), "wb") as fc, pa.OSFile(str(tmp_buys), "wb") as fb:
        while written < cfg.n_clicks:
            size = cfg.chunk_sessions if chunk < n_chunks else max(1_000, cfg.chunk_sessions // 10)
            lengths = _fit_to_room(_session_lengths(size, rng), cfg.n_clicks - written)
            frac_lo, frac_hi = min(chunk / n_chunks, 1.0), min((chunk + 1) / n_chunks, 1.0)
            if frac_lo >= 1.0:  # overflow chunks (rare): squeeze into the last minutes
                frac_lo, frac_hi = 1.0 - 1e-6, 1.0
            starts = _start_times(len(lengths), _START + span * frac_lo, _START + span * frac_hi, rng)
            items = _walk(cat, lengths, cfg, rng)
            sid = np.repeat(np.arange(next_session, next_session + len(lengths)), lengths)
            times = _click_times(starts, lengths, len(items), rng)
            category = cat.category[items]
            offer = rng.random(len(items)) < 0.03
            category = np.where(offer, "S", category)
            _write_csv(pa.table({
                "s": pa.array(sid), "t": _iso(times), "i": pa.array(cat.raw_ids[items]), "c": pa.array(category),
            }), fc)
            # Buys: a few percent of sessions buy one of the items they clicked, after their last click.
            ends = np.cumsum(lengths) - 1
            buyers = np.flatnonzero(rng.random(len(lengths)) < cfg.buy_rate)
            pick = ends[buyers] - np.floor(rng.random(len(buyers)) * lengths[buyers]).astype(np.int64)
            _write_csv(pa.table({
                "s": pa.array(sid[ends[buyers]]),
                "t": _iso(times[ends[buyers]] + rng.uniform(30, 900, size=len(buyers))),
                "i": pa.array(cat.raw_ids[items[pick]]),
                "p": pa.array(rng.integers(1, 40, size=len(buyers)) * 157),
                "q": pa.array(rng.integers(1, 4, size=len(buyers))),
            }), fb)
            written += int(lengths.sum())
            next_session += len(lengths)
            chunk += 1
    os.replace(tmp_clicks, clicks_path)
    os.replace(tmp_buys, buys_path)
    return clicks_path, buys_path
