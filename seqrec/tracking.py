"""MLflow tracking with the project's MLflow names (docs/protocol.md, "MLflow names"): experiment,
tags, inputs, LoggedModels and their metrics.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, otherwise MLflow's default (a local SQLite
file ``mlflow.db`` that also holds the Model Registry). Inside ``mlflow run`` the run created by the
project launcher is reused; ``nested=True`` opens a child of the active run (used by ``main``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from unittest import mock

import mlflow
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Run
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING, MLFLOW_UV_AUTO_DETECT
from mlflow.models.model import ModelInfo
from mlflow.types.schema import ColSpec, Schema

from seqrec.serving.recommender import ServedModel
from seqrec.version import code_version

EXPERIMENT = "seqrec"
TAG_MODEL = "seqrec.model"
TAG_PRESET = "seqrec.preset"
TAG_FUSED = "seqrec.fused"  # a sequence model fused with this session-kNN model (TrainConfig.fuse)
TAG_DATASET = "seqrec.dataset"
TAG_DIGEST = "seqrec.data_digest"
TAG_STEP = "seqrec.step"
TAG_STEP_KEY = "seqrec.step_key"
TAG_CODE = "seqrec.code_version"  # seqrec.version.code_version(): which code made a run or a model
TAG_CHECKPOINT_KEY = "seqrec.checkpoint_key"  # a training run's checkpoints.run_key: what resume finds it by
# MLflow 3's UI opens an experiment without this tag in its GenAI view
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
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


class TrackingUnreachable(ConnectionError):
    """The MLflow tracking server cannot be reached (refused, unknown host, timed out)."""


_REACHED: set[str] = set()


def check_tracking_server() -> None:
    """Fail fast, in one line naming the URI, when an HTTP tracking server cannot be reached: one cheap
    request (search one experiment), once per process and URI; local stores (SQLite, files) need none."""
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")) or uri in _REACHED:
        return
    try:
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow wraps the requests error in an MlflowException with a long message
        cause = exc.__cause__ or exc.__context__
        unreached = ("failed with exception", "failed with timeout exception")  # not an HTTP error status
        if not (isinstance(exc, OSError) or _is_connection_error(cause) or any(u in str(exc) for u in unreached)):
            raise  # the server answered (e.g. an authorisation error): MLflow's own message says why
        reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        why = reason.group(1).strip() if reason else ("timed out" if "timeout" in str(exc).lower() else
                                                      type(cause or exc).__name__)
        raise TrackingUnreachable(f"the MLflow tracking server at {uri} cannot be reached ({why}): start it, or "
                                  f"set MLFLOW_TRACKING_URI to a reachable server (or unset it for the local "
                                  f"mlflow.db)") from None
    _REACHED.add(uri)


def _is_connection_error(exc: BaseException | None) -> bool:
    import requests

    return isinstance(exc, (OSError, requests.exceptions.ConnectionError, requests.exceptions.Timeout))


@contextmanager
def start_run(step: str, tags: dict[str, str] | None = None, nested: bool = False,
              run_name: str | None = None, experiment: str = EXPERIMENT,
              run_id: str | None = None, system_metrics: bool = False) -> Iterator[mlflow.ActiveRun]:
    """Start (or join, under ``mlflow run``; or reopen ``run_id`` to resume) a run tagged with its step.
    An unreachable tracking server is a :class:`TrackingUnreachable` error here, before the step's work.
    ``system_metrics``: log MLflow's system metrics (``system/cpu_utilization_percentage``...) while the run
    is open (training steps); ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING``, when set, decides instead."""
    check_tracking_server()
    _leave_default_experiment(experiment)
    if not os.environ.get("MLFLOW_RUN_ID") and mlflow.active_run() is None:
        _create_experiment(experiment)
        mlflow.set_experiment(experiment)
    if run_id is not None:
        os.environ.pop("MLFLOW_RUN_ID", None)  # resuming: the earlier run, not the launcher's new one
    if MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.defined:
        system_metrics = MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get()
    with mlflow.start_run(run_id=run_id, nested=nested and run_id is None,
                          run_name=None if run_id else run_name, log_system_metrics=system_metrics) as run:
        mlflow.set_tags({TAG_STEP: step, TAG_CODE: code_version(), **(tags or {})})
        _tag_experiment(run.info.experiment_id)
        scope = _STEP_SCOPE.get()
        if scope is not None and "run_id" not in scope:
            scope["run_id"] = run.info.run_id
            mlflow.set_tag(TAG_STEP_KEY, scope["key"])
        launcher = os.environ.pop("SEQREC_LAUNCHER_RUN_ID", None)
        if launcher:
            mlflow.MlflowClient().set_tag(launcher, "seqrec.logged_to_run", run.info.run_id)
        yield run


def latest_run_tagged(tag: str, value: str) -> Run | None:
    """The most recently started run tagged ``tag = value`` (deleted runs aside) in the experiments a run of
    this process may log to: ``seqrec``, the one ``MLFLOW_EXPERIMENT_ID`` or ``MLFLOW_EXPERIMENT_NAME`` names
    (``mlflow run``), the active run's (``main``); ``None`` when there is none."""
    client = mlflow.MlflowClient()
    experiments = [client.get_experiment_by_name(name)
                   for name in (EXPERIMENT, os.environ.get("MLFLOW_EXPERIMENT_NAME")) if name]
    ids = {e.experiment_id for e in experiments if e is not None}
    active = mlflow.active_run()
    ids |= {active.info.experiment_id} if active is not None else set()
    given = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if given and given not in ids:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # not in this store: nothing to find there
            ids.add(client.get_experiment(given).experiment_id)
    if not ids:
        return None
    runs = client.search_runs(sorted(ids), f"tags.`{tag}` = '{value}'", order_by=["attributes.start_time DESC"],
                              max_results=1)
    return runs[0] if runs else None


