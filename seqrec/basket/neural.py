"""A sequence encoder (SASRec, GRU4Rec: any :class:`~seqrec.models.base.SequenceModel`) with a buy head and
an item-bought head. Tensors in, logits and losses out; no I/O.

The session state is the encoder's ``state_features`` of its ``session_states``. The buy head reads it with
the session features; the item head reads, for each candidate (a clicked item), the state, the encoder's
next-click score of the item (``score_items``), a small item embedding of its own and the candidate's
features. Features are standardised with the training split's mean and deviation (kept as buffers);
unknown ones (NaN) become 0, the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.configs import at_least, check_ranges, ranged, share
from seqrec.models.base import SequenceModel


@dataclass
class BasketNetConfig:
    """The heads' settings; the encoder has its own config (``encoder_config``)."""

    encoder: str = "sasrec"  # sasrec | gru4rec (any registered sequence model)
    head_hidden: int = ranged(64, at_least(1))
    item_dim: int = ranged(16, at_least(1))  # the item head's own item embedding
    dropout: float = ranged(0.3, share())
    item_weight: float = ranged(1.0, at_least(0))  # weight of the item-bought loss next to the buy loss

    def __post_init__(self) -> None:
        check_ranges(f"basket {self.encoder}", self)


class BasketNet(nn.Module):
    """Encoder + buy head + item-bought head (module docstring)."""

    def __init__(self, encoder: SequenceModel, n_session_features: int, n_pair_features: int,
                 config: BasketNetConfig):
        super().__init__()
        self.encoder, self.config = encoder, config
        for module in encoder.modules():  # dense gradients: one optimiser for encoder and heads
            if isinstance(module, nn.Embedding):
                module.sparse = False
        with torch.no_grad():
            d = encoder.eval().state_features(encoder.session_states(torch.ones(1, 1, dtype=torch.long))).shape[1]
        h = config.head_hidden
        self.item_emb = nn.Embedding(encoder.n_items + 1, config.item_dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        self.buy_head = nn.Sequential(nn.Linear(d + n_session_features, h), nn.GELU(), nn.Dropout(config.dropout),
                                      nn.Linear(h, 1))
        self.item_head = nn.Sequential(
            nn.Linear(d + config.item_dim + 1 + n_pair_features + n_session_features, h), nn.GELU(),
            nn.Dropout(config.dropout), nn.Linear(h, 1))
        for name, width in (("session", n_session_features), ("pair", n_pair_features)):
            self.register_buffer(f"{name}_mean", torch.zeros(width))
            self.register_buffer(f"{name}_std", torch.ones(width))

    @property
    def n_items(self) -> int:
        return self.encoder.n_items

    def set_scaling(self, session: torch.Tensor, pair: torch.Tensor) -> None:
        """Standardise features with the mean and deviation of ``session`` [S, g] and ``pair`` [P, f] (NaN-aware)."""
        for name, x in (("session", session), ("pair", pair)):
            mean = torch.nanmean(x.double(), 0)
            std = torch.nanmean((x.double() - mean) ** 2, 0).sqrt()
            getattr(self, f"{name}_mean").copy_(torch.nan_to_num(mean).float())
            getattr(self, f"{name}_std").copy_(torch.nan_to_num(std, nan=1.0).clamp_min(1e-6).float())

    def _scaled(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nan_to_num((x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std"))

    def forward(self, inputs: torch.Tensor, session_features: torch.Tensor, pair_row: torch.Tensor,
                pair_item: torch.Tensor, pair_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(buy [B], item [P])``.

        ``inputs`` [B, L] left-padded clicks, ``session_features`` [B, g], and per candidate its row in the
        batch ``pair_row`` [P], its item ``pair_item`` [P] and its features ``pair_features`` [P, f].
        """
        states = self.encoder.session_states(inputs)
        features = self.encoder.state_features(states)  # [B, d]
        sess = self._scaled(session_features, "session")
        buy = self.buy_head(torch.cat([features, sess], 1)).squeeze(1)
        uniq, column = torch.unique(pair_item, return_inverse=True)
        affinity = self.encoder.score_items(states, uniq)[pair_row, column]  # [P]: next-click score of the item
        pair_in = torch.cat([features[pair_row], self.item_emb(pair_item), affinity[:, None].float(),
                             self._scaled(pair_features, "pair"), sess[pair_row]], 1)
        return buy, self.item_head(pair_in).squeeze(1)

    def loss(self, inputs: torch.Tensor, session_features: torch.Tensor, pair_row: torch.Tensor,
             pair_item: torch.Tensor, pair_features: torch.Tensor, label_buy: torch.Tensor,
             label_pair: torch.Tensor) -> torch.Tensor:
        """Buy cross-entropy over the sessions plus item cross-entropy over the candidates of buying sessions."""
        buy, item = self(inputs, session_features, pair_row, pair_item, pair_features)
        loss = F.binary_cross_entropy_with_logits(buy, label_buy.float())
        of_buyers = label_buy[pair_row]
        if of_buyers.any():
            item_loss = F.binary_cross_entropy_with_logits(item[of_buyers], label_pair[of_buyers].float())
            loss = loss + self.config.item_weight * item_loss
        return loss
