"""The ``train_baseline`` step: fit on train_tr, validate, refit on train_full, test, log to MLflow."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from seqrec import tracking
from seqrec.configs import at_least, check_range
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import EvalResult, evaluate
from seqrec.models.baselines import make_baseline
from seqrec.workflow.report import SeedResult, log_final_metrics, log_inputs, log_trained_model


def validate_baseline(data: ProcessedDataset, model: str, params: dict | None = None, max_len: int = 50,
                      progress: bool = True) -> EvalResult:
    """Fit baseline ``model`` on train_tr and score valid: its selection result (tuning trials use it too)."""
    train_tr = data.split("train_tr")
    fitted = make_baseline(model, **(params or {})).fit(train_tr, data.n_items)
    return evaluate(fitted, data.split("valid"), data.n_items, max_len,
                    popularity=np.bincount(train_tr.items, minlength=data.n_items + 1), progress=progress,
                    desc=f"{model} valid")


def run_baseline(data_dir: str, model: str, params: dict | None = None, max_len: int = 50,
                 nested: bool = False, seeds: int = 1) -> tuple[str, dict[str, float]]:
    """Train and evaluate one baseline in its own MLflow run; returns the run id and test metrics.

    Like the neural models, it is selected on valid (fitted on train_tr; a baseline has one
    "epoch", so its validation metrics are also its ``best_val_*``), then refitted on train_full
    for the test metrics. The baselines are deterministic: ``seeds`` is accepted (and logged with
    ``_mean``/``_std`` metrics, the std being 0) without fitting again.
    """
    check_range("train_baseline", "max_len", max_len, at_least(1))
    check_range("train_baseline", "seeds", seeds, at_least(1))
    baseline = make_baseline(model, **(params or {}))  # its settings are checked before the data is read
    data = ProcessedDataset.load(data_dir)
    tags = {tracking.TAG_MODEL: model, tracking.TAG_PRESET: "default", **tracking.dataset_tags(data.stats)}
    with tracking.start_run("train_baseline", tags=tags, nested=nested, run_name=f"{model}-{data.name}",
                            system_metrics=True) as run:
        # every baseline sets a config dataclass, though Baseline (seqrec.models.baselines.base) declares none
        config = {"model": model, "data": str(data_dir), "max_len": max_len,
                  **asdict(baseline.config)}
        tracking.log_params({**config, "seeds": seeds})
        datasets = log_inputs(data)
        val = validate_baseline(data, model, params, max_len).prefixed("val")
        tracking.log_metrics_at(val, step=0)
        started = time.perf_counter()
        baseline.fit(data.split("train_full"), data.n_items)
        train_seconds = time.perf_counter() - started
        test = evaluate(baseline, data.split("test"), data.n_items, max_len, popularity=data.popularity,
                        desc=f"{model} test")
        model_id = log_trained_model(baseline, data, max_len, tags, params=config)
        result = SeedResult(val, test, {"train_seconds": train_seconds})
        logged = log_final_metrics(model_id, datasets, [result] * seeds, {"n_parameters": baseline.n_parameters})
        return run.info.run_id, {k: v for k, v in logged.items() if k.startswith("test_")}
