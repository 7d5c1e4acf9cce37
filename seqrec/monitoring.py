"""Replaying later clicks through a trained model, period by period, with the project's one evaluator.

A click log that came after the model's training data is cut into periods: windows of ``period`` seconds
aligned to the Unix epoch (``1d`` periods are UTC days); a session belongs to the period in which it starts.
Every position of every session is replayed as the service would see it (docs/protocol.md, sections 3 and 6):
the input is the session's earlier clicks on items the model knows (clicks on unknown items are ignored, the last
``max_len`` known ones are kept), a prefix without a known click gets the model's most popular items, and a
target the model does not know is a miss. Known targets are ranked by :func:`seqrec.evaluation.evaluate` (full
ranking, conservative ties) batch by batch, so scoring memory stays within the evaluator's budget; the click log
itself is held as flat arrays, as ``preprocess`` holds it.

Per period (``PeriodResult.metrics``): ``recall_at_20``, ``mrr_at_20``, ``unknown_click_share`` (clicks on items
the model does not know), ``unknown_session_share`` (sessions with at least one such click),
``popularity_shift`` (Jensen-Shannon divergence, base 2, so in [0, 1], between the item distribution of the
model's training clicks and that of the period's clicks, the unknown items counted as one more item), and the
counts. :func:`verdict` compares the last period with :class:`Thresholds` relative to the model's own test MRR@20.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from seqrec.configs import at_least, check_ranges, in_range, ranged
from seqrec.data.dataset import SessionSplit
from seqrec.data.readers import Clicks
from seqrec.evaluation import evaluate
from seqrec.progress import progress_bar
from seqrec.serving.recommender import Recommender

K = 20
UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
MAX_PERIODS = 10_000  # more periods than this is a mistaken ``period`` (1s over a month), refused
RETRAIN, OK = "retrain", "ok"


def parse_period(text: str) -> float:
    """``"1d"``, ``"12h"``, ``"30m"``, ``"3600s"``, ``"1w"`` or plain seconds (``"3600"``) -> seconds (> 0)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text).lower())
    seconds = float(found.group(1)) * UNITS[found.group(2) or "s"] if found else 0.0
    if seconds <= 0:
        raise ValueError(f"period must be a positive duration such as 1d, 12h, 30m or 3600s, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Thresholds:
    """When the verdict is ``retrain``: the last period's MRR@20 below ``min_mrr_ratio`` times the model's own
    test MRR@20, or its share of clicks on unknown items above ``max_unknown_share``, or its popularity shift above
    ``max_popularity_shift`` (1 = never: the divergence is at most 1). The last period with at least
    ``min_predictions`` predictions is judged (a last period of a few sessions says little)."""

    min_mrr_ratio: float = ranged(0.9, at_least(0))
    max_unknown_share: float = ranged(0.2, in_range(0, 1))
    max_popularity_shift: float = ranged(1.0, in_range(0, 1))
    min_predictions: int = ranged(100, at_least(1))

    def __post_init__(self) -> None:
        check_ranges("Thresholds", self)


@dataclass
class ClickLog:
    """Later clicks in the model's item ids, grouped by session, sessions in start-time order."""

    items: np.ndarray  # int64 model dense id of each click, 0 = an item the model does not know
    offsets: np.ndarray  # int64, session s spans items[offsets[s]:offsets[s + 1]]
    starts: np.ndarray  # float64 unix seconds of each session's first click, ascending

    @property
    def n_sessions(self) -> int:
        return len(self.starts)


@dataclass
class PeriodResult:
    """One period's figures (without the ``monitor_`` prefix) and where it lies in time."""

    index: int  # whole periods since the first one
    start: float  # unix seconds
    metrics: dict[str, float] = field(default_factory=dict)


def model_item_ids(raw_ids: np.ndarray, recommender: Recommender) -> np.ndarray:
    """The model's dense id of each raw id (compared as text, as the service does), 0 where the model does not know
    it; vectorised over the distinct ids with one sorted search."""
    known = recommender.raw_ids[1:].astype(str)
    order = np.argsort(known, kind="stable")
    wanted = np.asarray(raw_ids).astype(str)
    if len(known) == 0:
        return np.zeros(len(wanted), dtype=np.int64)
    pos = np.minimum(np.searchsorted(known[order], wanted), len(known) - 1)
    return np.where(known[order][pos] == wanted, order[pos] + 1, 0).astype(np.int64)


def click_log(clicks: Clicks, recommender: Recommender) -> ClickLog:
    """``clicks`` (any reader's output, any order) as a :class:`ClickLog` in the model's item ids."""
    by_session = np.lexsort((clicks.time, clicks.session))  # each session's clicks together, in time order
    session = clicks.session[by_session]
    first = np.flatnonzero(np.concatenate([[True], session[1:] != session[:-1]]))
    lengths = np.diff(np.append(first, len(session)))
    starts = clicks.time[by_session][first]
    order = np.argsort(starts, kind="stable")  # sessions by start time: each period is one run of sessions
    click_order = np.repeat(first[order], lengths[order]) + _within_session(lengths[order])
    items = model_item_ids(clicks.item_ids, recommender)[clicks.item[by_session][click_order]]
    return ClickLog(items, np.concatenate([[0], np.cumsum(lengths[order])]), starts[order])


def _within_session(lengths: np.ndarray) -> np.ndarray:
    """0, 1, .., n-1 for each session of length n, concatenated."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)


def period_bounds(log: ClickLog, seconds: float) -> list[tuple[int, float, int, int]]:
    """``(index, start, first session, end session)`` of each period with sessions, in time order."""
    if log.n_sessions == 0:
        raise ValueError("the click log has no sessions")
    slot = np.floor(log.starts / seconds).astype(np.int64)
    first = int(slot[0])
    if slot[-1] - first >= MAX_PERIODS:
        raise ValueError(f"period={seconds:g}s cuts the clicks into {slot[-1] - first + 1:,} periods (at most "
                         f"{MAX_PERIODS:,}): choose a longer period")
    edges = np.flatnonzero(np.concatenate([[True], slot[1:] != slot[:-1], [True]]))
    return [(int(slot[a] - first), float(slot[a] * seconds), int(a), int(b)) for a, b in zip(edges[:-1], edges[1:],
                                                                                          strict=True)]


def replay_split(items: np.ndarray, lengths: np.ndarray) -> tuple[SessionSplit, int]:
    """The sessions as the model sees them, and the number of predictions whose target it does not know.

    Clicks on unknown items are removed; a session whose first click was unknown keeps a padding 0 in its place,
    so that its first known click is still a target (with an empty input: the popular items). Each prediction of
    the returned split is then a known target of the original sessions with the known clicks before it as input.
    """
    known = items > 0
    position = _within_session(lengths)
    session = np.repeat(np.arange(len(lengths)), lengths)
    has_known = np.bincount(session, weights=known, minlength=len(lengths)) > 0
    keep = known | ((position == 0) & has_known[session])
    kept = np.bincount(session[keep], minlength=len(lengths))
    long_enough = kept >= 2
    keep &= long_enough[session]
    offsets = np.concatenate([[0], np.cumsum(kept[long_enough])]).astype(np.int64)
    split = SessionSplit(items=items[keep].astype(np.int64), offsets=offsets,
                         times=np.zeros(int(offsets[-1])), session_ids=np.flatnonzero(long_enough).astype(np.int64))
    return split, int((~known & (position > 0)).sum())


def popularity_shift(training: np.ndarray, period_items: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of the training clicks' item distribution (``training``:
    counts per model id, index 0 unused) and the period's clicks (``period_items``: model ids, 0 = unknown).

    Unknown items share index 0: where one distribution is zero the divergence adds up linearly in the other, so
    one bin for all unknown items gives exactly the divergence over every item."""
    p = np.asarray(training, dtype=np.float64).copy()
    p[0] = 0.0
    q = np.bincount(period_items, minlength=len(p)).astype(np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return min(1.0, max(0.0, (kl(p) + kl(q)) / 2))


def replay_period(recommender: Recommender, items: np.ndarray, lengths: np.ndarray, progress: bool = False,
                  desc: str = "period") -> dict[str, float]:
    """The figures of one period's sessions (model ids ``items``, ``lengths`` per session)."""
    split, unknown_targets = replay_split(items, lengths)
    ranks = np.zeros(0, dtype=np.int64)
    tied = 0.0
    if split.n_predictions:
        result = evaluate(recommender, split, recommender.n_items, recommender.max_len,
                          popularity=recommender.popularity, progress=progress, desc=desc)
        assert result.ranks is not None, "evaluate() always returns the ranks"
        ranks, tied = result.ranks, result.metrics["tied_predictions"]
    ranks = np.concatenate([ranks, np.full(unknown_targets, recommender.n_items + 1, dtype=np.int64)])
    hit = ranks <= K
    session = np.repeat(np.arange(len(lengths)), lengths)
    unknown = items == 0
    return {
        f"recall_at_{K}": float(hit.mean()) if len(ranks) else 0.0,
        f"mrr_at_{K}": float(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if len(ranks) else 0.0,
        "unknown_click_share": float(unknown.mean()),
        "unknown_session_share": float((np.bincount(session, weights=unknown, minlength=len(lengths)) > 0).mean()),
        "popularity_shift": popularity_shift(recommender.popularity, items),
        "sessions": float(len(lengths)), "clicks": float(len(items)), "predictions": float(len(ranks)),
        "unknown_target_predictions": float(unknown_targets), "tied_predictions": float(tied),
    }


def replay(recommender: Recommender, log: ClickLog, seconds: float, progress: bool = True) -> list[PeriodResult]:
    """Every period of ``log`` replayed through ``recommender`` (see the module docstring)."""
    results = []
    periods = period_bounds(log, seconds)
    for index, start, a, b in progress_bar(periods, desc="monitor", unit="period", disable=not progress):
        lo, hi = log.offsets[a], log.offsets[b]
        metrics = replay_period(recommender, log.items[lo:hi], np.diff(log.offsets[a : b + 1]), progress,
                                f"period {index}")
        results.append(PeriodResult(index, start, metrics))
    return results


def verdict(results: list[PeriodResult], reference_mrr: float, thresholds: Thresholds) -> tuple[str, list[str]]:
    """``ok`` or ``retrain`` for the last period with at least ``thresholds.min_predictions`` predictions (the last
    period when none has), and the reasons, each a sentence with the figures."""
    judged = next((r for r in reversed(results) if r.metrics["predictions"] >= thresholds.min_predictions),
                  results[-1])
    m, reasons = judged.metrics, []
    floor = thresholds.min_mrr_ratio * reference_mrr
    if m[f"mrr_at_{K}"] < floor:
        reasons.append(f"period {judged.index}: MRR@{K} {m[f'mrr_at_{K}']:.4f} < {thresholds.min_mrr_ratio:g} x the "
                       f"model's test MRR@{K} {reference_mrr:.4f} = {floor:.4f}")
    if m["unknown_click_share"] > thresholds.max_unknown_share:
        reasons.append(f"period {judged.index}: {m['unknown_click_share']:.1%} of the clicks are on items the model "
                       f"does not know (> {thresholds.max_unknown_share:.0%})")
    if m["popularity_shift"] > thresholds.max_popularity_shift:
        reasons.append(f"period {judged.index}: popularity shift {m['popularity_shift']:.3f} > "
                       f"{thresholds.max_popularity_shift:g}")
    return (RETRAIN if reasons else OK), reasons
