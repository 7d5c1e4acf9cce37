"""The sequence-model interface: what the training loop, the evaluator and the server ask of a neural model.

A model is built as ``cls(n_items, config, popularity)`` (``popularity``: training clicks of each item,
``[n_items + 1]``, for losses that sample by popularity) and takes tensors only; item ids are
``1..n_items`` and 0 is padding. It scores in two steps, one state per session and then items
against that state, so that callers can rank a huge catalogue in item chunks of bounded memory:

* ``session_states(inputs [B, L]) -> [B, d]``;
* ``score_items(states [B, d], items [I] | None) -> [B, I]``;
* ``score(inputs [B, L]) -> [B, n_items + 1]`` is the two together, implemented once here.

For training, a model names the batches it learns from (``loader_spec``: a plain description that the
loop turns into a loader of ``seqrec.data``) and turns one of them into a loss. A recurrent model
(``recurrent = True``, GRU4Rec) trains on rows that continue from batch to batch: its
``loss(batch, state)`` also takes the hidden state the loop carries (``None`` at the start of a pass)
and returns ``(loss, state to carry)``, as the loop of the official GRU4Rec does; the module keeps none.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class Windows:
    """Batches ``(inputs, targets)`` of left-padded rows ``[B, W]``, ``W <= max_len``, 0 = padding.

    ``prefixes=False``: one row per window of a session, ``targets`` = ``inputs`` shifted by one click;
    ``prefixes=True``: one row per prefix, only the last column of ``targets`` (the next click) is set.
    """

    max_len: int
    prefixes: bool = False


@dataclass(frozen=True)
class SessionParallel:
    """GRU4Rec's session-parallel batches ``(inputs [B], targets [B], keep, reset, negatives)``.

    Each row follows one session click by click; ``negatives`` (training only, when ``n_negatives > 0``)
    draws ``n_negatives`` shared negatives from popularity ** ``sample_alpha`` out of a store of about
    ``sample_store`` precomputed ones.
    """

    session_order: str = "time"
    n_negatives: int = 0
    sample_alpha: float = 0.0
    sample_store: int = 0


LoaderSpec = Windows | SessionParallel


class SequenceModel(nn.Module, ABC):
    """A neural next-click model: a loss for training, session states and item scores for ranking.

    Subclasses set ``model_type`` (the registry name) and ``config_class`` (a dataclass with at least
    ``max_len``, the clicks of a prefix that are scored) and keep ``n_items`` and ``config``.
    """

    model_type: ClassVar[str]
    config_class: ClassVar[type]
    recurrent: ClassVar[bool] = False
    n_items: int
    config: Any

    @abstractmethod
    def loader_spec(self) -> LoaderSpec:
        """The batches this model trains on."""

    @abstractmethod
    def loss(self, batch: Any) -> torch.Tensor:
        """The mean training loss of one batch of ``loader_spec``'s kind, a scalar tensor.

        In ``eval()`` mode: the validation loss (no dropout, no sampling where the model can avoid it). A recurrent
        model (``recurrent = True``) has ``loss(batch, state) -> (loss, state to carry)`` instead: ``state`` is the
        hidden state the loop carries from the previous batch (``None`` at the start of a pass).
        """

    @abstractmethod
    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``[B, L]`` LongTensor of left-padded prefixes -> ``[B, d]``: what scores the next click."""

    @abstractmethod
    def score_items(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Float scores ``[B, I]`` of item ids ``items`` ``[I]`` for ``states`` ``[B, d]``.

        ``items=None``: every id, padding included, ``[B, n_items + 1]``.
        """

    def state_features(self, states: torch.Tensor) -> torch.Tensor:
        """The part of ``states`` that describes the session as a feature vector (what a head such as the
        basket's reads): all of it, unless the model packs more into its states."""
        return states

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` left-padded prefixes -> scores ``[B, n_items + 1]`` of the next click; padding gets -inf."""
        states = self.session_states(inputs)
        scores = self.score_items(states)  # [B, n_items + 1]
        scores[:, 0] = -torch.inf
        return scores

    def forward(self, *batch: Any) -> Any:
        """The loss (what ``DistributedDataParallel`` and ``torch.compile`` wrappers call)."""
        return self.loss(*batch)
