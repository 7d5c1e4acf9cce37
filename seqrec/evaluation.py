"""The evaluation protocol (docs/protocol.md, "Evaluation"), implemented once for every model: next-click
ranking over all items.

Every session of n clicks gives n - 1 predictions (input: the clicks before click i, at most the
last ``max_len``; target: click i). A model scores a batch of left-padded prefixes against every
item (``[B, n_items + 1]``, column 0 = padding, never ranked). The rank of the target is the number
of items scoring greater than OR EQUAL to it (ties count against the model), or NaN (a model that
emits NaN is punished, not rewarded); a NaN target score ranks last. Scoring happens in
batches on the model's device. Models that score in two steps (``StateScorer``: session states, then
item scores, as every ``seqrec.models`` sequence model does) are ranked against the catalogue in item
chunks, so memory stays bounded by ``SCORE_BUDGET`` scores however many items there are; other models
score whole rows and the batch shrinks instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from seqrec.data.dataset import SessionSplit, gather_windows
from seqrec.devices import device_of
from seqrec.progress import progress_bar

KS = (10, 20)
# the one metric that selects epochs, settings and the registered champion (as val_/best_val_ names)
SELECTION_METRIC = "val_mrr_at_20"
LENGTH_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 9), (10, None))
SCORE_BUDGET = 1 << 25  # floats per scored batch: bounds memory for huge catalogues


class Scorer(Protocol):
    """What the evaluator needs from any model: scores of every item for a batch of prefixes."""

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs``: LongTensor ``[B, L]`` left-padded with 0 -> scores ``[B, n_items + 1]``."""
        ...


@runtime_checkable
class StateScorer(Protocol):
    """A model that scores in two steps, which the evaluator ranks in item chunks of bounded memory (the
    sequence models of ``seqrec.models`` are such models; the evaluator does not depend on that package)."""

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``[B, L]`` left-padded prefixes -> ``[B, d]``."""
        ...

    def score_items(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[B, I]`` of item ids ``items`` ``[I]`` for ``states`` ``[B, d]``."""
        ...


def _bucket_name(lo: int, hi: int | None) -> str:
    return f"{lo}" if hi == lo else (f"{lo}-{hi}" if hi else f"{lo}+")


@dataclass
class EvalResult:
    """Metrics of one evaluation, plus breakdowns by prefix length and the rank of every prediction."""

    metrics: dict[str, float]
    by_length: dict[str, dict[str, float]] = field(default_factory=dict)
    # conservative rank of each target, in the split's prediction order (``prediction_positions``): the same
    # order for every model, so two models' ranks pair up for a significance test
    ranks: np.ndarray | None = None

    def prefixed(self, prefix: str) -> dict[str, float]:
        """Metrics named ``{prefix}_{name}`` (e.g. ``test_recall_at_20``) for MLflow."""
        return {f"{prefix}_{k}": v for k, v in self.metrics.items()}


class _Ranking:
    """Accumulates, block of items by block, the conservative rank of each target and the top items."""

    def __init__(self, targets: torch.Tensor, target_scores: torch.Tensor, n_items: int, top_k: int):
        self.targets, self.target_scores, self.n_items = targets, target_scores[:, None], n_items
        self.rank = torch.zeros(len(targets), dtype=torch.long, device=targets.device)
        self.tied = torch.zeros(len(targets), dtype=torch.bool, device=targets.device)
        self.top_k = min(top_k, n_items)
        self.top_scores: torch.Tensor | None = None
        self.top_items: torch.Tensor | None = None

    def add(self, first_item: int, scores: torch.Tensor) -> None:
        """``scores`` [B, C]: the scores of items ``first_item .. first_item + C - 1``."""
        ids = torch.arange(first_item, first_item + scores.shape[1], device=scores.device)
        own = ids[None, :] == self.targets[:, None]
        # the target's own column is its target score exactly, whatever kernel computed either
        scores = torch.where(own, self.target_scores, scores)
        # not below the target: greater, equal or NaN (a NaN score counts against the model, never for it)
        self.rank += scores.shape[1] - (scores < self.target_scores).sum(1)
        self.tied |= ((scores == self.target_scores) & ~own).any(1)
        k = min(self.top_k, scores.shape[1])
        values, index = scores.topk(k, dim=1)
        items = ids[index]
        if self.top_scores is not None and self.top_items is not None:
            values, items = torch.cat([self.top_scores, values], 1), torch.cat([self.top_items, items], 1)
            values, index = values.topk(min(self.top_k, values.shape[1]), dim=1)
            items = items.gather(1, index)
        self.top_scores, self.top_items = values, items

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ranks (1 = best; a NaN target score ranks last) and whether another item tied with the target."""
        nan = torch.isnan(self.target_scores[:, 0])
        return torch.where(nan, torch.full_like(self.rank, self.n_items), self.rank), self.tied & ~nan


def ranks_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conservative ranks (1 = best) and ties of ``targets`` under full score rows ``[B, n_items + 1]``.

    Column 0 (padding) is never ranked; a NaN target score ranks last.
    """
    return _rank_rows(scores, targets, 1).result()


def _rank_rows(scores: torch.Tensor, targets: torch.Tensor, top_k: int) -> _Ranking:
    ranking = _Ranking(targets, scores.gather(1, targets[:, None])[:, 0], scores.shape[1] - 1, top_k)
    ranking.add(1, scores[:, 1:])
    return ranking


