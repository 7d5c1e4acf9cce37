"""The ``evaluate`` step: score any logged or registered model on a processed dataset's test split."""

from __future__ import annotations

import mlflow
import numpy as np
import torch

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import device_of, evaluate
from seqrec.serving.pyfunc import Recommender
from seqrec.workflow.report import log_test_result


class RemappedScorer:
    """Adapts a model trained with another item mapping to a dataset's dense ids.

    Dataset items unknown to the model become padding in the input and score -inf in the output.
    """

    def __init__(self, recommender: Recommender, data: ProcessedDataset):
        self.scorer = recommender.scorer
        to_model = np.array([recommender.index.get(str(raw), 0) for raw in data.raw_ids], dtype=np.int64)
        to_model[0] = 0
        self.to_model = torch.from_numpy(to_model)
        self.device = device_of(self.scorer)

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        mapped = self.to_model.to(inputs.device)[inputs]
        scores = self.scorer.score(mapped).float()
        out = scores[:, self.to_model.to(scores.device)]
        out[:, self.to_model == 0] = -torch.inf
        return out


def run_id_of(model_uri: str) -> str:
    """The training run behind ``runs:/<id>/...`` or ``models:/<name>@<alias>`` / ``models:/<name>/<v>``."""
    if model_uri.startswith("runs:/"):
        return model_uri[len("runs:/"):].split("/")[0]
    if model_uri.startswith("models:/"):
        client = mlflow.MlflowClient()
        name, _, alias = model_uri[len("models:/"):].partition("@")
        if alias:
            return client.get_model_version_by_alias(name, alias).run_id
        name, _, version = name.partition("/")
        return client.get_model_version(name, version).run_id
    return ""


def run_evaluate(data_dir: str, model_uri: str, nested: bool = False) -> tuple[str, dict[str, float]]:
    """Evaluate ``model_uri`` on the test split in its own run, tagged with the evaluated run's id."""
    data = ProcessedDataset.load(data_dir)
    recommender = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().recommender
    same_mapping = len(recommender.raw_ids) == len(data.raw_ids) and all(
        str(a) == str(b) for a, b in zip(recommender.raw_ids[1:], data.raw_ids[1:], strict=True))
    scorer = recommender.scorer if same_mapping else RemappedScorer(recommender, data)
    evaluated = run_id_of(model_uri)
    tags = {"seqrec.evaluated_run_id": evaluated, "seqrec.model_uri": model_uri, **tracking.dataset_tags(data.stats)}
    if evaluated:
        tags[tracking.TAG_MODEL] = mlflow.get_run(evaluated).data.tags.get(tracking.TAG_MODEL, "")
    with tracking.start_run("evaluate", tags=tags, nested=nested, run_name=f"evaluate-{data.name}") as run:
        tracking.log_params({"data": data_dir, "model_uri": model_uri, "same_item_mapping": same_mapping})
        result = evaluate(scorer, data.split("test"), data.n_items, recommender.max_len, popularity=data.popularity,
                          desc="evaluate")
        log_test_result(result)
        return run.info.run_id, result.prefixed("test")
