"""The ``register`` step: the best LoggedModel of one dataset becomes ``seqrec@champion``.

Candidates are the LoggedModels of finished training runs trained on the dataset given (by its
``seqrec.data_digest``; default: the dataset of the newest training run) that carry the selection
metric, ``best_val_mrr_at_20`` unless told otherwise: a validation metric at the selected epoch, never
a test metric. The alias moves when a better model of that dataset exists; re-running without one
changes nothing. A champion trained on another dataset is never compared with this dataset's
models: registration stops with a clear error unless ``force`` is set.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.entities import LoggedModel
from mlflow.exceptions import MlflowException

from seqrec import tracking
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import SELECTION_METRIC

ALIAS = "champion"
DEFAULT_METRIC = f"best_{SELECTION_METRIC}"
SHOWN_METRICS = ("best_val_mrr_at_20", "best_val_recall_at_20", "test_mrr_at_20", "test_recall_at_20")


class RegisterError(ValueError):
    """Registration cannot decide safely (no candidates, or a champion of another dataset)."""


def selection_metric(metric: str) -> str:
    """``best_val_*`` name of a validation metric (``val_x`` means the selected epoch's ``best_val_x``)."""
    if metric.startswith("val_"):
        metric = f"best_{metric}"
    if not metric.startswith("best_val_"):
        raise ValueError(f"selection must use a validation metric (best_val_... or val_...), not {metric!r}")
    return metric


def _experiment_id(experiment: str) -> str:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise RegisterError(f"no experiment {experiment!r}: train a model first")
    return exp.experiment_id


def dataset_of(data: str, experiment: str = tracking.EXPERIMENT) -> tuple[str, str]:
    """``(name, digest)`` of the dataset whose models compete: a processed dataset directory, else a
    data digest or dataset name seen on a training run; empty: the newest training run's dataset."""
    if data and Path(data, "stats.json").exists():
        loaded = ProcessedDataset.load(data)
        return loaded.name, loaded.digest
    runs = mlflow.MlflowClient().search_runs(
        [_experiment_id(experiment)], "attributes.status = 'FINISHED' and tags.`seqrec.step` LIKE 'train_%'",
        max_results=5000, order_by=["attributes.start_time DESC"])
    for run in runs:
        tags = run.data.tags
        if not data or data in (tags.get(tracking.TAG_DIGEST), tags.get(tracking.TAG_DATASET)):
            return tags.get(tracking.TAG_DATASET, ""), tags.get(tracking.TAG_DIGEST, "")
    if not data:
        raise RegisterError(f"no finished training run in {experiment!r}: train a model first")
    raise RegisterError(f"{data!r} is neither a processed dataset directory nor the digest or name of a dataset "
                        f"that a finished training run in {experiment!r} was trained on")


def candidates(digest: str, metric: str, experiment: str = tracking.EXPERIMENT) -> list[LoggedModel]:
    """The LoggedModels of finished training runs on dataset ``digest`` that have ``metric``, best first."""
    models = mlflow.search_logged_models(
        experiment_ids=[_experiment_id(experiment)], output_format="list",
        filter_string=f"tags.`{tracking.TAG_DIGEST}` = '{digest}' AND metrics.{metric} > -1e300",
        order_by=[{"field_name": f"metrics.{metric}", "ascending": False},
                  {"field_name": "creation_timestamp", "ascending": True}])
    client = mlflow.MlflowClient()
    return [m for m in models if m.source_run_id and client.get_run(m.source_run_id).info.status == "FINISHED"]


def metric_of(model: LoggedModel, metric: str) -> float:
    """The model's ``metric`` as its training run logged it (evaluate runs may add others)."""
    values = [m.value for m in model.metrics or [] if m.key == metric]
    own = [m.value for m in model.metrics or [] if m.key == metric and m.run_id == model.source_run_id]
    return (own or values or [float("nan")])[-1]


def _champion(name: str) -> tuple[object, LoggedModel | None]:
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None, None
    model_id = version.model_id or (version.source[len("models:/"):] if version.source.startswith("models:/m-")
                                    else None)
    return version, client.get_logged_model(model_id) if model_id else None


def describe(model: LoggedModel) -> str:
    """One paragraph on a model version: which model, preset and dataset, and its metrics."""
    tags = model.tags
    metrics = ", ".join(f"{k} {metric_of(model, k):.4f}" for k in SHOWN_METRICS)
    return (f"{tags.get(tracking.TAG_MODEL, '?')} (preset {tags.get(tracking.TAG_PRESET, '?')}) trained on dataset "
            f"{tags.get(tracking.TAG_DATASET, '?')} (digest {tags.get(tracking.TAG_DIGEST, '?')}) in run "
            f"{model.source_run_id}: {metrics}.")


def _version_of(name: str, model: LoggedModel):
    """The registered version of ``model`` under ``name``, registering it if it has none."""
    client = mlflow.MlflowClient()
    for version in client.search_model_versions(f"name='{name}'"):
        if version.source == f"models:/{model.model_id}" or version.model_id == model.model_id:
            return version
    return mlflow.register_model(f"models:/{model.model_id}", name)


def run_register(data: str = "", metric: str = DEFAULT_METRIC, name: str = "seqrec",
                 experiment: str = tracking.EXPERIMENT, nested: bool = False, force: bool = False) -> dict:
    """Give ``name@champion`` to the best model of dataset ``data`` if it beats the current champion;
    returns what was decided (``changed``, ``version``, ``run_id``, ``model_id``, the metric)."""
    metric = selection_metric(metric)
    dataset, digest = dataset_of(data, experiment)
    found = candidates(digest, metric, experiment)
    if not found:
        raise RegisterError(f"no finished training run on dataset {dataset!r} (digest {digest}) has {metric!r}")
    best, value = found[0], metric_of(found[0], metric)
    version, champion = _champion(name)
    print(f"register: {code_versions(best, champion, version)}", flush=True)
    if champion is not None:
        champion_digest = champion.tags.get(tracking.TAG_DIGEST, "")
        if champion_digest != digest and not force:
            raise RegisterError(
                f"{name}@{ALIAS} (version {version.version}) was trained on dataset "
                f"{champion.tags.get(tracking.TAG_DATASET, '?')!r} (digest {champion_digest}), not on {dataset!r} "
                f"(digest {digest}): models of different datasets are not compared. Register with force=true to "
                f"make the best model of {dataset!r} the champion anyway.")
        current = metric_of(champion, metric)
        if champion_digest == digest and (champion.model_id == best.model_id or current >= value):
            if not _promoted(version):  # a register killed after moving the alias: finish its work
                return _promote(champion, name, metric, current, dataset, digest, nested, experiment)
            return {"changed": False, "version": version.version, "run_id": champion.source_run_id,
                    "model_id": champion.model_id, "model": champion.tags.get(tracking.TAG_MODEL, ""),
                    "code_version": champion.tags.get(tracking.TAG_CODE, ""), "dataset": dataset, metric: current}
    return _promote(best, name, metric, value, dataset, digest, nested, experiment)


def code_versions(candidate: LoggedModel, champion: LoggedModel | None, version) -> str:
    """One line naming the code version that trained the candidate and the champion, and whether they differ
    (a comparison across code versions is allowed, but the user should know it is one)."""
    def code(model: LoggedModel) -> str:
        return model.tags.get(tracking.TAG_CODE) or "unknown (trained before code versions were recorded)"

    line = f"candidate {candidate.tags.get(tracking.TAG_MODEL, '?')} (run {candidate.source_run_id}) was trained " \
           f"by code {code(candidate)}"
    if champion is None:
        return f"{line}; there is no champion yet"
    line += f"; champion version {version.version} ({champion.tags.get(tracking.TAG_MODEL, '?')}, run " \
            f"{champion.source_run_id}) by code {code(champion)}"
    same = code(candidate) == code(champion) and tracking.TAG_CODE in champion.tags
    return line + ("" if same or champion.model_id == candidate.model_id else " (different code versions)")


# the tags ``_promote`` writes on the champion's version, last: all present = the promotion finished
VERSION_TAGS = ("selection_metric", "run_id", "model_id", tracking.TAG_MODEL, tracking.TAG_PRESET,
                tracking.TAG_DATASET, tracking.TAG_DIGEST)


def _promoted(version) -> bool:
    """Whether ``_promote`` finished on ``version`` (a kill after the alias moved leaves tags missing)."""
    return set(VERSION_TAGS) <= set(version.tags or {})


def _promote(best: LoggedModel, name: str, metric: str, value: float, dataset: str, digest: str, nested: bool,
             experiment: str) -> dict:
    """Register ``best`` (or reuse its version), move the alias, describe both, in a ``register`` run."""
    client = mlflow.MlflowClient()
    tags = {tracking.TAG_DATASET: dataset, tracking.TAG_DIGEST: digest}
    with tracking.start_run("register", tags=tags, nested=nested, run_name=f"register-{name}", experiment=experiment):
        version = _version_of(name, best)
        client.set_registered_model_alias(name, ALIAS, version.version)
        client.update_registered_model(name, description=(
            f"Session-based next-click recommender (seqrec). Alias '{ALIAS}': the best model by {metric} among "
            f"the models trained on one dataset; now version {version.version}: {describe(best)}"))
        client.update_model_version(name, version.version, description=describe(best))
        for key, tag in {metric: f"{value:.6f}", "selection_metric": metric, "run_id": best.source_run_id,
                         tracking.TAG_CODE: best.tags.get(tracking.TAG_CODE, ""),
                         "model_id": best.model_id, tracking.TAG_MODEL: best.tags.get(tracking.TAG_MODEL, ""),
                         tracking.TAG_PRESET: best.tags.get(tracking.TAG_PRESET, ""), **tags}.items():
            client.set_model_version_tag(name, version.version, key, tag)
        tracking.log_params({"metric": metric, "name": name, "data": dataset})
        mlflow.set_tags({"seqrec.registered_run_id": best.source_run_id, "seqrec.registered_version": version.version,
                         "seqrec.registered_model_id": best.model_id})
    return {"changed": True, "version": version.version, "run_id": best.source_run_id, "model_id": best.model_id,
            "model": best.tags.get(tracking.TAG_MODEL, ""), "code_version": best.tags.get(tracking.TAG_CODE, ""),
            "dataset": dataset, metric: value}
