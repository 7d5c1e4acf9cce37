"""Training and scoring of :class:`~seqrec.basket.neural.BasketNet` on the arrays of a
:class:`~seqrec.basket.features.Features`: session batches, their candidates, one pass per epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seqrec.basket.features import Features
from seqrec.basket.metrics import BasketPredictions
from seqrec.basket.neural import BasketNet
from seqrec.configs import above, at_least, check_ranges, ranged
from seqrec.data.dataset import gather_windows


@dataclass
class BasketTrainConfig:
    """The loop's settings (epochs are chosen on valid, up to ``epochs``)."""

    epochs: int = ranged(6, at_least(1))
    batch_size: int = ranged(256, at_least(1))
    lr: float = ranged(1e-3, above(0))
    weight_decay: float = ranged(0.1, at_least(0))
    clip: float = ranged(1.0, at_least(0))  # gradient 2-norm limit (0: no clipping)
    patience: int = ranged(2, at_least(1))  # epochs without a better validation challenge score before stopping
    seed: int = ranged(0, at_least(0))
    threads: int = ranged(0, at_least(0))  # torch CPU threads (0: torch's default; 1 is fastest on a busy machine)

    def __post_init__(self) -> None:
        check_ranges("BasketTrainConfig", self)


def batch_tensors(features: Features, rows: np.ndarray, max_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of the sessions ``rows`` (indices into ``features``): left-padded clicks, session features,
    and their candidates (row in the batch, item, features, labels when known)."""
    items, offsets, cands = features.items, features.offsets, features.candidates
    if items is None or offsets is None:
        raise ValueError("the sequence models need the sessions' clicks (Features.items and .offsets)")
    windows = gather_windows(items, offsets[rows], offsets[rows + 1], max_len)
    first, counts = cands.start[rows], cands.start[rows + 1] - cands.start[rows]
    pair_row = np.repeat(np.arange(len(rows)), counts)
    pair = np.repeat(first - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
    out = {
        "inputs": torch.from_numpy(windows.astype(np.int64)),
        "session_features": torch.from_numpy(features.session[rows]),
        "pair_row": torch.from_numpy(pair_row),
        "pair_item": torch.from_numpy(cands.item[pair]),
        "pair_features": torch.from_numpy(features.pair[pair]),
    }
    if features.label_buy is not None:
        assert features.label_pair is not None, "labels give both label_buy and label_pair"
        out["label_buy"] = torch.from_numpy(features.label_buy[rows])
        out["label_pair"] = torch.from_numpy(features.label_pair[pair])
    return {k: v.to(device) for k, v in out.items()}


def make_optimizer(net: BasketNet, cfg: BasketTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_epoch(net: BasketNet, optimizer: torch.optim.Optimizer, train: Features, cfg: BasketTrainConfig,
                rng: np.random.Generator) -> float:
    """One pass over the training sessions in a random order; returns the mean loss."""
    net.train()
    device = next(net.parameters()).device
    order = rng.permutation(train.n_sessions)
    total, batches = 0.0, 0
    for lo in range(0, len(order), cfg.batch_size):
        rows = np.sort(order[lo : lo + cfg.batch_size])
        loss = net.loss(**batch_tensors(train, rows, net.encoder.config.max_len, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    return total / max(batches, 1)


@torch.no_grad()
def predict(net: BasketNet, features: Features, batch_size: int = 1024) -> BasketPredictions:
    """Buy probabilities and candidate bought probabilities of every session of ``features``."""
    net.eval()
    device = next(net.parameters()).device
    buys, scores = [], []
    for lo in range(0, features.n_sessions, batch_size):
        rows = np.arange(lo, min(lo + batch_size, features.n_sessions))
        batch = batch_tensors(features, rows, net.encoder.config.max_len, device)
        batch.pop("label_buy", None)
        batch.pop("label_pair", None)
        buy, item = net(**batch)
        buys.append(torch.sigmoid(buy).double().cpu().numpy())
        scores.append(torch.sigmoid(item).double().cpu().numpy())
    c = features.candidates
    empty = np.zeros(0)
    return BasketPredictions(np.concatenate(buys) if buys else empty, c.session, c.item,
                             np.concatenate(scores) if scores else empty)


class NeuralBasket:
    """A trained :class:`BasketNet` behind the same ``predict(features)`` as the array models."""

    def __init__(self, net: BasketNet, encoder_config: dict) -> None:
        self.net, self.encoder_config = net, encoder_config
        self.name = net.config.encoder

    @property
    def config(self):
        return self.net.config

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def predict(self, features: Features) -> BasketPredictions:
        return predict(self.net, features)
