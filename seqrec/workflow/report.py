"""What every training and evaluate step logs the same way: dataset inputs, the LoggedModel, and
the final metrics (``best_val_*``, ``test_*``, over one or more seeds) linked to that model, with the
per-prediction test ranks that paired significance tests between runs need."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import EvalResult
from seqrec.serving.recommender import Recommender
from seqrec.workflow.plots import by_length_figure, log_figure

TRAINING_SPLITS = ("train_tr", "valid", "train_full", "test")
RANKING_PREFIXES = ("val_recall", "val_mrr", "val_ndcg")  # the validation metrics reported as best_val_*
RANKS_ARTIFACT = "test_ranks.npy"


def log_inputs(data: ProcessedDataset, splits: tuple[str, ...] = TRAINING_SPLITS) -> dict[str, tracking.SplitDataset]:
    """Log the dataset's ``splits`` as the active run's inputs (context = split name); returns them."""
    datasets = {s: tracking.split_dataset(data.path, data.name, data.digest, s, data.stats) for s in splits}
    tracking.log_split_inputs(datasets)
    return datasets


def log_test_plots(result: EvalResult) -> None:
    """The by-length breakdown of a test evaluation, as JSON and as a plot."""
    tracking.log_json(result.by_length, "test_by_length.json")
    log_figure(by_length_figure(result, "Test accuracy by prefix length"), "plots/test_by_length.png")


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


@dataclass
class SeedResult:
    """One seed's outcome: validation at its selected epoch (``best_val_*``), its test evaluation, and its
    own figures (``train_seconds``, ``best_epoch``, ...)."""

    best_val: dict[str, float]
    test: EvalResult
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Every final metric of the seed under its MLflow name."""
        ranking = {f"best_{k}": v for k, v in self.best_val.items() if k.startswith(RANKING_PREFIXES)}
        return {**ranking, **self.test.prefixed("test"), **self.extra}


def over_seeds(results: list[SeedResult]) -> dict[str, float]:
    """The final metrics of the seeds' results, aggregated by ``spread``."""
    return spread([r.metrics() for r in results])


def spread(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each metric of ``per_seed`` (one dict per seed) as the mean over the seeds under its plain name, and
    with several seeds also as ``<name>_mean``, ``<name>_std`` (sample standard deviation) and
    ``<name>_seed<i>`` (i = 1..N)."""
    out: dict[str, float] = {}
    for name in per_seed[0]:
        values = np.array([m[name] for m in per_seed], dtype=np.float64)
        out[name] = float(values.mean())
        if len(values) > 1:
            out[f"{name}_mean"] = out[name]
            out[f"{name}_std"] = float(values.std(ddof=1))
            out.update({f"{name}_seed{i}": float(v) for i, v in enumerate(values, 1)})
    return out


def log_final_metrics(model_id: str, datasets: dict[str, tracking.SplitDataset], results: list[SeedResult],
                      extra: dict[str, float] | None = None) -> dict[str, float]:
    """Log the final metrics of one or more seeds (``over_seeds``): ``best_val_*`` linked to the valid split,
    ``test_*`` to the test split, the rest (times, sizes and ``extra``) to the LoggedModel only; every test
    rank as ``test_ranks.npy`` (``[seeds, predictions]`` int32, in the split's prediction order, for paired
    tests between runs) and the first seed's by-length breakdown. Returns what was logged."""
    logged = {**over_seeds(results), **(extra or {})}
    for prefix, dataset in (("best_val_", datasets.get("valid")), ("test_", datasets.get("test"))):
        tracking.log_metrics_at({k: v for k, v in logged.items() if k.startswith(prefix)}, model_id=model_id,
                                dataset=dataset)
    tracking.log_metrics_at({k: v for k, v in logged.items() if not k.startswith(("best_val_", "test_"))},
                            model_id=model_id)
    log_test_ranks([r.test for r in results])
    log_test_plots(results[0].test)
    return logged


def log_test_ranks(tests: list[EvalResult]) -> None:
    """``test_ranks.npy``: the rank of every test prediction of each seed, ``[seeds, predictions]`` int32."""
    ranks = [t.ranks for t in tests if t.ranks is not None]
    if len(ranks) < len(tests):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / RANKS_ARTIFACT
        np.save(path, np.stack(ranks).astype(np.int32))
        mlflow.log_artifact(str(path))


def load_test_ranks(run_id: str) -> np.ndarray | None:
    """The ``[seeds, predictions]`` test ranks a training run logged, or ``None`` for a run without them."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=RANKS_ARTIFACT)
    except (MlflowException, OSError):
        return None
    return np.load(path)


def seed_summary(test: dict[str, float]) -> str:
    """``Recall@20 0.5012, MRR@20 0.1803`` (``+- std`` after each when the run had several seeds)."""
    def shown(name: str) -> str:
        std = test.get(f"{name}_std")
        return f"{test[name]:.4f}" + (f" +- {std:.4f}" if std is not None else "")

    return f"Recall@20 {shown('test_recall_at_20')}, MRR@20 {shown('test_mrr_at_20')}"
