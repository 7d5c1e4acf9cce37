"""MLflow tracking with the names of PROTOCOL 4: experiment, tags, inputs and artifacts.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, otherwise MLflow's default (a local SQLite
file ``mlflow.db`` that also holds the Model Registry). Inside ``mlflow run`` the run created by the
project launcher is reused; ``nested=True`` opens a child of the active run (used by ``main``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset

EXPERIMENT = "seqrec"
TAG_MODEL = "seqrec.model"
TAG_PRESET = "seqrec.preset"
TAG_DATASET = "seqrec.dataset"
TAG_DIGEST = "seqrec.data_digest"
TAG_STEP = "seqrec.step"
TAG_STEP_KEY = "seqrec.step_key"
_STEP_SCOPE: ContextVar[dict | None] = ContextVar("seqrec_step_scope", default=None)


@contextmanager
def step_key_scope(key: str) -> Iterator[dict]:
    """Tag the next run started inside the scope with ``key`` (for reuse by ``main``); the scope's
    dict receives that run's id."""
    scope = {"key": key}
    token = _STEP_SCOPE.set(scope)
    try:
        yield scope
    finally:
        _STEP_SCOPE.reset(token)


def _leave_default_experiment(experiment: str) -> None:
    """Under ``mlflow run`` without ``--experiment-name`` the launcher's run sits in the Default
    experiment; log to ``experiment`` instead and leave a pointer on the launcher's run."""
    launcher = os.environ.get("MLFLOW_RUN_ID")
    if not launcher or mlflow.active_run() is not None:
        return
    client = mlflow.MlflowClient()
    if client.get_run(launcher).info.experiment_id != "0" or experiment == "Default":
        return
    os.environ.pop("MLFLOW_RUN_ID")
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    mlflow.set_experiment(experiment)
    os.environ["SEQREC_LAUNCHER_RUN_ID"] = launcher


@contextmanager
def start_run(step: str, tags: dict[str, str] | None = None, nested: bool = False,
              run_name: str | None = None, experiment: str = EXPERIMENT,
              run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start (or join, under ``mlflow run``; or reopen ``run_id`` to resume) a run tagged with its step."""
    _leave_default_experiment(experiment)
    if not os.environ.get("MLFLOW_RUN_ID") and mlflow.active_run() is None:
        mlflow.set_experiment(experiment)
    if run_id is not None:
        os.environ.pop("MLFLOW_RUN_ID", None)  # resuming: the earlier run, not the launcher's new one
    with mlflow.start_run(run_id=run_id, nested=nested and run_id is None,
                          run_name=None if run_id else run_name) as run:
        mlflow.set_tags({TAG_STEP: step, **(tags or {})})
        scope = _STEP_SCOPE.get()
        if scope is not None and "run_id" not in scope:
            scope["run_id"] = run.info.run_id
            mlflow.set_tag(TAG_STEP_KEY, scope["key"])
        launcher = os.environ.pop("SEQREC_LAUNCHER_RUN_ID", None)
        if launcher:
            mlflow.MlflowClient().set_tag(launcher, "seqrec.logged_to_run", run.info.run_id)
        yield run


def log_file_input(path: str | Path, digest: str, name: str, context: str = "raw") -> None:
    """Log a data file as the run's input dataset, identified by its content digest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(Path(path).resolve()))
    mlflow.log_input(MetaDataset(source=source, name=name, digest=digest), context=context)


def log_json(obj: object, artifact_file: str) -> None:
    """Log a JSON-serialisable object as an artifact file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(json.dumps(obj, indent=2))
        parent = str(Path(artifact_file).parent)
        mlflow.log_artifact(str(path), artifact_path=None if parent == "." else parent)


def dataset_tags(stats: dict) -> dict[str, str]:
    """The PROTOCOL 4 dataset tags for a processed dataset's ``stats.json``."""
    return {TAG_DATASET: str(stats.get("name", "")), TAG_DIGEST: str(stats.get("digest", ""))}


def log_params(params: dict) -> None:
    """Log parameters the active run does not have yet: under ``mlflow run`` the launcher has
    already logged the entry point's own parameters (as it quotes them), and those stand."""
    run_id = mlflow.active_run().info.run_id
    existing = mlflow.MlflowClient().get_run(run_id).data.params
    fresh = {k: v for k, v in params.items() if k not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_metrics_at(metrics: dict[str, float], step: int | None = None) -> None:
    """Log metrics, dropping non-finite values (MLflow rejects NaN in some stores)."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}, step=step)


def model_requirements() -> list[str]:
    """The served model's pip requirements, pinned to this environment (MLflow's own inference would
    load the model in a child process for every run to find them)."""
    from contextlib import suppress
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in ("mlflow", "cloudpickle", "numpy", "pandas", "pyarrow", "torch", "seqrec"):
        with suppress(PackageNotFoundError):
            pins.append(f"{name}=={version(name).split('+')[0]}")  # 2.13.0+cpu -> 2.13.0
    return pins


def log_pyfunc(recommender, example_session: list[str], item_mapping: Path) -> None:
    """Log the recommender as the run's ``model/`` artifact (pyfunc, signature, input example) and
    the dataset's ``item_mapping.json``."""
    import pandas as pd

    from seqrec.serving.pyfunc import SIGNATURE, SeqrecPyfunc

    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyfunc_log.setLevel(logging.ERROR)  # its notes on cloudpickle and signature validation
        path = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(path), python_model=SeqrecPyfunc(recommender), signature=SIGNATURE,
            input_example=pd.DataFrame({"session": [example_session], "k": [20]}),
            pip_requirements=model_requirements(),
        )
        mlflow.log_artifacts(str(path), "model")
    pyfunc_log.setLevel(level)
    mlflow.log_artifact(str(item_mapping))
