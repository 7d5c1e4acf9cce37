"""Session and session-item features for buy prediction, built from click arrays in a few sorts and
group-bys (no Python loop per click or per session).

A session's candidates are its distinct clicked items. Per candidate: its clicks (count, share of the
session), positions (first, last from the end), dwell time (time to the next click, summed and max),
time from its last click to the session's end, whether it was the last click, its popularity, buy rate
and category kind. Per session: length, distinct items, duration, dwell statistics, hour and weekday of
its end, the largest item repeat share, and the largest and mean buy rate of its items. Times are
optional (a served request may not carry them): without them every time feature is NaN, which the
gradient-boosted trees handle natively and the neural heads read as 0 after scaling.

Item buy rates and buy counts come from training labels only. On the training split they are computed out of
fold: the sessions are dealt into ``folds`` groups and a session's features see the counts of the other groups
only, so they never carry its own label (leave-one-out would: an item's rate would be lower exactly for the
sessions that bought it, and trees find that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.data.buys import BasketLabels

PAIR_FEATURES = ("count", "count_share", "first_position", "from_end", "dwell_sum", "dwell_max", "seconds_to_end",
                 "is_last", "log_clicks", "buy_rate", "log_bought", "category_kind")
SESSION_FEATURES = ("length", "distinct", "duration", "dwell_mean", "dwell_max", "hour", "weekday",
                    "max_repeat_share", "max_buy_rate", "mean_buy_rate", "special_share", "log_dwell_mean",
                    "click_buy_rate", "last_buy_rate")
_PRIOR_WEIGHT = 5.0  # pseudo-sessions of the global buy rate in each item's smoothed rate


def category_kind(categories: np.ndarray) -> np.ndarray:
    """YooChoose category codes as kinds: 0 unknown, 1 special offer (S), 2 category 1-12, 3 brand."""
    cats = np.asarray(categories).astype(str)
    numeric = np.char.isdigit(cats)
    lengths = np.char.str_len(cats)
    return np.select([cats == "0", cats == "S", numeric & (lengths <= 2), numeric], [0, 1, 2, 3], default=0)


@dataclass
class ItemStats:
    """What the features know of items, from the training split: clicks, buys and category kinds (by dense id,
    index 0 unused)."""

    clicks: np.ndarray  # [n + 1] training clicks
    clicked_sessions: np.ndarray  # [n + 1] training sessions that clicked the item
    bought_sessions: np.ndarray  # [n + 1] training sessions that clicked and bought the item
    bought: np.ndarray  # [n + 1] training sessions that bought the item (clicked or not)
    category: np.ndarray  # [n + 1] category kind
    base_rate: float  # share of clicked (session, item) pairs that were bought

    @property
    def n_items(self) -> int:
        return len(self.clicks) - 1

    def rate(self, bought: np.ndarray, clicked: np.ndarray, base_rate: float | np.ndarray | None = None) -> np.ndarray:
        """Buy rate smoothed towards ``base_rate`` (default: that of the whole training split)."""
        base = self.base_rate if base_rate is None else base_rate
        return (bought + _PRIOR_WEIGHT * base) / (clicked + _PRIOR_WEIGHT)

    def most_bought(self) -> np.ndarray:
        """Dense ids 1..n, most bought first (then most clicked, then lower id): the order after the clicked items."""
        return np.lexsort((-self.clicks[1:], -self.bought[1:].astype(np.int64))) + 1

    def fallback_ranks(self) -> np.ndarray:
        """1-based rank of each dense id in :meth:`most_bought` order ``[n + 1]`` (index 0 unused)."""
        ranks = np.zeros(self.n_items + 1, dtype=np.int64)
        ranks[self.most_bought()] = np.arange(1, self.n_items + 1)
        return ranks


@dataclass
class Candidates:
    """The distinct clicked items of each session, sorted by session then item."""

    session: np.ndarray  # [P] session index
    item: np.ndarray  # [P] dense item id
    start: np.ndarray  # [S + 1] offsets of each session's candidates


@dataclass
class Features:
    """Feature matrices of one split (float32, NaN = unknown) and its candidates."""

    session: np.ndarray  # [S, len(SESSION_FEATURES)]
    pair: np.ndarray  # [P, len(PAIR_FEATURES)]
    candidates: Candidates
    label_buy: np.ndarray | None = None  # [S] bool, when labels were given
    label_pair: np.ndarray | None = None  # [P] bool
    items: np.ndarray | None = None  # the sessions' clicks (flat dense ids), for the sequence models
    offsets: np.ndarray | None = None  # [S + 1]

    @property
    def n_sessions(self) -> int:
        return len(self.session)


def candidates_of(items: np.ndarray, offsets: np.ndarray, n_items: int) -> tuple[Candidates, np.ndarray, np.ndarray]:
    """Candidates of sessions given as flat ``items`` and ``offsets``; also the candidate of each click and the
    click order by candidate (for group-bys)."""
    n = len(offsets) - 1
    sess = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    key = sess * (n_items + 1) + items
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    cand_of_click = np.empty(len(order), dtype=np.int64)
    cand_of_click[order] = np.cumsum(first) - 1
    uniq = sorted_key[first]
    session = uniq // (n_items + 1)
    start = np.searchsorted(session, np.arange(n + 1))
    return Candidates(session, (uniq % (n_items + 1)).astype(np.int64), start), cand_of_click, order


def item_stats(items: np.ndarray, offsets: np.ndarray, labels: BasketLabels, n_items: int,
               categories: np.ndarray) -> ItemStats:
    """Item statistics of a training split (its clicks and its buy labels)."""
    cands, _, _ = candidates_of(items, offsets, n_items)
    bought_pair = _pair_labels(cands, labels, n_items)
    clicked = np.bincount(cands.item, minlength=n_items + 1)
    bought_clicked = np.bincount(cands.item[bought_pair], minlength=n_items + 1)
    base = float(bought_pair.mean()) if len(bought_pair) else 0.0
    return ItemStats(np.bincount(items, minlength=n_items + 1), clicked, bought_clicked,
                     np.bincount(labels.item, minlength=n_items + 1), np.asarray(categories), base)


def _pair_labels(cands: Candidates, labels: BasketLabels, n_items: int) -> np.ndarray:
    known = labels.item > 0
    key_bought = labels.session[known] * (n_items + 1) + labels.item[known]
    return np.isin(cands.session * (n_items + 1) + cands.item, key_bought)


def _group_max(values: np.ndarray, starts: np.ndarray, n_groups: int, empty: float = np.nan) -> np.ndarray:
    """Maximum of ``values`` (sorted by group) per group given each group's start; ``empty`` for empty groups."""
    out = np.full(n_groups, empty, dtype=np.float64)
    nonempty = np.flatnonzero(np.diff(starts) > 0)
    if len(nonempty):
        out[nonempty] = np.maximum.reduceat(values, starts[nonempty])
    return out


