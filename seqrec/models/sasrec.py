"""SASRec: self-attentive sequential recommendation (Kang & McAuley 2018, ICDM).

Item embeddings plus learnable positional embeddings feed a stack of Transformer blocks with causal
multi-head self-attention (``seqrec.models.transformer``); the output at position t scores every item
by a dot product with the (tied) item embeddings, and the target is the click at t + 1. Training uses
every position of every session, or (``train_on=prefixes``) every prefix as its own row with the next
click as its only target, the way RecBole trains SASRec: the same targets, each with its own dropout
noise, which generalises better on small data. The loss is a full-softmax cross-entropy (Klenitskiy &
Vasilev 2023, "Turning dross into gold loss: is BERT4Rec really better than SASRec?"), or for very
large catalogues a sampled softmax over in-batch and popularity-sampled negatives with logQ correction
(Yi et al. 2019). As an option (``normalize``), scores are scaled cosine similarities (NISER, Gupta et
al. 2019).

Shoppers often click an item again (a third of YooChoose's next clicks are in the session already), and a
state's similarity to item embeddings cannot single out every clicked item at once. With ``repeat_bonus``,
an item already in the prefix gets a learned bonus added to its score, one per number of clicks since its
latest click: the repeat half of RepeatNet's repeat-explore idea (Ren et al. 2019, AAAI) as a recency-indexed
bias. The session's state then carries its last clicks and their bonuses beside the encoder's output, so
items are still scored from states alone (in chunks, by the evaluator and the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.configs import RangeError, at_least, one_of, ranged, share
from seqrec.models.base import Windows
from seqrec.models.transformer import TRANSFORMER_SPACE, TransformerConfig, TransformerEncoder

EXACT_FLOAT_IDS = 2**24  # item ids a float32 state holds exactly (``repeat_bonus`` packs ids into states)


@dataclass
class SASRecConfig(TransformerConfig):
    """The encoder's settings plus SASRec's objective; training-loop settings live in ``TrainConfig``."""

    # full: softmax over every item | sampled: in-batch + popularity-sampled negatives, logQ-corrected
    loss: str = ranged("full", one_of("full", "sampled"))
    label_smoothing: float = ranged(0.0, share())  # of the full-softmax cross-entropy, in training only
    n_negatives: int = ranged(1024, at_least(1))  # sampled softmax: popularity-sampled negatives per batch
    # sessions: a target at every position | prefixes: one row per target
    train_on: str = ranged("sessions", one_of("sessions", "prefixes"))
    item_mask: float = ranged(0.0, share())  # training only: share of input clicks replaced by the [MASK] token
    repeat_bonus: bool = False  # a learned score bonus for items in the prefix, by clicks since their latest click

    value_aliases: ClassVar[dict[str, dict[str, str]]] = {"loss": {"ce": "full"}}  # the old name of ``full``

    def __post_init__(self) -> None:
        self.check("sasrec")


class SASRec(TransformerEncoder):
    """The causal encoder trained to predict the next click at every position."""

    model_type = "sasrec"
    config_class = SASRecConfig
    sample_probs: torch.Tensor  # buffer: the popularity distribution negatives are drawn from
    search_space: ClassVar[dict[str, str]] = {**TRANSFORMER_SPACE, "label_smoothing": "uniform:0:0.3",
                                              "repeat_bonus": "choice:true:false"}

    def __init__(self, n_items: int, config: SASRecConfig, popularity: torch.Tensor | None = None):
        super().__init__(n_items, config, sparse=config.loss == "sampled")
        pop = popularity if popularity is not None else torch.ones(n_items + 1)
        pop = pop.float().clone()
        pop[0] = 0.0
        self.register_buffer("sample_probs", pop / pop.sum(), persistent=False)
        if config.repeat_bonus:
            if n_items >= EXACT_FLOAT_IDS:
                raise RangeError("sasrec", f"repeat_bonus needs fewer than {EXACT_FLOAT_IDS:,} items, got {n_items:,}")
            # repeat[k]: the bonus of an item whose latest click was k clicks before the end of the prefix
            self.repeat = nn.Parameter(torch.zeros(config.max_len))
        self.apply(self._init)

    def loader_spec(self) -> Windows:
        return Windows(self.config.max_len, prefixes=self.config.train_on == "prefixes")

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """The output at each prefix's last click ``[B, hidden]``; with ``repeat_bonus`` followed by the
        prefix's last ``max_len`` clicks' bonuses and their item ids ``[B, hidden + 2 max_len]``."""
        states = self.encode(self._used_columns(inputs), last_only=True)[:, -1]
        if not self.config.repeat_bonus:
            return states
        ids, bonus = self._recent_clicks(inputs)
        return torch.cat([states, bonus.to(states.dtype), ids.to(states.dtype)], 1)

    def state_features(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, : self.config.hidden]

    def score_items(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if not self.config.repeat_bonus:
            return super().score_items(states, items)
        hidden, m = self.config.hidden, self.config.max_len
        scores = super().score_items(states[:, :hidden], items)
        bonus, ids = states[:, hidden : hidden + m].float(), states[:, hidden + m :].long()
        return add_repeat_bonus(scores, ids, bonus, items)

    def _recent_clicks(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs`` ``[N, L]`` left-padded prefixes -> their last ``max_len`` clicks ``[N, max_len]`` (left-padded)
        and each click's bonus: ``repeat[k]`` at an item's latest click, k clicks before the prefix's end; id and
        bonus 0 at padding, at ``[MASK]`` and at earlier clicks of an item clicked again."""
        m = self.config.max_len
        ids = F.pad(inputs[:, -m:], (m - min(m, inputs.shape[1]), 0))
        later = torch.ones(m, m, dtype=torch.bool, device=ids.device).triu(1)  # [j, k]: click k comes after j
        again = ((ids[:, :, None] == ids[:, None, :]) & later).any(2)
        # click j is m - 1 - j clicks before the end; a bonus is in the units of a cosine when scores are cosines
        scale = self.config.logit_scale if self.config.normalize else 1.0
        bonus = (scale * self.repeat).flip(0).expand(len(ids), m)
        dropped = (ids == 0) | (ids > self.n_items) | again
        return ids.masked_fill(dropped, 0), bonus.masked_fill(dropped, 0.0)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean next-item loss over all targets (non-padding positions) of ``(inputs, targets)`` ``[B, L]``."""
        inputs, targets = batch
        if self.training and self.config.item_mask > 0:  # token-level input corruption
            corrupt = (torch.rand(inputs.shape, device=inputs.device) < self.config.item_mask) & (inputs > 0)
            inputs = inputs.masked_fill(corrupt, self.mask_id)
        if self.config.train_on == "prefixes":  # one target per row, after its last click
            states, targets = self.encode(inputs, last_only=True)[:, -1], targets[:, -1]
            prefixes = inputs
        else:
            states = self.encode(inputs)
            mask = targets > 0
            states, targets = states[mask], targets[mask]  # [T, hidden], [T]
            # row t of each session's windows: the clicks up to position t (the prefix its target follows)
            prefixes = F.pad(inputs, (inputs.shape[1] - 1, 0)).unfold(1, inputs.shape[1], 1)[mask]
        recent = self._recent_clicks(prefixes) if self.config.repeat_bonus else None
        if self.config.loss == "sampled":  # also for the validation loss: a full softmax may not fit
            return self._sampled_softmax(states, targets, recent)
        logits = self._logits(states, self.item_emb.weight[1 : self.n_items + 1])  # real items: no padding class
        if recent is not None:  # column c is item c + 1; id 0 (no bonus) adds 0 to column 0
            ids, bonus = recent
            logits = logits.scatter_add(1, (ids - 1).clamp_min(0), bonus.to(logits.dtype))
        return F.cross_entropy(logits.float(), targets - 1,
                               label_smoothing=self.config.label_smoothing if self.training else 0.0)

    def _sampled_softmax(self, states: torch.Tensor, targets: torch.Tensor,
                         recent: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Softmax over the batch's targets plus popularity-sampled negatives, corrected by log q."""
        negatives = torch.multinomial(self.sample_probs, self.config.n_negatives, replacement=True)
        candidates = torch.cat([targets.unique(), negatives])
        logits = self._logits(states, F.embedding(candidates, self.item_emb.weight, sparse=self.item_emb.sparse))
        if recent is not None:
            logits = add_repeat_bonus(logits, *recent, candidates)
        logits = logits - torch.log(self.sample_probs[candidates] * self.config.n_negatives + 1e-12)
        hit = candidates[None, :] == targets[:, None]  # [T, C]
        # the positive is the first candidate equal to the target; duplicates of it are masked out
        first = hit & (hit.cumsum(1) == 1)
        logits = logits.masked_fill(hit & ~first, -torch.inf)
        return F.cross_entropy(logits.float(), first.float().argmax(1))


def add_repeat_bonus(scores: torch.Tensor, ids: torch.Tensor, bonus: torch.Tensor,
                     items: torch.Tensor | None) -> torch.Tensor:
    """``scores`` ``[N, I]`` of the ids ``items`` ``[I]`` (``None``: of ids ``0..I-1``) plus each row's ``bonus``
    ``[N, M]`` at its clicked ids ``ids`` ``[N, M]`` (each id once per row with a non-zero bonus)."""
    if items is None:
        return scores.scatter_add(1, ids, bonus.to(scores.dtype))
    unique, column = torch.unique(items, return_inverse=True)  # sorted: a click's id is found by bisection
    at = torch.searchsorted(unique, ids).clamp_max(len(unique) - 1)
    found = bonus.to(scores.dtype) * (unique[at] == ids)
    return scores + torch.zeros(len(scores), len(unique), dtype=scores.dtype, device=scores.device).scatter_add_(
        1, at, found)[:, column]
