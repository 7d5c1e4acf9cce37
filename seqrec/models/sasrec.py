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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from seqrec.configs import at_least, one_of, ranged, share
from seqrec.models.base import Windows
from seqrec.models.transformer import TRANSFORMER_SPACE, TransformerConfig, TransformerEncoder


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

    value_aliases: ClassVar[dict[str, dict[str, str]]] = {"loss": {"ce": "full"}}  # the old name of ``full``

    def __post_init__(self) -> None:
        self.check("sasrec")


class SASRec(TransformerEncoder):
    """The causal encoder trained to predict the next click at every position."""

    model_type = "sasrec"
    config_class = SASRecConfig
    sample_probs: torch.Tensor  # buffer: the popularity distribution negatives are drawn from
    search_space: ClassVar[dict[str, str]] = {**TRANSFORMER_SPACE, "label_smoothing": "uniform:0:0.3"}

    def __init__(self, n_items: int, config: SASRecConfig, popularity: torch.Tensor | None = None):
        super().__init__(n_items, config, sparse=config.loss == "sampled")
        pop = popularity if popularity is not None else torch.ones(n_items + 1)
        pop = pop.float().clone()
        pop[0] = 0.0
        self.register_buffer("sample_probs", pop / pop.sum(), persistent=False)
        self.apply(self._init)

    def loader_spec(self) -> Windows:
        return Windows(self.config.max_len, prefixes=self.config.train_on == "prefixes")

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """The output at each prefix's last click."""
        return self.encode(self._used_columns(inputs), last_only=True)[:, -1]

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean next-item loss over all targets (non-padding positions) of ``(inputs, targets)`` ``[B, L]``."""
        inputs, targets = batch
        if self.training and self.config.item_mask > 0:  # token-level input corruption
            corrupt = (torch.rand(inputs.shape, device=inputs.device) < self.config.item_mask) & (inputs > 0)
            inputs = inputs.masked_fill(corrupt, self.mask_id)
        if self.config.train_on == "prefixes":  # one target per row, after its last click
            states, targets = self.encode(inputs, last_only=True)[:, -1], targets[:, -1]
        else:
            states = self.encode(inputs)
            mask = targets > 0
            states, targets = states[mask], targets[mask]  # [T, hidden], [T]
        if self.config.loss == "sampled":  # also for the validation loss: a full softmax may not fit
            return self._sampled_softmax(states, targets)
        logits = self._logits(states, self.item_emb.weight[1 : self.n_items + 1])  # real items: no padding class
        return F.cross_entropy(logits.float(), targets - 1,
                               label_smoothing=self.config.label_smoothing if self.training else 0.0)

    def _sampled_softmax(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Softmax over the batch's targets plus popularity-sampled negatives, corrected by log q."""
        negatives = torch.multinomial(self.sample_probs, self.config.n_negatives, replacement=True)
        candidates = torch.cat([targets.unique(), negatives])
        logits = self._logits(states, F.embedding(candidates, self.item_emb.weight, sparse=self.item_emb.sparse))
        logits = logits - torch.log(self.sample_probs[candidates] * self.config.n_negatives + 1e-12)
        hit = candidates[None, :] == targets[:, None]  # [T, C]
        # the positive is the first candidate equal to the target; duplicates of it are masked out
        first = hit & (hit.cumsum(1) == 1)
        logits = logits.masked_fill(hit & ~first, -torch.inf)
        return F.cross_entropy(logits.float(), first.float().argmax(1))