@dataclass
class _Clicks:
    """Where each click of a batch of sessions sits: its session, its position there and its candidate, with the
    clicks of each candidate grouped together (``order``, each group starting at ``cand_starts``)."""

    n: int  # sessions
    p: int  # candidates
    lengths: np.ndarray  # [S] clicks per session
    cands: Candidates
    cand_of_click: np.ndarray  # [N] candidate of each click
    order: np.ndarray  # [N] the clicks grouped by candidate
    cand_starts: np.ndarray  # [P] where each candidate's group starts in ``order``
    sess_of_click: np.ndarray  # [N] session of each click
    pos: np.ndarray  # [N] position of each click in its session
    count: np.ndarray  # [P] clicks of each candidate (float64)
    is_last: np.ndarray  # [P] the candidate is its session's last click


def _clicks(items: np.ndarray, offsets: np.ndarray, n_items: int) -> _Clicks:
    n = len(offsets) - 1
    lengths = np.diff(offsets).astype(np.int64)
    cands, cand_of_click, order = candidates_of(items, offsets, n_items)
    p = len(cands.item)
    sess_of_click = np.repeat(np.arange(n), lengths)
    pos = np.arange(len(items)) - offsets[:-1][sess_of_click]
    count = np.bincount(cand_of_click, minlength=p).astype(np.float64)
    first_click = np.ones(len(order), dtype=bool)
    first_click[1:] = cand_of_click[order][1:] != cand_of_click[order][:-1]
    cand_starts = np.flatnonzero(first_click)
    is_last = np.zeros(p, dtype=bool)
    is_last[cand_of_click[offsets[1:] - 1]] = True
    return _Clicks(n, p, lengths, cands, cand_of_click, order, cand_starts, sess_of_click, pos, count, is_last)


