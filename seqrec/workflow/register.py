"""The ``register`` step: register the best training run's model as ``seqrec`` with alias ``champion``.

Selection uses a validation metric (never a test metric). A run's value is its ``best_<metric>``
when it logged one (neural models: the selected epoch), else its ``<metric>``. Re-running without a
better run changes nothing.
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from seqrec import tracking

ALIAS = "champion"


def _value(run, metric: str) -> float | None:
    metrics = run.data.metrics
    return metrics.get(f"best_{metric}", metrics.get(metric))


def best_run(metric: str, experiment: str = tracking.EXPERIMENT):
    """The finished training run (one with a model) with the highest ``metric``."""
    if metric.startswith("test_"):
        raise ValueError(f"selection must use a validation metric, not {metric!r}")
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no experiment {experiment!r}: train a model first")
    runs = mlflow.MlflowClient().search_runs(
        [exp.experiment_id], "attributes.status = 'FINISHED' and tags.`seqrec.step` LIKE 'train_%'",
        max_results=5000)
    scored = [(v, r) for r in runs if (v := _value(r, metric)) is not None]
    if not scored:
        raise ValueError(f"no finished training run in {experiment!r} has the metric {metric!r}")
    return max(scored, key=lambda pair: pair[0])


def run_register(metric: str = "val_recall_at_20", name: str = "seqrec", experiment: str = tracking.EXPERIMENT,
                 nested: bool = False) -> dict:
    """Register the best run if it beats the current champion; returns what was decided."""
    client = mlflow.MlflowClient()
    value, run = best_run(metric, experiment)
    try:
        champion = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        champion = None
    if champion is not None:
        current = _value(client.get_run(champion.run_id), metric)
        if champion.run_id == run.info.run_id or (current is not None and current >= value):
            return {"changed": False, "version": champion.version, "run_id": champion.run_id, metric: current}
    with tracking.start_run("register", nested=nested, run_name=f"register-{name}", experiment=experiment):
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
        client.set_registered_model_alias(name, ALIAS, version.version)
        model_name = run.data.tags.get(tracking.TAG_MODEL, "")
        client.update_model_version(name, version.version, description=(
            f"{model_name} ({run.data.tags.get(tracking.TAG_PRESET, '')}) from run {run.info.run_id}: "
            f"{metric} = {value:.4f} on the validation split"))
        for key, tag in ((metric, f"{value:.6f}"), ("run_id", run.info.run_id), ("seqrec.model", model_name),
                         ("selection_metric", metric)):
            client.set_model_version_tag(name, version.version, key, tag)
        tracking.log_params({"metric": metric, "name": name})
        mlflow.set_tags({"seqrec.registered_run_id": run.info.run_id, "seqrec.registered_version": version.version})
    return {"changed": True, "version": version.version, "run_id": run.info.run_id, metric: value}