def _rank_batch(model: Scorer | StateScorer, inputs: torch.Tensor, targets: torch.Tensor, n_items: int,
                top_k: int) -> _Ranking:
    """Rank one batch of prefixes: in item chunks for a ``StateScorer``, in one block otherwise."""
    if isinstance(model, StateScorer):
        states = model.session_states(inputs)
        ranking = _Ranking(targets, model.score_items(states, targets).diagonal(), n_items, top_k)
        chunk = max(1, SCORE_BUDGET // len(inputs))
        for lo in range(1, n_items + 1, chunk):
            ids = torch.arange(lo, min(lo + chunk, n_items + 1), device=states.device)
            ranking.add(lo, model.score_items(states, ids))
        return ranking
    scores = model.score(inputs)
    return _rank_rows(scores, targets.to(scores.device), top_k)


def _batch_size_for(model: Scorer | StateScorer, n_items: int, requested: int) -> int:
    if isinstance(model, StateScorer):
        return requested  # items are chunked instead
    return max(1, min(requested, SCORE_BUDGET // (n_items + 1)))


@dataclass
class _Ranked:
    """The outcome of ranking every prediction of a split."""

    ranks: np.ndarray  # [n] conservative rank of each target, 1 = best
    tied: np.ndarray  # [n] whether another item scored exactly like the target
    prefix_len: np.ndarray  # [n] clicks before each target (before truncation to max_len)
    recommended: np.ndarray  # [n_items + 1] how often each item is in a top-20


@torch.no_grad()
def evaluate(
    model: Scorer | StateScorer,
    split: SessionSplit,
    n_items: int,
    max_len: int = 50,
    batch_size: int = 512,
    popularity: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "evaluate",
) -> EvalResult:
    """Rank every next click of ``split`` against all items; see the module docstring."""
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    ranked = _rank_split(model, split, n_items, max_len, batch_size, progress, desc)
    if module is not None and was_training:
        module.train()
    metrics = rank_metrics(ranked.ranks)
    metrics.update(_coverage_and_popularity(ranked.recommended, n_items, popularity))
    metrics["tied_predictions"] = float(ranked.tied.sum())
    metrics["predictions"] = float(len(ranked.ranks))
    return EvalResult(metrics, _by_length(ranked.ranks, ranked.prefix_len), ranked.ranks)


def _rank_split(model: Scorer | StateScorer, split: SessionSplit, n_items: int, max_len: int, batch_size: int,
                progress: bool, desc: str) -> _Ranked:
    """Rank the target of every prediction of ``split``, batch by batch on the model's device; the results
    come back in the split's prediction order."""
    device = device_of(model)
    items = np.asarray(split.items, dtype=np.int64)
    starts, targets = split.prediction_positions()
    # similar prefix lengths share a batch, so models can skip padding; metrics do not depend on order
    order = np.argsort(np.minimum(targets - starts, max_len), kind="stable")
    starts, targets = starts[order], targets[order]
    n = len(targets)
    if n == 0:
        raise ValueError("the split has no predictions (every session has a single click)")
    ranks = np.empty(n, dtype=np.int64)
    tied = np.empty(n, dtype=bool)
    recommended = np.zeros(n_items + 1, dtype=np.int64)
    step = _batch_size_for(model, n_items, batch_size)
    for lo in progress_bar(range(0, n, step), desc=desc, disable=not progress, leave=False, unit="batch"):
        hi = min(lo + step, n)
        inputs = torch.from_numpy(gather_windows(items, starts[lo:hi], targets[lo:hi], max_len)).to(device)
        ranking = _rank_batch(model, inputs, torch.from_numpy(items[targets[lo:hi]]).to(device), n_items, max(KS))
        rank, tie = ranking.result()
        ranks[lo:hi], tied[lo:hi] = rank.cpu().numpy(), tie.cpu().numpy()
        assert ranking.top_items is not None  # set by the first item chunk
        recommended += np.bincount(ranking.top_items.cpu().numpy().ravel(), minlength=n_items + 1)
    unsorted = np.empty_like(order)
    unsorted[order] = np.arange(n)
    return _Ranked(ranks[unsorted], tied[unsorted], (targets - starts)[unsorted], recommended)


def _coverage_and_popularity(recommended: np.ndarray, n_items: int,
                             popularity: np.ndarray | None) -> dict[str, float]:
    """Share of the catalogue in some top-20, and the mean popularity percentile of the top-20 items."""
    out = {"coverage_at_20": float((recommended[1:] > 0).sum() / n_items)}
    if popularity is not None:
        percentile = _popularity_percentile(popularity)
        out["popularity_percentile_at_20"] = float((recommended * percentile).sum() / recommended.sum())
    return out


def _by_length(ranks: np.ndarray, prefix_len: np.ndarray) -> dict[str, dict[str, float]]:
    """Recall@20, MRR@20 and the number of predictions for each bucket of ``LENGTH_BUCKETS``."""
    by_length = {}
    for lo, hi in LENGTH_BUCKETS:
        mask = (prefix_len >= lo) & (prefix_len <= (hi or np.iinfo(np.int64).max))
        if mask.any():
            m = rank_metrics(ranks[mask], ks=(20,))
            by_length[_bucket_name(lo, hi)] = {
                "recall_at_20": m["recall_at_20"], "mrr_at_20": m["mrr_at_20"], "predictions": int(mask.sum())
            }
    return by_length


def rank_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        out[f"recall_at_{k}"] = float(hit.mean())
        out[f"mrr_at_{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
        out[f"ndcg_at_{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out


def _popularity_percentile(popularity: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each item's training popularity among all items; padding gets 0."""
    pop = np.asarray(popularity[1:], dtype=np.float64)
    order = np.argsort(np.argsort(pop, kind="stable"), kind="stable")
    return np.concatenate([[0.0], 100.0 * order / max(len(pop) - 1, 1)])
