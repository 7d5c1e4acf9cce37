"""What every training and evaluate step logs the same way: dataset inputs, the LoggedModel, and
the final metrics (``best_val_*``, ``test_*``) linked to that model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import EvalResult
from seqrec.serving.recommender import Recommender
from seqrec.workflow.plots import plot_by_length

TRAINING_SPLITS = ("train_tr", "valid", "train_full", "test")


def log_inputs(data: ProcessedDataset, splits: tuple[str, ...] = TRAINING_SPLITS) -> dict[str, tracking.SplitDataset]:
    """Log the dataset's ``splits`` as the active run's inputs (context = split name); returns them."""
    datasets = {s: tracking.split_dataset(data.path, data.name, data.digest, s, data.stats) for s in splits}
    tracking.log_split_inputs(datasets)
    return datasets


def log_test_plots(result: EvalResult) -> None:
    """The by-length breakdown of a test evaluation, as JSON and as a plot."""
    tracking.log_json(result.by_length, "test_by_length.json")
    with tempfile.TemporaryDirectory() as tmp:
        png = plot_by_length(result, Path(tmp) / "test_by_length.png", "Test accuracy by prefix length")
        mlflow.log_artifact(str(png), "plots")


def log_trained_model(scorer, data: ProcessedDataset, max_len: int, tags: dict[str, str],
                      params: dict | None = None) -> str:
    """Wrap ``scorer`` for raw ids, log it as the run's LoggedModel ``model`` with the run's tags and
    the model's parameters, and log the dataset's ``item_mapping.json``; returns the model id."""
    recommender = Recommender(scorer, data.raw_ids, data.popularity, max_len)
    test = data.split("test")
    example = [str(data.raw_ids[i]) for i in test.items[test.offsets[0] : test.offsets[1]]]
    info = tracking.log_model(recommender, example, params=params, tags=tags,
                              model_type=tags.get(tracking.TAG_MODEL, ""))
    mlflow.log_artifact(str(data.path / "item_mapping.json"))
    return info.model_id


def log_final_metrics(model_id: str, datasets: dict[str, tracking.SplitDataset], best_val: dict[str, float],
                      test: EvalResult, extra: dict[str, float]) -> None:
    """``best_val_*`` (validation Recall/MRR/NDCG at the selected epoch, linked to the valid split), ``test_*``
    (linked to the test split) and ``extra`` (times, sizes), all linked to the LoggedModel."""
    ranking = {f"best_{k}": v for k, v in best_val.items() if k.startswith(("val_recall", "val_mrr", "val_ndcg"))}
    tracking.log_metrics_at(ranking, model_id=model_id, dataset=datasets.get("valid"))
    tracking.log_metrics_at(test.prefixed("test"), model_id=model_id, dataset=datasets.get("test"))
    tracking.log_metrics_at(extra, model_id=model_id)
    log_test_plots(test)
