"""Raw item ids in, top-k raw item ids and scores out: the recommender behind the pyfunc and the service.

Any scorer (baseline or neural) is wrapped the same way. Unknown items are ignored, an empty or
all-unknown session gets the most popular items, and long sessions keep their last ``max_len``
clicks.

Memory stays bounded whatever the catalogue size: the popular top items are ranked once, at
construction, and answer every empty session by slicing; known sessions are scored in row
sub-batches (or, for scorers exposing ``session_states`` and ``score_items``, in item chunks) of at
most ``SCORE_BUDGET`` float32 scores. Rankings are deterministic: equal scores go to the lower dense id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

import numpy as np
import torch

from seqrec.devices import device_of
from seqrec.models.base import SequenceModel

if TYPE_CHECKING:
    from seqrec.serving.basket import BasketPredictor

DEFAULT_K = 20
MAX_K = 1000
SCORE_BUDGET = 1 << 22  # float32 scores per scored block (16 MiB): bounds a request's memory
_CHUNK_PER_K = 32  # item chunks of at least 32 k items: each chunk's top-k is cheap to select and merge
_LOW32 = 0xFFFFFFFF


@dataclass
class Recommendation:
    items: list[str]
    scores: list[float]


class RequestError(ValueError):
    """A malformed recommendation request; the message names the field."""


# what a saved model loads as (seqrec.serving.artifacts), and what the pyfunc and the service answer with
ServedModel: TypeAlias = "Recommender | BasketPredictor"


def predicts_baskets(model: ServedModel | None) -> TypeGuard[BasketPredictor]:
    """Whether ``model`` is a basket predictor (it has decision thresholds), not a next-click recommender."""
    return hasattr(model, "thresholds")


def _rank_keys(scores: torch.Tensor, first_item: int) -> torch.Tensor:
    """Unique int64 keys of ``scores`` [B, C] (items ``first_item ..``): greater key = better rank.

    The high 32 bits order the float32 score (NaN last, -0.0 equal to 0.0), the low 32 bits prefer the
    lower item id, so ``topk`` of keys is exact and deterministic on any device, ties included. Built
    in place: the keys' transient memory is about three times the scores'.
    """
    scores = scores.float() + 0.0  # a contiguous copy, with -0.0 folded into 0.0
    bits = scores.view(torch.int32).masked_fill_(scores.isnan(), -1)  # -1: the lowest-ranked NaN pattern
    keys = _flip_negatives(bits).long()
    keys <<= 32
    keys |= _LOW32 - torch.arange(first_item, first_item + scores.shape[1], device=scores.device)
    return keys


def _flip_negatives(bits: torch.Tensor) -> torch.Tensor:
    """IEEE float32 bit patterns <-> order-preserving int32, in place (an involution)."""
    sign = bits >> 31  # -1 where negative, else 0
    return bits.bitwise_xor_(sign.bitwise_and_(0x7FFFFFFF))


def _decode(keys: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Item ids (int64) and float32 scores of ``_rank_keys`` keys [B, k], best first, as numpy arrays."""
    keys = keys.sort(dim=1, descending=True).values.cpu()
    scores = _flip_negatives((keys >> 32).int()).view(torch.float32)
    return (_LOW32 - (keys & _LOW32)).numpy(), scores.numpy()


def _top(scores: torch.Tensor, first_item: int, k: int) -> torch.Tensor:
    """Keys of the best ``k`` (or fewer, if fewer columns) items of each row, in no particular order."""
    return _rank_keys(scores, first_item).topk(min(k, scores.shape[1]), dim=1, sorted=False).values


def _merge(best: torch.Tensor | None, keys: torch.Tensor, k: int) -> torch.Tensor:
    """The running top-``k`` keys after another chunk's top keys."""
    if best is None:
        return keys
    both = torch.cat([best, keys], 1)
    return both.topk(min(k, both.shape[1]), dim=1, sorted=False).values


