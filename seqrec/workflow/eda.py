"""The ``eda`` step: explain a processed dataset in plots and figures, logged to MLflow."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow

from seqrec import eda, tracking
from seqrec.data.dataset import ProcessedDataset


def run_eda(data_dir: str, buys: str = "", nested: bool = False) -> dict:
    """Run the EDA in an MLflow run; returns the summary figures."""
    data = ProcessedDataset.load(data_dir)
    with tracking.start_run("eda", tags=tracking.dataset_tags(data.stats), nested=nested,
                            run_name=f"eda-{data.name}"), tempfile.TemporaryDirectory() as tmp:
        tracking.log_params({"data": data_dir, "buys": buys})
        started = time.perf_counter()
        summary, _, _ = eda.run(data, Path(tmp), buys or None)
        tracking.log_metrics_at({**summary, "eda_seconds": time.perf_counter() - started})
        mlflow.log_artifacts(tmp)
    return summary
