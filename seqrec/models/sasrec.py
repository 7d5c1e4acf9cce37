"""SASRec: self-attentive sequential recommendation (Kang & McAuley 2018, ICDM).

Item embeddings plus learnable positional embeddings feed a stack of Transformer blocks with causal
multi-head self-attention; the output at position t scores every item by a dot product with the
(tied) item embeddings, and the target is the click at t + 1. Training uses every position of every
session, or (``train_on=prefixes``) every prefix as its own row with the next click as its only
target, the way RecBole trains SASRec: the same targets, each with its own dropout noise, which
generalises better on small data. The loss is a full-softmax cross-entropy (Klenitskiy & Vasilev
2023, "Turning dross into gold loss: is BERT4Rec really better than SASRec?"), or for very large
catalogues a sampled softmax over in-batch and popularity-sampled negatives with logQ correction
(Yi et al. 2019). As an option (``normalize``), scores are scaled cosine similarities between the
session state and the item embeddings, as in NISER (Gupta et al. 2019), which lessens the popularity
bias of dot products.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.dataset import SessionSplit
from seqrec.data.loader import SequenceLoader


@dataclass
class SASRecConfig:
    """Architecture and loss of SASRec; training-loop settings live in ``TrainConfig``."""

    max_len: int = 50
    hidden: int = 64
    blocks: int = 2
    heads: int = 2
    ffn_mult: int = 4  # point-wise feed-forward width = ffn_mult * hidden
    norm_first: bool = True  # pre-LayerNorm blocks; False: post-LayerNorm (the original Transformer)
    emb_scale: bool = True  # multiply item embeddings by sqrt(hidden) before adding positions
    dropout: float = 0.2
    emb_dropout: float = 0.2
    loss: str = "ce"  # ce | sampled
    label_smoothing: float = 0.0
    n_negatives: int = 1024  # sampled softmax: popularity-sampled negatives per batch
    causal: bool = True  # False: the bidirectional encoder of BERT4Rec
    normalize: bool = False  # NISER: logits = logit_scale * cosine(state, item embedding)
    logit_scale: float = 16.0
    train_on: str = "sessions"  # sessions: a target at every position | prefixes: one row per target
    item_mask: float = 0.0  # training only: share of input clicks replaced by the [MASK] token


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: masked multi-head self-attention, then a point-wise feed-forward net."""

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
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if last_only:  # only the last position asks; every position still answers
            q, allowed = q[:, :, -1:], allowed[:, :, -1:]
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.dropout(self.proj(attn.transpose(1, 2).reshape(b, q.shape[2], d)))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``[B, L, hidden]`` -> the same shape, or ``[B, 1, hidden]`` (the last position) if ``last_only``."""
        residual = x[:, -1:] if last_only else x
        if self.norm_first:
            x = residual + self._attend(self.norm1(x), allowed, last_only)
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(residual + self._attend(x, allowed, last_only))
        return self.norm2(x + self.dropout(self.ffn(x)))


class SASRec(nn.Module):
    """The SASRec encoder with tied input/output item embeddings."""

    model_type = "sasrec"

    def __init__(self, n_items: int, config: SASRecConfig, popularity: torch.Tensor | None = None):
        super().__init__()
        self.n_items, self.config = n_items, config
        # n_items + 1 = [MASK]; with a sampled softmax, only the rows a batch touches get gradients
        self.item_emb = nn.Embedding(n_items + 2, config.hidden, padding_idx=0, sparse=config.loss == "sampled")
        self.pos_emb = nn.Embedding(config.max_len, config.hidden)
        self.emb_dropout = nn.Dropout(config.emb_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.hidden, config.heads, config.dropout, config.ffn_mult, config.norm_first)
            for _ in range(config.blocks))
        # pre-LN normalises the output of the last block; post-LN normalises the embeddings instead
        self.final_norm = nn.LayerNorm(config.hidden)
        pop = popularity if popularity is not None else torch.ones(n_items + 1)
        pop = pop.float().clone()
        pop[0] = 0.0
        self.register_buffer("sample_probs", pop / pop.sum(), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
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

    def encode(self, inputs: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``[B, L]`` left-padded ids -> ``[B, L, hidden]`` states; position t sees inputs <= t.

        ``last_only`` returns only the last position's states ``[B, 1, hidden]``, and the last block
        computes its attention queries and feed-forward net for that position alone.

        A click's position is the number of clicks before it in its row (counted from the session's
        start), so the output after a session's t-th click is computed exactly as for a prefix of t
        clicks at inference: training on every position of a session is the same as training on each
        of its prefixes. Leading padding columns can be dropped without changing any output.
        """
        length = inputs.shape[1]
        pad = inputs == 0
        positions = ((~pad).cumsum(1) - 1).clamp_min(0)
        scale = self.config.hidden**0.5 if self.config.emb_scale else 1.0
        x = self.item_emb(inputs) * scale + self.pos_emb(positions)
        if not self.config.norm_first:
            x = self.final_norm(x)
        x = self.emb_dropout(x) * (~pad)[..., None]
        keys = ~pad[:, None, None, :]  # [B, 1, 1, L]: never attend to padding
        if self.config.causal:
            keys = keys & torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()[None, None]
        allowed = keys | torch.eye(length, dtype=torch.bool, device=inputs.device)[None, None]  # no empty rows
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, last_only and i == len(self.blocks) - 1)
        x = x[:, -1:] if last_only else x
        return self.final_norm(x) if self.config.norm_first else x

    def _logits(self, states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Scores of ``states`` [..., hidden] against item embeddings ``weights`` [C, hidden]."""
        if self.config.normalize:
            return self.config.logit_scale * F.normalize(states, dim=-1) @ F.normalize(weights, dim=-1).T
        return states @ weights.T

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` left-padded prefixes -> ``[B, hidden]``: the state that scores the next click."""
        used = (inputs != 0).any(0).nonzero()
        first = int(used[0]) if len(used) else inputs.shape[1] - 1
        return self.encode(inputs[:, first:], last_only=True)[:, -1]

    def score_items(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of the item ids ``items`` [C] (all >= 1) for each state."""
        return self._logits(states, self.item_emb.weight[items]).float()

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        """Scores of every item for the next click after each prefix (column 0 = padding gets -inf)."""
        scores = self._logits(self.session_states(inputs), self.item_emb.weight[: self.n_items + 1]).float()
        scores[:, 0] = -torch.inf
        return scores

    # -- training ---------------------------------------------------------------------------------
    def batches(self, split: SessionSplit, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                rank: int = 0, world_size: int = 1) -> SequenceLoader:
        if self.config.train_on not in ("sessions", "prefixes"):
            raise ValueError(f"train_on={self.config.train_on!r}: expected 'sessions' or 'prefixes'")
        loader = SequenceLoader(split, self.config.max_len, batch_size, shuffle, seed, rank, world_size,
                                prefixes=self.config.train_on == "prefixes")
        loader.set_epoch(epoch)
        return loader

    def forward(self, batch) -> torch.Tensor:
        """The training loss of a batch (what DistributedDataParallel calls)."""
        return self.loss(batch)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean next-item loss over all non-padding positions of the batch."""
        inputs, targets = batch
        if self.training and self.config.item_mask > 0:  # token-level input corruption
            corrupt = (torch.rand(inputs.shape, device=inputs.device) < self.config.item_mask) & (inputs > 0)
            inputs = inputs.masked_fill(corrupt, self.mask_id)
        if self.config.train_on == "prefixes":  # one target per row, after its last click
            states, targets = self.encode(inputs, last_only=True)[:, -1], targets[:, -1]
        else:
            states = self.encode(inputs)
            mask = targets > 0
            states, targets = states[mask], targets[mask]
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
        hit = candidates[None, :] == targets[:, None]
        # the positive is the first candidate equal to the target; duplicates of it are masked out
        first = hit & (hit.cumsum(1) == 1)
        logits = logits.masked_fill(hit & ~first, -torch.inf)
        return F.cross_entropy(logits.float(), first.float().argmax(1))


@dataclass
class BERT4RecConfig(SASRecConfig):
    """BERT4Rec: the SASRec encoder made bidirectional, trained by masked item prediction."""

    causal: bool = False
    mask_ratio: float = 0.2


class BERT4Rec(SASRec):
    """BERT4Rec (Sun et al. 2019, CIKM): "Sequential recommendation with bidirectional encoder
    representations from Transformer".

    Training masks a random ``mask_ratio`` of the clicks of each window (and always the last one in
    a share of the rows, the inference situation) with a ``[MASK]`` token and predicts them with a
    full softmax; at inference the mask is appended after the prefix and its output scores items.
    """

    model_type = "bert4rec"

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """The output at a ``[MASK]`` appended after each prefix."""
        used = (inputs != 0).any(0).nonzero()
        first = int(used[0]) if len(used) else inputs.shape[1] - 1
        masked = torch.cat([inputs[:, first:], torch.full_like(inputs[:, :1], self.mask_id)], 1)
        return self.encode(masked[:, -self.config.max_len :], last_only=True)[:, -1]

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        # the whole window: inputs plus the last target, at most max_len clicks
        sequence = torch.cat([inputs, targets[:, -1:]], 1)[:, -self.config.max_len :]
        real = sequence > 0
        if self.training:
            masked = (torch.rand(sequence.shape, device=sequence.device) < self.config.mask_ratio) & real
            last_only = torch.rand(len(sequence), device=sequence.device) < self.config.mask_ratio
            masked[:, -1] |= last_only
        else:  # validation loss: the inference situation, only the last click is masked
            masked = torch.zeros_like(real)
            masked[:, -1] = True
        masked &= real
        corrupted = sequence.masked_fill(masked, self.mask_id)
        states = self.encode(corrupted)[masked]
        logits = self._logits(states, self.item_emb.weight[1 : self.n_items + 1])
        return F.cross_entropy(logits.float(), sequence[masked] - 1,
                               label_smoothing=self.config.label_smoothing if self.training else 0.0)
