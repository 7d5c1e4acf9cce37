"""Logging of a model's evaluation: metrics with PROTOCOL 4 names, the by-length plot, the model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import EvalResult, plot_by_length
from seqrec.serving.pyfunc import Recommender


def log_test_result(result: EvalResult, train_seconds: float | None = None) -> None:
    """Final metrics: ``test_*`` (with ``test_predictions``), ``train_seconds`` and the by-length plot."""
    metrics = result.prefixed("test")
    if train_seconds is not None:
        metrics["train_seconds"] = train_seconds
    tracking.log_metrics_at(metrics)
    tracking.log_json(result.by_length, "test_by_length.json")
    with tempfile.TemporaryDirectory() as tmp:
        png = plot_by_length(result, Path(tmp) / "test_by_length.png", "Test accuracy by prefix length")
        mlflow.log_artifact(str(png), "plots")


def log_model(scorer, data: ProcessedDataset, max_len: int) -> Recommender:
    """Wrap ``scorer`` for raw ids and log it as the run's pyfunc ``model/``."""
    recommender = Recommender(scorer, data.raw_ids, data.popularity, max_len)
    test = data.split("test")
    example = [str(data.raw_ids[i]) for i in test.items[test.offsets[0] : test.offsets[1]]]
    tracking.log_pyfunc(recommender, example, data.path / "item_mapping.json")
    return recommender
