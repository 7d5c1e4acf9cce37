"""The MLflow pyfunc model: raw item ids in, top-k raw item ids and scores out
(docs/protocol.md, "Recommendation requests").

The model is logged from code (``seqrec/serving/mlflow_model.py``) with the ``seqrec`` package as its
code path and the saved recommender (:mod:`seqrec.serving.artifacts`) as its one artifact;
``load_context`` rebuilds the recommender from those files. ``k`` is an inference parameter
(``params={"k": 5}``, default 20); an input row's own ``k`` (a ``k`` column, or ``k`` in a dict
input) takes precedence for that row.

The signature's ``session`` column holds lists of any item ids (strings or integers, as in the data), which
MLflow passes through unconverted. The optional ``k`` column is of any type too, checked here: a whole number,
or missing (``None``/``NaN``, what ``mlflow.pyfunc.spark_udf`` sends when it is called with the ``session``
column alone; a ``long`` column would refuse it, a ``double`` one would refuse integers).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel  # not mlflow.pyfunc.PythonModel: mypy sees mlflow.pyfunc as a lazy loader
from mlflow.types.schema import AnyType, Array, ColSpec, ParamSchema, ParamSpec, Schema

from seqrec.serving.recommender import DEFAULT_K, RequestError, ServedModel, predicts_baskets

ARTIFACT = "recommender"


def _row_k(value: Any, default: int) -> int:
    """A row's ``k``: ``default`` when missing, else a whole number (``7`` or ``7.0``; not ``7.5`` nor ``"7"``)."""
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value)):
        return default
    number = isinstance(value, int | np.integer | float | np.floating) and not isinstance(value, bool | np.bool_)
    if not number or not float(value).is_integer():
        raise RequestError(f"k must be a whole number, got {value!r}")
    return int(value)


def parse_sessions(model_input: Any, k: int = DEFAULT_K) -> tuple[list[list], list[int]]:
    """Sessions and each session's ``k`` from a DataFrame (columns ``session``, optional ``k``), a
    dict (``session`` or ``sessions``, optional ``k``) or a list of sessions; ``k`` is the default."""
    if isinstance(model_input, pd.DataFrame):
        if "session" not in model_input.columns:
            raise RequestError("input needs a 'session' column holding lists of item ids")
        sessions = [list(s) if s is not None and not isinstance(s, str) else [] for s in model_input["session"]]
        ks = [_row_k(v, k) for v in model_input["k"]] if "k" in model_input.columns else [k] * len(sessions)
        return sessions, ks
    if isinstance(model_input, dict):
        k = _row_k(model_input.get("k"), k)
        if "sessions" in model_input:
            sessions = [list(s) for s in model_input["sessions"]]
        elif "session" in model_input:
            sessions = [list(model_input["session"])]
        else:
            raise RequestError("input needs 'session' (a list of item ids) or 'sessions' (a list of lists)")
        return sessions, [k] * len(sessions)
    if isinstance(model_input, list):
        return [list(s) for s in model_input], [k] * len(model_input)
    raise RequestError(f"unsupported input type {type(model_input).__name__}")


class SeqrecPyfunc(PythonModel):
    """pyfunc flavour of a :class:`Recommender`; answers with columns ``items`` and ``scores`` (a basket model,
    :class:`~seqrec.serving.basket.BasketPredictor`, also with ``buy_probability`` and ``basket``)."""

    recommender: ServedModel | None = None  # set by load_context

    def load_context(self, context) -> None:
        from seqrec.serving.artifacts import load_recommender

        self.recommender = load_recommender(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Answers for the sessions of ``model_input``: a DataFrame as the signature delivers it (a dict or a list
        of sessions is read too, see :func:`parse_sessions`)."""
        if self.recommender is None:
            raise RuntimeError("no recommender: load_context was not called")
        k = int((params or {}).get("k", DEFAULT_K))
        sessions, ks = parse_sessions(model_input, k)
        if predicts_baskets(self.recommender):  # a basket model: buy probability, items, scores, basket
            answers = self.recommender.predict_each(sessions, ks)
            return pd.DataFrame({"buy_probability": [a.buy_probability for a in answers],
                                 "items": [a.items for a in answers], "scores": [a.scores for a in answers],
                                 "basket": [a.basket for a in answers]})
        recs = self.recommender.recommend(sessions, ks)
        return pd.DataFrame({"items": [r.items for r in recs], "scores": [r.scores for r in recs]})


SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array(AnyType()), "session"), ColSpec(AnyType(), "k", required=False)]),
    outputs=Schema([ColSpec(Array("string"), "items"), ColSpec(Array("double"), "scores")]),
    params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
)
BASKET_SIGNATURE = ModelSignature(
    inputs=SIGNATURE.inputs,
    outputs=Schema([ColSpec("double", "buy_probability"), ColSpec(Array("string"), "items"),
                    ColSpec(Array("double"), "scores"), ColSpec(Array("string"), "basket")]),
    params=SIGNATURE.params,
)


def signature_of(model: Any) -> ModelSignature:
    """The signature of a recommender, or of a basket predictor (buy probability and basket added)."""
    from seqrec.serving.basket import BasketPredictor

    return BASKET_SIGNATURE if isinstance(model, BasketPredictor) else SIGNATURE
