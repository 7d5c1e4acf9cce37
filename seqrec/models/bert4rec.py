"""BERT4Rec (Sun et al. 2019, CIKM): "Sequential recommendation with bidirectional encoder
representations from Transformer".

The Transformer encoder of ``seqrec.models.transformer`` with bidirectional attention, trained by
masked item prediction (the Cloze task): a random ``mask_ratio`` of the clicks of each window (and
always the last one in a share of the rows, the inference situation; and at least one per row) is
replaced by a ``[MASK]`` token and predicted with a full softmax. At inference the mask is appended
after the prefix and its output scores the items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from seqrec.configs import in_range, one_of, ranged, share
from seqrec.models.base import Windows
from seqrec.models.transformer import TRANSFORMER_SPACE, TransformerConfig, TransformerEncoder


@dataclass
class BERT4RecConfig(TransformerConfig):
    """The encoder's settings plus the masked-item objective."""

    # share of the clicks masked, and of the rows whose last click is masked too (at least one per row always)
    mask_ratio: float = ranged(0.2, in_range(0, 1))
    label_smoothing: float = ranged(0.0, share())  # of the cross-entropy over masked clicks, in training only
    # sessions: windows of whole sessions | prefixes: one row per prefix
    train_on: str = ranged("sessions", one_of("sessions", "prefixes"))

    def __post_init__(self) -> None:
        self.check("bert4rec")


class BERT4Rec(TransformerEncoder):
    """The bidirectional encoder trained by masked item prediction."""

    model_type = "bert4rec"
    config_class = BERT4RecConfig
    search_space: ClassVar[dict[str, str]] = {**TRANSFORMER_SPACE, "mask_ratio": "uniform:0.1:0.5"}
    causal = False

    def __init__(self, n_items: int, config: BERT4RecConfig, popularity: torch.Tensor | None = None):
        super().__init__(n_items, config)
        self.apply(self._init)

    def loader_spec(self) -> Windows:
        return Windows(self.config.max_len, prefixes=self.config.train_on == "prefixes")

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """The output at a ``[MASK]`` appended after each prefix."""
        inputs = self._used_columns(inputs)
        masked = torch.cat([inputs, torch.full_like(inputs[:, :1], self.mask_id)], 1)  # [B, L + 1]
        return self.encode(masked[:, -self.config.max_len :], last_only=True)[:, -1]

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of the masked clicks of ``(inputs, targets)`` ``[B, L]``."""
        inputs, targets = batch
        # the whole window: inputs plus the last target, at most max_len clicks
        sequence = torch.cat([inputs, targets[:, -1:]], 1)[:, -self.config.max_len :]
        real = sequence > 0
        if self.training:
            masked = self._training_mask(real)
        else:  # validation loss: the inference situation, only the last click is masked
            masked = torch.zeros_like(real)
            masked[:, -1] = True
            masked &= real
        corrupted = sequence.masked_fill(masked, self.mask_id)
        states = self.encode(corrupted, at=masked)  # [masked clicks, hidden]
        logits = self._logits(states, self.item_emb.weight[1 : self.n_items + 1])
        return F.cross_entropy(logits.float(), sequence[masked] - 1,
                               label_smoothing=self.config.label_smoothing if self.training else 0.0)

    def _training_mask(self, real: torch.Tensor) -> torch.Tensor:
        """The clicks to mask ``[B, L]`` among the ``real`` ones: each with probability ``mask_ratio``, the
        last one also in a ``mask_ratio`` share of the rows, and in a row left without any, its real click
        of lowest draw (so every row is predicted and no batch has an empty, NaN loss; the draws are the
        same as without that rule, so rows that had a masked click keep exactly it)."""
        draws = torch.rand(real.shape, device=real.device)
        masked = (draws < self.config.mask_ratio) & real
        masked[:, -1] |= torch.rand(len(real), device=real.device) < self.config.mask_ratio
        masked &= real
        lowest = draws.masked_fill(~real, 2.0).argmin(1, keepdim=True)  # draws are < 1: padding never wins
        fallback = torch.zeros_like(masked).scatter_(1, lowest, True) & real
        return masked | (fallback & ~masked.any(1, keepdim=True))
