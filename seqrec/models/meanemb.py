"""Mean of item embeddings: a simple baseline, and the example of how a model plugs in.

A session is the average of the embeddings of its clicks; items are scored by a dot product with the
same embeddings, and training is a full-softmax cross-entropy on the click after each prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.configs import at_least, check_ranges, ranged
from seqrec.models.base import SequenceModel, Windows


@dataclass
class MeanEmbConfig:
    """The whole model: how many clicks and how wide an embedding."""

    max_len: int = ranged(50, at_least(1))  # clicks of a prefix that are averaged (the last ones)
    hidden: int = ranged(64, at_least(1))  # embedding width

    def __post_init__(self) -> None:
        check_ranges("meanemb", self)


class MeanEmb(SequenceModel):
    """Session state = mean embedding of its clicks; score = dot product with each item's embedding."""

    model_type = "meanemb"
    config_class = MeanEmbConfig
    # what ``tune`` searches (``seqrec.tuning``'s syntax); optional
    search_space: ClassVar[dict[str, str]] = {"lr": "loguniform:1e-4:1e-2", "hidden": "choice:64:128:256"}

    def __init__(self, n_items: int, config: MeanEmbConfig, popularity: torch.Tensor | None = None):
        super().__init__()
        self.n_items, self.config = n_items, config
        self.item_emb = nn.Embedding(n_items + 1, config.hidden, padding_idx=0)

    def loader_spec(self) -> Windows:
        return Windows(self.config.max_len, prefixes=True)  # one row per prefix, its next click as target

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        clicks = (inputs > 0).sum(1, keepdim=True).clamp_min(1)  # [B, 1]
        return self.item_emb(inputs).sum(1) / clicks  # [B, hidden]: the padding row is zero

    def score_items(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.item_emb.weight if items is None else self.item_emb.weight[items]
        return (states @ weights.T).float()

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        logits = self.score_items(self.session_states(inputs))[:, 1:]  # [B, n_items]: no padding class
        return F.cross_entropy(logits, targets[:, -1] - 1)