def _create_experiment(name: str) -> None:
    """Create experiment ``name`` if it is missing. Processes that start at the same moment on a new store (tune
    workers) may both try: the one that loses finds it created (MLflow's ``set_experiment`` alone would return
    without activating it, and the run would land in the Default experiment)."""
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(name) is None:
        try:
            client.create_experiment(name, tags=EXPERIMENT_KIND)
        except mlflow.exceptions.MlflowException:
            if client.get_experiment_by_name(name) is None:  # not the race: a real error
                raise


def _tag_experiment(experiment_id: str) -> None:
    client = mlflow.MlflowClient()
    existing = client.get_experiment(experiment_id).tags
    for key, value in EXPERIMENT_KIND.items():
        if key not in existing:
            client.set_experiment_tag(experiment_id, key, value)


def log_file_input(path: str | Path, digest: str, name: str, context: str = "raw") -> None:
    """Log a data file as the run's input dataset, identified by its content digest."""
    # MLflow's Dataset declares ``profile`` abstract but is no ABC, and MetaDataset (meant to be built as is) omits it
    dataset = MetaDataset(source=LocalSource(Path(path)), name=name, digest=digest)  # type: ignore[abstract]
    mlflow.log_input(dataset, context=context)


class LocalSource(DatasetSource):
    """A dataset's local file or directory, through MLflow's public ``DatasetSource`` interface: source type
    ``local`` and ``{"uri": <absolute path>}``, as MLflow's own local source records it (so the UI shows the
    same, and ``mlflow.data.get_source`` reads it back as MLflow's ``LocalArtifactDatasetSource``)."""

    def __init__(self, path: str | Path):
        self._uri = str(Path(path).resolve())

    @property
    def uri(self) -> str:
        return self._uri

    @staticmethod
    def _get_source_type() -> str:
        return "local"

    def load(self, dst_path=None) -> str:
        return self._uri

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False  # built explicitly, never resolved from a raw string

    @classmethod
    def _resolve(cls, raw_source) -> LocalSource:
        return cls(raw_source)

    def to_dict(self) -> dict[str, str]:
        return {"uri": self._uri}

    @classmethod
    def from_dict(cls, source_dict: dict) -> LocalSource:
        return cls(source_dict["uri"])


def log_json(obj: object, artifact_file: str) -> None:
    """Log a JSON-serialisable object as the artifact file ``artifact_file`` (``dir/name.json``)."""
    mlflow.log_dict(obj, artifact_file)  # type: ignore[arg-type]  # annotated dict, but it dumps any JSON value


def dataset_tags(stats: dict) -> dict[str, str]:
    """The dataset tags (``seqrec.dataset``, ``seqrec.data_digest``) for a processed dataset's ``stats.json``."""
    return {TAG_DATASET: str(stats.get("name", "")), TAG_DIGEST: str(stats.get("digest", ""))}


def model_label(tags: dict[str, str]) -> str:
    """How runs, models and versions name their model: ``sasrec``, or ``sasrec+vstan`` when it is fused with a
    session-kNN model (``seqrec.fused``); ``?`` when untagged."""
    fused = tags.get(TAG_FUSED)
    return tags.get(TAG_MODEL, "?") + (f"+{fused}" if fused else "")