def _time_features(c: _Clicks, offsets: np.ndarray,
                   times: np.ndarray | None) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The features that need click times (all NaN without them): per candidate ``(dwell_sum, dwell_max,
    to_end)``, per session ``(duration, dwell_mean, dwell_smax, hour, weekday, log_dwell_mean)``."""
    n, p = c.n, c.p
    if times is None:
        return (np.full(p, np.nan),) * 3, (np.full(n, np.nan),) * 6
    t = np.asarray(times, dtype=np.float64)
    dwell = np.full(len(t), np.nan)
    same = np.zeros(len(t), dtype=bool)
    same[:-1] = c.sess_of_click[1:] == c.sess_of_click[:-1]
    dwell[:-1][same[:-1]] = (t[1:] - t[:-1])[same[:-1]]
    dwell0 = np.nan_to_num(dwell)
    dwell_sum = np.bincount(c.cand_of_click, weights=dwell0, minlength=p)
    dwell_max = np.maximum.reduceat(dwell0[c.order], c.cand_starts) if p else np.zeros(0)
    end = t[offsets[1:] - 1]
    last_t = np.maximum.reduceat(t[c.order], c.cand_starts) if p else np.zeros(0)
    to_end = end[c.cands.session] - last_t
    duration = end - t[offsets[:-1]]
    n_dwell = np.maximum(c.lengths - 1, 1)
    dwell_mean = np.bincount(c.sess_of_click, weights=dwell0, minlength=n) / n_dwell
    log_dwell_mean = np.bincount(c.sess_of_click, weights=np.log1p(dwell0), minlength=n) / n_dwell
    dwell_smax = _group_max(dwell0, offsets[:-1], n, 0.0)
    hour = (end % 86_400) / 3600.0
    weekday = ((end // 86_400) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    return (dwell_sum, dwell_max, to_end), (duration, dwell_mean, dwell_smax, hour, weekday, log_dwell_mean)


def _buy_rates(c: _Clicks, stats: ItemStats, labels: BasketLabels | None, label_pair: np.ndarray | None,
               folds: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' smoothed buy rate and training buys of their item; with ``folds`` > 1 the counts of the
    session's own fold are taken out (module docstring)."""
    cands = c.cands
    bought_sessions = stats.bought_sessions[cands.item].astype(np.float64)
    clicked_sessions = stats.clicked_sessions[cands.item].astype(np.float64)
    bought_all = stats.bought[cands.item].astype(np.float64)
    base = None
    if folds > 1:  # subtract the counts of the session's own fold
        if labels is None:
            raise ValueError("out-of-fold buy counts (folds > 1) need the labels of the training split")
        fold = np.arange(c.n) % folds
        width = stats.n_items + 1
        key = fold[cands.session] * width + cands.item
        size = folds * width
        bought_sessions -= np.bincount(key[label_pair], minlength=size)[key]
        clicked_sessions -= np.bincount(key, minlength=size)[key]
        bought_all -= np.bincount(fold[labels.session] * width + labels.item, minlength=size)[key]
        pairs_of = np.bincount(fold[cands.session], minlength=folds)
        bought_of = np.bincount(fold[cands.session][label_pair], minlength=folds)
        base = ((bought_of.sum() - bought_of) / np.maximum(pairs_of.sum() - pairs_of, 1))[fold[cands.session]]
    return stats.rate(bought_sessions, clicked_sessions, base), bought_all


