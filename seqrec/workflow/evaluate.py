"""The ``evaluate`` step: score any logged or registered model on a processed dataset's test split.

The model is resolved by MLflow from any model URI (``runs:/<id>/model``, ``models:/<name>@<alias>``,
``models:/<name>/<version>``, ``models:/<name>/latest``, ``models:/m-<id>``). A model trained with
another item mapping is evaluated through its raw item ids: the step states how many of the dataset's
items and test clicks the model knows, warns when that share is low, and scores a session whose items
are all unknown like an empty session (the model's most popular items).
"""

from __future__ import annotations

import sys

import mlflow
import numpy as np
import torch
from mlflow.entities import LoggedModelInput

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset, SessionSplit
from seqrec.evaluation import evaluate
from seqrec.serving.recommender import Recommender
from seqrec.workflow.report import log_inputs, log_test_plots

LOW_COVERAGE = 0.5  # below this share of known test clicks the step warns


def model_ids(recommender: Recommender, raw_ids: np.ndarray) -> np.ndarray:
    """The model's dense id of each dataset item (index = the dataset's dense id); 0 where unknown."""
    to_model = np.array([recommender.index.get(str(raw), 0) for raw in raw_ids], dtype=np.int64)
    to_model[0] = 0
    return to_model


class RemappedScorer:
    """Scores a dataset's dense ids with a recommender trained on another item mapping.

    Inputs are translated to the model's ids; unknown clicks are dropped (the known ones stay in
    order, left-padded); a row with no known click gets the model's popularity scores. Dataset items
    unknown to the model score -inf.
    """

    def __init__(self, recommender: Recommender, to_model: np.ndarray):
        self.recommender = recommender
        self.to_model = torch.from_numpy(to_model)
        self.known = self.to_model > 0

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` dataset ids -> ``[B, n_items + 1]`` float32 scores of the dataset's items."""
        mapped = self.to_model[inputs.cpu()]  # [B, L], 0 = padding or unknown
        order = torch.argsort((mapped > 0).to(torch.int8), dim=1, stable=True)  # unknown to the left, in order
        scores = self.recommender.score(mapped.gather(1, order))  # [B, model items + 1]
        out = scores[:, self.to_model]  # [B, dataset items + 1]
        out[:, ~self.known] = -torch.inf
        return out


def known_shares(to_model: np.ndarray, test: SessionSplit) -> dict[str, float]:
    """How much of the dataset the model knows: items, test clicks, test sessions with a known click."""
    known = to_model > 0
    click_known = known[test.items]
    session_known = np.add.reduceat(click_known.astype(np.int64), test.offsets[:-1]) > 0
    return {"known_items_share": float(known[1:].mean()), "known_test_clicks_share": float(click_known.mean()),
            "known_test_sessions_share": float(session_known.mean())}


def run_evaluate(data_dir: str, model_uri: str, nested: bool = False) -> tuple[str, dict[str, float]]:
    """Evaluate ``model_uri`` on the test split in its own run, linked to the evaluated model."""
    data = ProcessedDataset.load(data_dir)
    info = mlflow.models.get_model_info(model_uri)
    recommender = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().recommender
    to_model = model_ids(recommender, data.raw_ids)
    same_mapping = len(to_model) == len(recommender.raw_ids) and bool((to_model == np.arange(len(to_model))).all())
    shares = known_shares(to_model, data.split("test"))
    if shares["known_test_clicks_share"] < LOW_COVERAGE:
        print(f"evaluate: WARNING: the model knows only {shares['known_test_clicks_share']:.1%} of the test clicks "
              f"and {shares['known_items_share']:.1%} of the items of {data.name}: it was trained on other data, "
              f"so these metrics measure mostly its popularity fallback", file=sys.stderr)
    scorer = recommender.scorer if same_mapping else RemappedScorer(recommender, to_model)
    tags = {"seqrec.evaluated_run_id": info.run_id or "", "seqrec.evaluated_model_id": info.model_id or "",
            "seqrec.model_uri": model_uri, **tracking.dataset_tags(data.stats)}
    if info.run_id:
        tags[tracking.TAG_MODEL] = mlflow.get_run(info.run_id).data.tags.get(tracking.TAG_MODEL, "")
    with tracking.start_run("evaluate", tags=tags, nested=nested, run_name=f"evaluate-{data.name}") as run:
        tracking.log_params({"data": data_dir, "model_uri": model_uri, "same_item_mapping": same_mapping})
        datasets = log_inputs(data, ("test",))
        if info.model_id:  # the evaluated model, linked as the run's input model
            mlflow.log_input(model=LoggedModelInput(info.model_id))
        result = evaluate(scorer, data.split("test"), data.n_items, recommender.max_len, popularity=data.popularity,
                          desc="evaluate")
        metrics = {**result.prefixed("test"), **shares}
        tracking.log_metrics_at(metrics, model_id=info.model_id, dataset=datasets["test"])
        log_test_plots(result)
        return run.info.run_id, metrics
