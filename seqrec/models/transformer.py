"""The Transformer encoder that SASRec and BERT4Rec share (Vaswani et al. 2017, "Attention is all you need").

Item embeddings (scaled by sqrt(hidden)) plus learnable positional embeddings feed a stack of blocks of
multi-head self-attention and a point-wise feed-forward net; the output item embeddings are the input
ones (tied). Causal attention gives SASRec (Kang & McAuley 2018), bidirectional attention BERT4Rec
(Sun et al. 2019). Scores are dot products with the item embeddings or, with ``normalize``, scaled
cosine similarities as in NISER (Gupta et al. 2019), which lessens the popularity bias of dot products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.configs import RangeError, above, at_least, check_ranges, ranged, share
from seqrec.models.base import SequenceModel

# What ``tune`` searches for either encoder (``seqrec.tuning``'s syntax); SASRec and BERT4Rec add their own.
TRANSFORMER_SPACE: dict[str, str] = {
    "lr": "loguniform:1e-4:5e-3",
    "hidden": "choice:64:128:256",
    "layers": "int:1:3",
    "heads": "choice:1:2:4",
    "dropout": "uniform:0.1:0.7",
    "emb_dropout": "uniform:0.1:0.7",
    "weight_decay": "loguniform:1e-3:0.3",
    "batch_size": "choice:128:256:512",
}


@dataclass
class TransformerConfig:
    """The encoder's settings, shared by the SASRec and BERT4Rec configs; each field declares the values it
    allows (``seqrec.configs``), checked by the model's config when it is built (``check``)."""

    max_len: int = ranged(50, at_least(1))  # clicks of a session the encoder sees (the last ones)
    hidden: int = ranged(64, at_least(1))  # width of embeddings and states
    layers: int = ranged(2, at_least(1))  # Transformer blocks
    heads: int = ranged(2, at_least(1))  # attention heads per block (they split ``hidden``: heads must divide it)
    ffn_mult: int = ranged(4, at_least(1))  # point-wise feed-forward width = ffn_mult * hidden
    norm_first: bool = True  # pre-LayerNorm blocks; False: post-LayerNorm (the original Transformer)
    emb_scale: bool = True  # multiply item embeddings by sqrt(hidden) before adding positions
    dropout: float = ranged(0.2, share())  # dropout in attention, feed-forward net and residual branches
    emb_dropout: float = ranged(0.2, share())  # dropout on the summed input embeddings
    normalize: bool = False  # NISER: logits = logit_scale * cosine(state, item embedding)
    logit_scale: float = ranged(16.0, above(0))  # the scale of cosine logits (normalize only)

    # the names these settings had before the models shared one vocabulary (docs/models.md)
    aliases: ClassVar[dict[str, str]] = {"blocks": "layers"}

    def __post_init__(self) -> None:
        self.check("transformer")

    def check(self, owner: str) -> None:
        """Every field in its range, and the heads splitting the width evenly; errors name ``owner`` (the model)."""
        check_ranges(owner, self)
        if self.hidden % self.heads:
            raise RangeError(owner, f"heads={self.heads} must divide hidden={self.hidden}")