def _pair_matrix(c: _Clicks, stats: ItemStats, timed: tuple[np.ndarray, ...], rate: np.ndarray,
                 bought_all: np.ndarray) -> np.ndarray:
    """``[P, len(PAIR_FEATURES)]``."""
    dwell_sum, dwell_max, to_end = timed
    first_pos = np.minimum.reduceat(c.pos[c.order], c.cand_starts) if c.p else np.zeros(0)
    last_pos = np.maximum.reduceat(c.pos[c.order], c.cand_starts) if c.p else np.zeros(0)
    length_of_cand = c.lengths[c.cands.session].astype(np.float64)
    cat = stats.category[c.cands.item]
    count = c.count
    return np.column_stack([
        count, count / length_of_cand, first_pos / length_of_cand, length_of_cand - 1 - last_pos, dwell_sum,
        dwell_max, to_end, c.is_last, np.log1p(stats.clicks[c.cands.item]), rate, np.log1p(bought_all), cat,
    ]).astype(np.float32)


def _session_matrix(c: _Clicks, items: np.ndarray, stats: ItemStats, timed: tuple[np.ndarray, ...],
                    rate: np.ndarray) -> np.ndarray:
    """``[S, len(SESSION_FEATURES)]``."""
    duration, dwell_mean, dwell_smax, hour, weekday, log_dwell_mean = timed
    n, cands, lengths = c.n, c.cands, c.lengths
    distinct = np.diff(cands.start).astype(np.float64)
    special = np.bincount(c.sess_of_click, weights=(stats.category[items] == 1).astype(np.float64), minlength=n)
    mean_rate = np.bincount(cands.session, weights=rate, minlength=n) / np.maximum(distinct, 1)
    click_rate = np.bincount(cands.session, weights=rate * c.count, minlength=n) / np.maximum(lengths, 1)
    last_rate = np.zeros(n)
    last_rate[cands.session[c.is_last]] = rate[c.is_last]
    return np.column_stack([
        lengths, distinct, duration, dwell_mean, dwell_smax, hour, weekday,
        _group_max(c.count, cands.start[:-1], n, 0.0) / np.maximum(lengths, 1),
        _group_max(rate, cands.start[:-1], n, 0.0), mean_rate, special / np.maximum(lengths, 1), log_dwell_mean,
        click_rate, last_rate,
    ]).astype(np.float32)


def build(items: np.ndarray, offsets: np.ndarray, times: np.ndarray | None, stats: ItemStats,
          labels: BasketLabels | None = None, folds: int = 0) -> Features:
    """Features of the sessions ``items``/``offsets`` (flat dense ids, session offsets; ``times`` per click or
    None). ``labels``: the sessions' buys, for the training targets; ``folds`` > 1: they are also the labels
    ``stats`` was counted from (the training split), and the buy counts are taken out of fold (module docstring)."""
    clicks = _clicks(items, offsets, stats.n_items)
    timed_pair, timed_session = _time_features(clicks, offsets, times)
    label_pair = _pair_labels(clicks.cands, labels, stats.n_items) if labels is not None else None
    rate, bought_all = _buy_rates(clicks, stats, labels, label_pair, folds)
    pair = _pair_matrix(clicks, stats, timed_pair, rate, bought_all)
    session = _session_matrix(clicks, items, stats, timed_session, rate)
    label_buy = labels.buying(clicks.n) if labels is not None else None
    return Features(session, pair, clicks.cands, label_buy, label_pair, np.asarray(items), np.asarray(offsets))
