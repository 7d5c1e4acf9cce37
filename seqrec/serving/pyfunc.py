"""The MLflow pyfunc model: raw item ids in, top-k raw item ids and scores out (PROTOCOL 6).

Any scorer (baseline or neural) is wrapped the same way. Unknown items are ignored, an empty or
all-unknown session gets the most popular items, and long sessions keep their last ``max_len``
clicks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, Schema

from seqrec.evaluation import device_of

DEFAULT_K = 20
MAX_K = 1000


@dataclass
class Recommendation:
    items: list[str]
    scores: list[float]


class RequestError(ValueError):
    """A request that does not follow PROTOCOL 6; the message names the field."""


class Recommender:
    """Turns raw-id sessions into top-k raw-id recommendations with a fitted scorer."""

    def __init__(self, scorer: Any, raw_ids: np.ndarray, popularity: np.ndarray, max_len: int):
        self.scorer = scorer
        self.raw_ids = np.asarray(raw_ids, dtype=object)  # dense id -> raw id string, index 0 = padding
        self.index = {str(raw): i for i, raw in enumerate(self.raw_ids) if i > 0}
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.max_len = max_len
        if isinstance(scorer, torch.nn.Module):
            scorer.eval()

    @property
    def n_items(self) -> int:
        return len(self.raw_ids) - 1

    def encode(self, session: list) -> list[int]:
        """Dense ids of the known items of ``session`` (last ``max_len``), unknown ones dropped."""
        ids = [self.index[str(x)] for x in session if str(x) in self.index]
        return ids[-self.max_len :]

    @torch.no_grad()
    def recommend(self, sessions: list[list], k: int = DEFAULT_K) -> list[Recommendation]:
        if not 1 <= k <= MAX_K:
            raise RequestError(f"k must be between 1 and {MAX_K}, got {k}")
        k = min(k, self.n_items)
        encoded = [self.encode(s) for s in sessions]
        inputs = np.zeros((len(encoded), self.max_len), dtype=np.int64)
        for row, ids in enumerate(encoded):
            if ids:
                inputs[row, -len(ids) :] = ids
        known = inputs[:, -1] > 0
        scores = np.tile(self.popularity, (len(encoded), 1))
        if known.any():
            batch = torch.from_numpy(inputs[known]).to(device_of(self.scorer))
            scores[known] = self.scorer.score(batch).float().cpu().numpy()
        scores[:, 0] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] - 1 else None
        out = []
        for row in range(len(encoded)):
            candidates = top[row] if top is not None else np.arange(1, scores.shape[1])
            order = candidates[np.argsort(-scores[row, candidates], kind="stable")][:k]
            out.append(Recommendation([str(self.raw_ids[i]) for i in order], scores[row, order].astype(float).tolist()))
        return out


def parse_sessions(model_input: Any) -> tuple[list[list], int]:
    """Sessions and k from a DataFrame (columns ``session``, optional ``k``), a dict or a list."""
    if isinstance(model_input, pd.DataFrame):
        if "session" not in model_input.columns:
            raise RequestError("input needs a 'session' column holding lists of item ids")
        sessions = [list(s) if s is not None and not isinstance(s, str) else [] for s in model_input["session"]]
        k = int(model_input["k"].iloc[0]) if "k" in model_input.columns and len(model_input) else DEFAULT_K
        return sessions, k
    if isinstance(model_input, dict):
        k = int(model_input.get("k", DEFAULT_K))
        if "sessions" in model_input:
            return [list(s) for s in model_input["sessions"]], k
        if "session" in model_input:
            return [list(model_input["session"])], k
        raise RequestError("input needs 'session' (a list of item ids) or 'sessions' (a list of lists)")
    if isinstance(model_input, list):
        return [list(s) for s in model_input], DEFAULT_K
    raise RequestError(f"unsupported input type {type(model_input).__name__}")


with warnings.catch_warnings():  # MLflow suggests type hints; the signature below describes the input
    warnings.simplefilter("ignore")

    class SeqrecPyfunc(mlflow.pyfunc.PythonModel):
        """pyfunc flavour of a :class:`Recommender`; answers with columns ``items`` and ``scores``."""

        def __init__(self, recommender: Recommender):
            self.recommender = recommender

        def predict(self, context, model_input, params: dict | None = None) -> pd.DataFrame:
            sessions, k = parse_sessions(model_input)
            if params and "k" in params:
                k = int(params["k"])
            recs = self.recommender.recommend(sessions, k)
            return pd.DataFrame({"items": [r.items for r in recs], "scores": [r.scores for r in recs]})


SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array(AnyType()), "session"), ColSpec("long", "k", required=False)]),
    outputs=Schema([ColSpec(Array("string"), "items"), ColSpec(Array("double"), "scores")]),
)
