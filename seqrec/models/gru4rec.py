"""GRU4Rec: session-based recommendations with recurrent neural networks.

Hidasi, Karatzoglou, Baltrunas & Tikk 2016 (ICLR), "Session-based recommendations with recurrent
neural networks"; Hidasi & Karatzoglou 2018 (CIKM), "Recurrent neural networks with top-k gains for
session-based recommendations"; and the details that Hidasi & Czapp 2023 ("The effect of third
party implementations on reproducibility") show matter:

* session-parallel mini-batches (``seqrec.data.session_parallel``): each row follows one session click
  by click; a finished session's row takes the next session and only its hidden state is reset; no
  padding; the loop carries the hidden state from step to step, detached (one-step BPTT);
* the output layer scores only the batch's targets plus ``n_negatives`` shared negatives drawn from
  popularity ** ``sample_alpha``;
* a sampled softmax: cross-entropy over those candidates with logQ correction (``loss="sampled"``), or
  BPR-max with score regularisation and a final ELU (``loss="bprmax"``);
* input item embeddings can be tied to the output embeddings (``constrained_embedding``), or be
  separate (``embedding`` > 0), or one-hot style (``embedding`` = 0: per-item GRU input weights);
* uniform init +-sqrt(6 / (fan_in + fan_out)) per gate; dropout on the input embedding and on the
  GRU output in training only; Adagrad with momentum updating only touched rows (``seqrec.optim``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.configs import RangeError, at_least, check_ranges, in_range, one_of, ranged, share
from seqrec.models.base import SequenceModel, SessionParallel


@dataclass
class GRU4RecConfig:
    """Architecture, sampling and loss of GRU4Rec; the optimiser lives in ``TrainConfig``."""

    max_len: int = ranged(50, at_least(1))  # prefix length used when scoring (evaluation and serving)
    hidden: int = ranged(100, at_least(1))  # GRU units per layer
    layers: int = ranged(1, at_least(1))  # stacked GRU layers
    # input embedding width, 0: one-hot style input (constrained_embedding=False only)
    embedding: int = ranged(0, at_least(0))
    constrained_embedding: bool = True  # the input embeddings are the output item weights
    # sampled: softmax over the batch's targets and the shared negatives, logQ-corrected | bprmax: BPR-max
    loss: str = ranged("sampled", one_of("sampled", "bprmax"))
    n_negatives: int = ranged(2048, at_least(0))  # shared negatives per step (0: the batch's other targets only)
    sample_alpha: float = ranged(0.5, in_range(0, 1))  # negatives are drawn from popularity ** sample_alpha
    logq: float = ranged(1.0, at_least(0))  # weight of the logQ correction (sampled)
    bpreg: float = ranged(1.0, at_least(0))  # score regularisation of BPR-max
    elu: float = ranged(0.5, at_least(0))  # final activation parameter for bpr-max (0 = none)
    emb_dropout: float = ranged(0.0, share())  # dropout on the input embedding
    dropout: float = ranged(0.0, share())  # dropout on each GRU layer's output
    # time: sessions by first click | shuffle: a new order every epoch
    session_order: str = ranged("time", one_of("time", "shuffle"))
    sample_store: int = ranged(10_000_000, at_least(0))  # negatives precomputed at once

    # the names and values these settings had before the models shared one vocabulary (docs/models.md)
    aliases: ClassVar[dict[str, str]] = {"dropout_embed": "emb_dropout", "dropout_hidden": "dropout",
                                         "n_sample": "n_negatives"}
    value_aliases: ClassVar[dict[str, dict[str, str]]] = {"loss": {"ce": "sampled"}}

    def __post_init__(self) -> None:
        check_ranges("gru4rec", self)
        if self.constrained_embedding and self.embedding:
            raise RangeError("gru4rec", f"embedding={self.embedding} applies only with constrained_embedding=False")


def _uniform_(tensor: torch.Tensor, gates: int = 1) -> torch.Tensor:
    """Uniform +-sqrt(6 / (fan_in + fan_out)) for each gate block of a stacked weight."""
    fan_out, fan_in = tensor.shape[0] // gates, tensor.shape[1]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


SessionBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor,
                     Callable[[], torch.Tensor] | None]


class GRU4Rec(SequenceModel):
    """GRU4Rec (see the module docstring)."""

    model_type = "gru4rec"
    config_class = GRU4RecConfig
    log_pop: torch.Tensor  # buffer: log of each item's training clicks (logQ correction)
    recurrent = True
    search_space: ClassVar[dict[str, str]] = {  # what ``tune`` searches (``seqrec.tuning``'s syntax)
        "lr": "loguniform:0.01:0.3",
        "hidden": "choice:100:200:480",
        "dropout": "uniform:0:0.6",
        "n_negatives": "choice:0:512:2048",
        "sample_alpha": "uniform:0:1",
        "momentum": "uniform:0:0.9",
        "batch_size": "choice:32:64:128",
    }

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
        self.emb_drop = nn.Dropout(config.emb_dropout)
        self.drop = nn.Dropout(config.dropout)
        pop = popularity.float().clone() if popularity is not None else torch.ones(n_items + 1)
        pop[0] = 0.0
        self.register_buffer("log_pop", torch.log(pop.clamp_min(1.0)), persistent=False)

    def loader_spec(self) -> SessionParallel:
        c = self.config
        return SessionParallel(c.session_order, c.n_negatives, c.sample_alpha, c.sample_store)

    # -- the recurrent step -----------------------------------------------------------------------
    def _input(self, items: torch.Tensor) -> torch.Tensor:
        if self.config.constrained_embedding:
            return self.emb_drop(F.embedding(items, self.Wy.weight, sparse=self.Wy.sparse))
        if self.config.embedding > 0:
            return self.emb_drop(self.E(items))
        return items  # the one-hot cell looks its input weights up itself

    def step(self, items: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One click per row: ``state`` ``[layers, B, hidden]`` -> new state."""
        x = self._input(items)
        new = []
        for i, cell in enumerate(self.cells):
            x = self.drop(cell(x, state[i]))  # the carried state is the dropped-out output
            new.append(x)
        return torch.stack(new)

    def _logits(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden`` ``[B, hidden]`` -> scores ``[B, C]`` of ``items`` ``[C]`` (None: every id)."""
        if items is None:
            return hidden @ self.Wy.weight.T + self.By.weight.T
        w = F.embedding(items, self.Wy.weight, sparse=self.Wy.sparse)
        b = F.embedding(items, self.By.weight, sparse=self.By.sparse)
        return hidden @ w.T + b.T

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the GRU over each left-padded prefix from a zero state; ``[B, hidden]`` of the top layer."""
        used = (inputs != 0).any(0).nonzero()
        inputs = inputs[:, int(used[0]) if len(used) else inputs.shape[1] - 1 :]
        state = torch.zeros(self.config.layers, len(inputs), self.config.hidden, device=inputs.device)
        for t in range(inputs.shape[1]):
            column = inputs[:, t]
            new = self.step(column, state)
            state = torch.where((column > 0)[None, :, None], new, state)  # padding leaves the state as it is
        return state[-1]

    def score_items(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return self._logits(states, items).float()

    # -- training ---------------------------------------------------------------------------------
    def _carried(self, state: torch.Tensor | None, batch: SessionBatch) -> torch.Tensor:
        """The state entering this step: the carried rows that continue, zeros for new sessions."""
        inputs, _, keep, reset, _ = batch
        if state is None:  # the first step of a pass over the data
            return torch.zeros(self.config.layers, len(inputs), self.config.hidden, device=inputs.device)
        state = state if keep is None else state[:, keep]
        return state.masked_fill(reset[None, :, None], 0.0)

    # the recurrent signature that ``SequenceModel.loss`` documents for ``recurrent = True`` models
    def loss(self, batch: SessionBatch,  # type: ignore[override]
             state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of one session-parallel step, and the hidden state ``[layers, B, hidden]`` to carry on.

        ``batch`` is ``(inputs [B], targets [B], keep, reset, negatives)`` (``seqrec.data.session_parallel``);
        the state coming out is detached, so gradients never reach back beyond this step.
        """
        inputs, targets, _, _, negatives = batch
        state = self.step(inputs, self._carried(state, batch))
        hidden = state[-1]
        if not self.training:  # validation loss: full softmax over all items
            return F.cross_entropy(self._logits(hidden)[:, 1:], targets - 1), state.detach()
        sample = negatives() if negatives is not None else None
        candidates = targets if sample is None else torch.cat([targets, sample])
        scores = self._logits(hidden, candidates)  # [B, B + n_negatives]: column i is row i's target
        if self.config.loss == "bprmax":
            return self._bpr_max(scores), state.detach()
        if self.config.logq > 0:
            correction = self.log_pop[candidates]
            if sample is not None:
                correction = torch.cat([correction[: len(targets)],
                                        correction[len(targets):] * self.config.sample_alpha])
            scores = scores - self.config.logq * correction
        return F.cross_entropy(scores, torch.arange(len(targets), device=scores.device)), state.detach()

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
