"""The ``train_baseline`` step: fit on train_tr, validate, refit on train_full, test, log to MLflow."""

from __future__ import annotations

import time
from dataclasses import asdict

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import evaluate
from seqrec.models.baselines import make_baseline
from seqrec.workflow.report import log_model, log_test_result


def run_baseline(data_dir: str, model: str, params: dict | None = None, max_len: int = 50,
                 nested: bool = False) -> tuple[str, dict[str, float]]:
    """Train and evaluate one baseline in its own MLflow run; returns the run id and test metrics."""
    data = ProcessedDataset.load(data_dir)
    baseline = make_baseline(model, **(params or {}))
    tags = {tracking.TAG_MODEL: model, tracking.TAG_PRESET: "default", **tracking.dataset_tags(data.stats)}
    with tracking.start_run("train_baseline", tags=tags, nested=nested, run_name=f"{model}-{data.name}") as run:
        tracking.log_params({"model": model, "data": str(data_dir), "max_len": max_len, **asdict(baseline.config)})
        valid_model = make_baseline(model, **(params or {})).fit(data.split("train_tr"), data.n_items)
        val = evaluate(valid_model, data.split("valid"), data.n_items, max_len, popularity=data.popularity,
                       desc=f"{model} valid")
        tracking.log_metrics_at({f"val_{k}": v for k, v in val.metrics.items()}, step=0)
        started = time.perf_counter()
        baseline.fit(data.split("train_full"), data.n_items)
        train_seconds = time.perf_counter() - started
        test = evaluate(baseline, data.split("test"), data.n_items, max_len, popularity=data.popularity,
                        desc=f"{model} test")
        log_test_result(test, train_seconds)
        tracking.log_metrics_at({"n_parameters": baseline.n_parameters})
        log_model(baseline, data, max_len)
        return run.info.run_id, test.prefixed("test")