def log_params(params: dict) -> None:
    """Log parameters the active run does not have yet: under ``mlflow run`` the launcher has
    already logged the entry point's own parameters (as it quotes them), and those stand."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_params needs an active MLflow run")
    run_id = run.info.run_id
    existing = mlflow.MlflowClient().get_run(run_id).data.params
    fresh = {k: v for k, v in params.items() if k not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_metrics_at(metrics: dict[str, float], step: int | None = None, model_id: str | None = None,
                   dataset: MetaDataset | None = None) -> None:
    """Log metrics at ``step``, linked to the LoggedModel ``model_id`` and the ``dataset`` they were measured
    on when given; a non-finite value is an error naming the metric(s), never silently dropped (it means
    the model or its evaluation is broken, and MLflow rejects NaN in some stores)."""
    bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        where = "" if step is None else f" at step {step}"
        raise ValueError(f"non-finite metric value(s){where}: {bad}; the model or its evaluation is broken")
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, model_id=model_id, dataset=dataset)


# what a logged model imports when it is loaded and scores (the modules of seqrec.serving and what they
# import), by distribution name: its requirements, and nothing of training, tuning, plotting or the service
INFERENCE_DISTRIBUTIONS = ("mlflow", "torch", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "skops",
                           "threadpoolctl")


def model_requirements() -> list[str]:
    """The logged model's pip requirements: the distributions inference imports (``INFERENCE_DISTRIBUTIONS``),
    pinned to this environment's versions (the project's own code travels with the model as a code path)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in INFERENCE_DISTRIBUTIONS]  # 2.13.0+cpu -> 2.13.0


def log_model(recommender: ServedModel, example_session: list[str], params: dict | None = None,
              tags: dict[str, str] | None = None, model_type: str = "") -> ModelInfo:
    """Log ``recommender`` (or a :class:`~seqrec.serving.basket.BasketPredictor`) as the active run's
    LoggedModel ``model``: code (the ``seqrec`` package) plus weights and config files, a signature with the
    ``k`` parameter, and an input example."""
    import pandas as pd

    import seqrec
    from seqrec.serving import mlflow_model
    from seqrec.serving.artifacts import save_recommender
    from seqrec.serving.pyfunc import ARTIFACT, signature_of

    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    # no uv project: MLflow would copy the checkout's uv.lock and pyproject.toml into a model logged from the project
    # directory, and `--env-manager uv` would then rebuild the whole project from them, not the model's requirements
    no_uv = {MLFLOW_UV_AUTO_DETECT.name: "false"}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), mock.patch.dict(os.environ, no_uv):
        warnings.simplefilter("ignore")
        pyfunc_log.setLevel(logging.ERROR)  # its notes on signature validation
        saved = save_recommender(recommender, Path(tmp) / ARTIFACT)
        try:
            info = mlflow.pyfunc.log_model(
                name="model", python_model=mlflow_model.__file__, artifacts={ARTIFACT: str(saved)},
                code_paths=[str(Path(seqrec.__file__).parent)], signature=signature_of(recommender),
                input_example=pd.DataFrame({"session": [example_session]}),
                pip_requirements=model_requirements(), params={k: str(v) for k, v in (params or {}).items()},
                tags={TAG_CODE: code_version(), **(tags or {})}, model_type=model_type or None)
        finally:
            pyfunc_log.setLevel(level)
    return info


class SplitDataset(MetaDataset):
    """A processed dataset's split as an MLflow dataset: its source directory, a digest derived from
    the dataset's digest, the columns of a click, and counts as the profile."""

    def __init__(self, source, name: str, digest: str, profile: dict):
        schema = Schema([ColSpec("long", "session_id"), ColSpec("long", "item"), ColSpec("double", "time")])
        super().__init__(source=source, name=name, digest=digest, schema=schema)
        self._profile = profile

    @property
    def profile(self) -> dict:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def split_dataset(data_dir: Path, data_name: str, data_digest: str, split: str, stats: dict) -> SplitDataset:
    """The MLflow dataset of one split of a processed dataset (see :class:`SplitDataset`)."""
    source = LocalSource(Path(data_dir) / "splits" / split)
    digest = hashlib.sha256(f"{data_digest}:{split}".encode()).hexdigest()[:16]
    counts = stats.get("splits", {}).get(split, {})
    profile = {k: counts[k] for k in ("sessions", "clicks", "predictions") if k in counts}
    return SplitDataset(source, f"{data_name}/{split}", digest, {**profile, "data_digest": data_digest})


def log_split_inputs(datasets: dict[str, SplitDataset]) -> None:
    """Log each split as an input of the active run, with its role as the context (``train_tr``...)."""
    for context, dataset in datasets.items():
        mlflow.log_input(dataset, context=context)