class Recommender:
    """Turns raw-id sessions into top-k raw-id recommendations with a fitted scorer."""

    def __init__(self, scorer: Any, raw_ids: np.ndarray, popularity: np.ndarray, max_len: int):
        self.scorer = scorer
        self.raw_ids = np.asarray(raw_ids, dtype=object)  # dense id -> raw id string, index 0 = padding
        self.index = {str(raw): i for i, raw in enumerate(self.raw_ids) if i > 0}
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.max_len = max_len
        if isinstance(scorer, torch.nn.Module):
            scorer.eval()
        self._prepare_popular()

    def _prepare_popular(self) -> None:
        """Rank the popular top ``MAX_K`` once: empty sessions are answered by slicing it."""
        self._popularity32 = torch.from_numpy(self.popularity.astype(np.float32))
        items, scores = _decode(_top(self._popularity32[None, 1:], 1, min(MAX_K, self.n_items)))
        self._popular_items: list[str] = self.raw_ids[items[0]].astype(str).tolist()
        self._popular_scores: list[float] = scores[0].tolist()

    @property
    def n_items(self) -> int:
        return len(self.raw_ids) - 1

    @property
    def device(self) -> torch.device:
        """The scorer's device, so that ``device_of(recommender)`` places inputs where they are scored."""
        return device_of(self.scorer)

    def encode(self, session: list) -> list[int]:
        """Dense ids of the known items of ``session`` (last ``max_len``), unknown ones dropped."""
        ids = [self.index[str(x)] for x in session if str(x) in self.index]
        return ids[-self.max_len :]

    def _validate_k(self, k: int | Sequence[int], n_sessions: int) -> np.ndarray:
        """One k per session, each checked against 1..MAX_K, then capped at ``n_items``."""
        if isinstance(k, int | np.integer):
            if not 1 <= k <= MAX_K:
                raise RequestError(f"k must be between 1 and {MAX_K}, got {k}")
            ks = np.full(n_sessions, k, dtype=np.int64)
        else:
            ks = np.asarray(k)
            if ks.shape != (n_sessions,) or (ks.size and ks.dtype.kind not in "iu"):
                raise RequestError(f"k must be an integer or a list of {n_sessions} integers, one per session")
            bad = np.flatnonzero((ks < 1) | (ks > MAX_K))
            if bad.size:
                raise RequestError(f"k of session {bad[0]} must be between 1 and {MAX_K}, got {ks[bad[0]]}")
        return np.minimum(ks, self.n_items)

    @torch.no_grad()
    def recommend(self, sessions: list[list], k: int | Sequence[int] = DEFAULT_K) -> list[Recommendation]:
        """Top-k raw ids and scores per session; ``k`` is one int for all sessions or one per session."""
        ks = self._validate_k(k, len(sessions))
        encoded = [self.encode(s) for s in sessions]
        known = np.flatnonzero([len(ids) > 0 for ids in encoded])
        answers: dict[int, Recommendation] = {}
        if known.size:
            inputs = np.zeros((known.size, self.max_len), dtype=np.int64)
            for row, s in enumerate(known):
                inputs[row, -len(encoded[s]) :] = encoded[s]
            items, scores = self._rank(inputs, int(ks[known].max()))
            names = self.raw_ids[items].astype(str)
            answers = {s: Recommendation(names[row, : ks[s]].tolist(), scores[row, : ks[s]].tolist())
                       for row, s in enumerate(known.tolist())}
        return [answers[s] if s in answers else
                Recommendation(self._popular_items[: ks[s]], self._popular_scores[: ks[s]])
                for s in range(len(sessions))]

    def _rank(self, inputs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` dense ids and scores ``[B, k]`` of left-padded ``inputs`` [B, L], within the budget.

        Rows are scored in batches whose full score rows fit the budget, except that scorers with
        ``session_states`` and ``score_items`` take as many rows as chunks of ``_CHUNK_PER_K * k`` items
        fit, and rank a batch too wide for whole rows chunk by chunk.
        """
        chunked = isinstance(self.scorer, SequenceModel)
        width = min(_CHUNK_PER_K * k, self.n_items + 1) if chunked else self.n_items + 1
        step = max(1, SCORE_BUDGET // width)
        device = device_of(self.scorer)
        items, scores = [], []
        for lo in range(0, len(inputs), step):
            batch = torch.from_numpy(inputs[lo : lo + step]).to(device)
            if chunked and len(batch) * (self.n_items + 1) > SCORE_BUDGET:
                best = self._top_in_chunks(batch, k)
            else:
                best = _top(self.scorer.score(batch)[:, 1:], 1, k)
            batch_items, batch_scores = _decode(best)
            items.append(batch_items)
            scores.append(batch_scores)
        return np.concatenate(items), np.concatenate(scores)

    def _top_in_chunks(self, batch: torch.Tensor, k: int) -> torch.Tensor:
        """Top-``k`` keys of ``batch`` against the catalogue in item chunks of at most the budget."""
        states = self.scorer.session_states(batch)
        chunk = max(1, SCORE_BUDGET // len(batch))
        best = None
        for first in range(1, self.n_items + 1, chunk):
            ids = torch.arange(first, min(first + chunk, self.n_items + 1), device=states.device)
            best = _merge(best, _top(self.scorer.score_items(states, ids), first, k), k)
        assert best is not None, "called only for a batch too wide for whole rows: the catalogue is not empty"
        return best

    @torch.no_grad()
    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        """Float32 scores ``[B, n_items + 1]`` of dense left-padded ids ``[B, L]``.

        Rows without any item get the popularity scores (what an empty session is answered with),
        the others the scorer's; the evaluator can thus rank all-unknown sessions like the service.
        """
        inputs = inputs.to(self.device)
        known = (inputs != 0).any(1)
        scores = self._popularity32.to(inputs.device).expand(len(inputs), -1).clone()
        if known.any():
            scores[known] = self.scorer.score(inputs[known]).float().to(scores.device)
        return scores
