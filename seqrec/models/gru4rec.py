"""GRU4Rec: session-based recommendations with recurrent neural networks.

Hidasi, Karatzoglou, Baltrunas & Tikk 2016 (ICLR), "Session-based recommendations with recurrent
neural networks"; Hidasi & Karatzoglou 2018 (CIKM), "Recurrent neural networks with top-k gains for
session-based recommendations"; and the details that Hidasi & Czapp 2023 ("The effect of third
party implementations on reproducibility") show matter:

* session-parallel mini-batches: each row follows one session click by click; a finished session's
  row takes the next session (sessions ordered by their first click) and only its hidden state is
  reset; no padding; the hidden state is detached after every step (one-step BPTT);
* the output layer scores only the batch's targets plus ``n_sample`` shared negatives drawn from
  popularity ** ``sample_alpha``, taken from a precomputed sample store that is refreshed;
* cross-entropy with logQ correction (``loss="ce"``) or BPR-max with score regularisation and a
  final ELU (``loss="bprmax"``);
* input item embeddings can be tied to the output embeddings (``constrained_embedding``), or be
  separate (``embedding`` > 0), or one-hot style (``embedding`` = 0: per-item GRU input weights);
* uniform init +-sqrt(6 / (fan_in + fan_out)) per gate; dropout on the input embedding and on the
  GRU output in training only; Adagrad with momentum updating only touched rows (``seqrec.optim``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqrec.data.dataset import SessionSplit


@dataclass
class GRU4RecConfig:
    """Architecture, sampling and loss of GRU4Rec; the optimiser lives in ``TrainConfig``."""

    max_len: int = 50  # prefix length used when scoring (evaluation and serving)
    hidden: int = 100
    layers: int = 1
    embedding: int = 0  # 0: one-hot style input; ignored when constrained_embedding is set
    constrained_embedding: bool = True
    loss: str = "ce"  # ce | bprmax
    n_sample: int = 2048
    sample_alpha: float = 0.5
    logq: float = 1.0
    bpreg: float = 1.0
    elu: float = 0.5  # final activation parameter for bpr-max (0 = none)
    dropout_embed: float = 0.0
    dropout_hidden: float = 0.0
    session_order: str = "time"  # time | shuffle
    sample_store: int = 10_000_000  # negatives precomputed at once


def _uniform_(tensor: torch.Tensor, gates: int = 1) -> torch.Tensor:
    """Uniform +-sqrt(6 / (fan_in + fan_out)) for each gate block of a stacked weight."""
    fan_out, fan_in = tensor.shape[0] // gates, tensor.shape[1]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


class SessionParallelBatches:
    """Session-parallel mini-batches of ``(inputs, targets, keep, reset)``.

    ``keep`` selects the rows of the previous hidden state that continue (rows are dropped when no
    session is left to take over), ``reset`` marks the rows that start a new session (state zeroed).
    """

    def __init__(self, split: SessionSplit, batch_size: int, order: np.ndarray):
        self.items = torch.from_numpy(np.asarray(split.items, dtype=np.int64))
        self.offsets, self.order, self.batch_size = split.offsets, order, batch_size
        self.n_steps = sum(1 for _ in self._schedule())  # exact: distributed ranks must agree on it

    def __len__(self) -> int:
        return self.n_steps

    def _schedule(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
        """``(positions, keep, reset)`` of every step, on numpy index arrays only."""
        order, offsets = self.order, self.offsets
        rows = min(self.batch_size, len(order))
        nxt = rows
        pos = offsets[order[:rows]].copy()
        end = offsets[order[:rows] + 1].copy()
        keep, reset = None, np.ones(rows, dtype=bool)
        while len(pos):
            yield pos, keep, reset
            pos = pos + 1
            done = pos + 1 >= end
            n_done = int(done.sum())
            if not n_done:
                keep, reset = None, np.zeros(len(pos), dtype=bool)
                continue
            fresh = order[nxt : nxt + n_done]
            nxt += len(fresh)
            alive = ~done
            alive[np.flatnonzero(done)[: len(fresh)]] = True  # finished rows that get a new session
            restart = done & alive
            pos[restart], end[restart] = offsets[fresh], offsets[fresh + 1]
            keep = alive if not alive.all() else None
            reset = restart[alive]
            pos, end = pos[alive], end[alive]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        for pos, keep, reset in self._schedule():
            p = torch.from_numpy(pos)
            yield (self.items[p], self.items[p + 1], None if keep is None else torch.from_numpy(keep),
                   torch.from_numpy(reset))


class GRU4Rec(nn.Module):
    """GRU4Rec (see the module docstring)."""

    model_type = "gru4rec"

    def __init__(self, n_items: int, config: GRU4RecConfig, popularity: torch.Tensor | None = None):
        super().__init__()
        self.n_items, self.config = n_items, config
        h = config.hidden
        if config.constrained_embedding:
            n_input = h
        elif config.embedding > 0:
            self.E = nn.Embedding(n_items + 1, config.embedding, sparse=True)
            _uniform_(self.E.weight)
            n_input = config.embedding
        else:  # one-hot input: the first layer's input weights are a per-item table
            self.Wx0 = nn.Embedding(n_items + 1, 3 * h, sparse=True)
            _uniform_(self.Wx0.weight.T, gates=3)
            n_input = h
        self.cells = nn.ModuleList(nn.GRUCell(n_input if i == 0 else h, h) for i in range(config.layers))
        if not config.constrained_embedding and config.embedding == 0:
            self.cells[0] = _OneHotGRUCell(self.Wx0, h)
        for cell in self.cells:
            if isinstance(cell, nn.GRUCell):
                _uniform_(cell.weight_ih, gates=3)
                _uniform_(cell.weight_hh, gates=3)
                nn.init.zeros_(cell.bias_ih)
                nn.init.zeros_(cell.bias_hh)
        self.Wy = nn.Embedding(n_items + 1, h, sparse=True)
        _uniform_(self.Wy.weight)
        self.By = nn.Embedding(n_items + 1, 1, sparse=True)
        nn.init.zeros_(self.By.weight)
        self.drop_embed = nn.Dropout(config.dropout_embed)
        self.drop_hidden = nn.Dropout(config.dropout_hidden)
        pop = popularity.float().clone() if popularity is not None else torch.ones(n_items + 1)
        pop[0] = 0.0
        self.register_buffer("log_pop", torch.log(pop.clamp_min(1.0)), persistent=False)
        self.register_buffer("sample_cdf", torch.cumsum(pop**config.sample_alpha, 0) /
                             (pop**config.sample_alpha).sum(), persistent=False)
        self.state: torch.Tensor | None = None
        self._store = torch.zeros(0, 0, dtype=torch.long)
        self._store_pos = 0

    # -- the recurrent step -----------------------------------------------------------------------
    def _input(self, items: torch.Tensor) -> torch.Tensor:
        if self.config.constrained_embedding:
            return self.drop_embed(F.embedding(items, self.Wy.weight, sparse=self.Wy.sparse))
        if self.config.embedding > 0:
            return self.drop_embed(self.E(items))
        return items  # the one-hot cell looks its input weights up itself

    def step(self, items: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One click per row: ``state`` ``[layers, B, hidden]`` -> new state."""
        x = self._input(items)
        new = []
        for i, cell in enumerate(self.cells):
            x = self.drop_hidden(cell(x, state[i]))  # the carried state is the dropped-out output
            new.append(x)
        return torch.stack(new)

    def output_scores(self, hidden: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        if candidates is None:
            return hidden @ self.Wy.weight.T + self.By.weight.T
        w = F.embedding(candidates, self.Wy.weight, sparse=self.Wy.sparse)
        b = F.embedding(candidates, self.By.weight, sparse=self.By.sparse)
        return hidden @ w.T + b.T

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the GRU over each left-padded prefix from a zero state; ``[B, hidden]`` of the top layer."""
        used = (inputs != 0).any(0).nonzero()
        inputs = inputs[:, int(used[0]) if len(used) else inputs.shape[1] - 1 :]
        state = torch.zeros(self.config.layers, len(inputs), self.config.hidden, device=inputs.device)
        for t in range(inputs.shape[1]):
            column = inputs[:, t]
            new = self.step(column, state)
            state = torch.where((column > 0)[None, :, None], new, state)
        return state[-1]

    def score_items(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of the item ids ``items`` [C] for each state."""
        return self.output_scores(states, items).float()

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        """Scores of every item for the next click after each prefix (column 0 = padding gets -inf)."""
        scores = self.output_scores(self.session_states(inputs))
        scores[:, 0] = -torch.inf
        return scores.float()

    # -- training ---------------------------------------------------------------------------------
    def batches(self, split: SessionSplit, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                rank: int = 0, world_size: int = 1) -> SessionParallelBatches:
        starts = split.times[split.offsets[:-1]]
        order = np.argsort(starts, kind="stable")
        if shuffle and self.config.session_order == "shuffle":
            order = np.random.default_rng((seed, epoch)).permutation(order)
        order = order[split.lengths[order] > 1][rank::world_size]
        self.state = None
        if self.training:
            self._refresh_store()
        return SessionParallelBatches(split, batch_size, order)

    def _refresh_store(self) -> None:
        n = self.config.n_sample
        if n <= 0:
            return
        rounds = max(1, self.config.sample_store // n)
        u = torch.rand(rounds * n, device=self.sample_cdf.device)
        self._store = torch.searchsorted(self.sample_cdf, u).clamp_(1, self.n_items).view(rounds, n)
        self._store_pos = 0

    def _negatives(self) -> torch.Tensor | None:
        if self.config.n_sample <= 0:
            return None
        if self._store_pos >= len(self._store):
            self._refresh_store()
        sample = self._store[self._store_pos]
        self._store_pos += 1
        return sample

    def forward(self, batch) -> torch.Tensor:
        """The training loss of a batch (what DistributedDataParallel calls)."""
        return self.loss(batch)

    def loss(self, batch) -> torch.Tensor:
        inputs, targets, keep, reset = batch
        device = inputs.device
        if self.state is None:  # the first batch of a pass over the data
            state = torch.zeros(self.config.layers, len(inputs), self.config.hidden, device=device)
        else:
            state = self.state if keep is None else self.state[:, keep.to(device)]
            state = state.masked_fill(reset.to(device)[None, :, None], 0.0)
        state = self.step(inputs, state)
        self.state = state.detach()  # one-step BPTT
        hidden = state[-1]
        if not self.training:  # validation loss: full softmax over all items
            return F.cross_entropy(self.output_scores(hidden)[:, 1:], targets - 1)
        negatives = self._negatives()
        candidates = targets if negatives is None else torch.cat([targets, negatives.to(device)])
        scores = self.output_scores(hidden, candidates)
        if self.config.loss == "ce":
            if self.config.logq > 0:
                correction = self.log_pop[candidates]
                if negatives is not None:
                    correction = torch.cat([correction[: len(targets)],
                                            correction[len(targets):] * self.config.sample_alpha])
                scores = scores - self.config.logq * correction
            return F.cross_entropy(scores, torch.arange(len(targets), device=device))
        if self.config.loss == "bprmax":
            return self._bpr_max(scores)
        raise ValueError(f"unknown loss {self.config.loss!r}")

    def _bpr_max(self, scores: torch.Tensor) -> torch.Tensor:
        """BPR-max: -log sum_j s_j sigmoid(r_i - r_j) + bpreg * sum_j s_j r_j^2, s = softmax over negatives."""
        if self.config.elu > 0:
            scores = F.elu(scores, self.config.elu)
        n = len(scores)
        target = scores[torch.arange(n), torch.arange(n)][:, None]
        not_target = torch.ones_like(scores, dtype=torch.bool)
        not_target[torch.arange(n), torch.arange(n)] = False
        weights = torch.softmax(scores.masked_fill(~not_target, -torch.inf), dim=1)
        ranking = -torch.log((torch.sigmoid(target - scores) * weights).sum(1) + 1e-24)
        return (ranking + self.config.bpreg * (scores**2 * weights).sum(1)).mean()


class _OneHotGRUCell(nn.Module):
    """First GRU layer with one-hot input: input weights are rows of a sparse per-item table."""

    def __init__(self, table: nn.Embedding, hidden: int):
        super().__init__()
        self.table = table
        self.weight_hh = nn.Parameter(_uniform_(torch.empty(3 * hidden, hidden), gates=3))
        self.bias = nn.Parameter(torch.zeros(3 * hidden))

    def forward(self, items: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = (self.table(items) + self.bias).chunk(3, 1)
        hr, hz, hn = (h @ self.weight_hh.T).chunk(3, 1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h