class TransformerBlock(nn.Module):
    """Masked multi-head self-attention, then a point-wise feed-forward net, each with a residual."""

    def __init__(self, hidden: int, heads: int, dropout: float, ffn_mult: int = 4, norm_first: bool = True):
        super().__init__()
        self.heads, self.norm_first = heads, norm_first
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        inner = ffn_mult * hidden
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, hidden))
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def _attend(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool) -> torch.Tensor:
        b, length, d = x.shape
        # [3, B, heads, L, d / heads]
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if last_only:  # only the last position asks; every position still answers
            q, allowed = q[:, :, -1:], allowed[:, :, -1:]
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return attn.transpose(1, 2).reshape(b, q.shape[2], d)  # the heads side by side, before the projection

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False,
                at: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, hidden]`` -> the same shape, or ``[B, 1, hidden]`` (the last position) if ``last_only``,
        or ``[at.sum(), hidden]`` (the positions of the ``[B, L]`` bool mask ``at``, in row-major order):
        every position is attended to, but only the positions asked for are projected and fed forward."""
        residual = x[:, -1:] if last_only else x
        attended = self._attend(self.norm1(x) if self.norm_first else x, allowed, last_only)
        if at is not None:
            residual, attended = residual[at], attended[at]
        attended = self.dropout(self.proj(attended))
        if self.norm_first:
            x = residual + attended
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(residual + attended)
        return self.norm2(x + self.dropout(self.ffn(x)))


class TransformerEncoder(SequenceModel):
    """Embeddings, blocks and tied output scores; subclasses add the training objective."""

    causal: bool = True  # SASRec: position t attends to positions <= t; BERT4Rec: to all

    def __init__(self, n_items: int, config: TransformerConfig, sparse: bool = False):
        super().__init__()
        self.n_items, self.config = n_items, config
        # row n_items + 1 is the [MASK] token; sparse: only the rows a batch touches get gradients
        self.item_emb = nn.Embedding(n_items + 2, config.hidden, padding_idx=0, sparse=sparse)
        self.pos_emb = nn.Embedding(config.max_len, config.hidden)
        self.emb_dropout = nn.Dropout(config.emb_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.hidden, config.heads, config.dropout, config.ffn_mult, config.norm_first)
            for _ in range(config.layers))
        # pre-LN normalises the output of the last block; post-LN normalises the embeddings instead
        self.final_norm = nn.LayerNorm(config.hidden)

    @staticmethod
    def _init(module: nn.Module) -> None:
        """Normal(0, 0.02) weights, zero biases and a zero padding row (BERT's initialisation)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    @property
    def mask_id(self) -> int:
        """The ``[MASK]`` token: BERT4Rec's masked positions, SASRec's ``item_mask`` corruption."""
        return self.n_items + 1

    def encode(self, inputs: torch.Tensor, last_only: bool = False, at: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L]`` left-padded ids -> ``[B, L, hidden]`` states (causal: position t sees inputs <= t).

        ``last_only`` returns only the last position's states ``[B, 1, hidden]``, and the last block
        computes its attention queries and feed-forward net for that position alone. ``at`` (a ``[B, L]``
        bool mask) returns only those positions' states ``[at.sum(), hidden]`` (``encode(inputs)[at]``),
        and the last block projects and feeds forward those positions alone: BERT4Rec's masked clicks.

        A click's position is the number of clicks before it in its row (counted from the session's
        start), so the output after a session's t-th click is computed exactly as for a prefix of t
        clicks at inference: training on every position of a session is the same as training on each
        of its prefixes. Leading padding columns can be dropped without changing any output.
        """
        length = inputs.shape[1]
        pad = inputs == 0
        positions = ((~pad).cumsum(1) - 1).clamp_min(0)
        scale = self.config.hidden**0.5 if self.config.emb_scale else 1.0
        x = self.item_emb(inputs) * scale + self.pos_emb(positions)  # [B, L, hidden]
        if not self.config.norm_first:
            x = self.final_norm(x)
        x = self.emb_dropout(x) * (~pad)[..., None]
        keys = ~pad[:, None, None, :]  # [B, 1, 1, L]: never attend to padding
        if self.causal:
            keys = keys & torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()[None, None]
        allowed = keys | torch.eye(length, dtype=torch.bool, device=inputs.device)[None, None]  # no empty rows
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x = block(x, allowed, last_only and last, at if last else None)
        x = x[:, -1:] if last_only else x
        return self.final_norm(x) if self.config.norm_first else x

    def _logits(self, states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Scores ``[..., C]`` of ``states`` ``[..., hidden]`` against item embeddings ``weights`` ``[C, hidden]``."""
        if self.config.normalize:
            return self.config.logit_scale * F.normalize(states, dim=-1) @ F.normalize(weights, dim=-1).T
        return states @ weights.T

    @staticmethod
    def _used_columns(inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` without its leading all-padding columns (at least one column is kept)."""
        used = (inputs != 0).any(0).nonzero()
        return inputs[:, int(used[0]) if len(used) else inputs.shape[1] - 1 :]

    def score_items(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.item_emb.weight[: self.n_items + 1] if items is None else self.item_emb.weight[items]
        return self._logits(states, weights).float()
