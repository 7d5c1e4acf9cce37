"""The ``predict`` step: recommendations for every open session of a click log, from any logged or registered
model, written to a Parquet file and logged as an MLflow run.

Everything that can be checked cheaply is checked before any work (``k``, the output path, the click file,
the model URI); the click file is then read (so a format error also comes before the run opens), the model
loaded once, and the sessions scored chunk by chunk (:mod:`seqrec.serving.predict`). The run links the click
file as its input dataset and the model as its input model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModelInput

from seqrec import tracking
from seqrec.data.formats.common import check_file
from seqrec.data.preprocess import file_digest
from seqrec.data.readers import ReadOptions, read_clicks
from seqrec.serving.predict import PredictCounts, PredictOptions, check_output_file, group_clicks, write_predictions
from seqrec.serving.recommender import Recommender


@dataclass(frozen=True)
class PredictParams:
    """The ``predict`` parameters: the model, the click file and how to read it, the output and its options."""

    model_uri: str
    sessions: str
    out: str
    options: PredictOptions = field(default_factory=PredictOptions)
    fmt: str = "auto"
    read: ReadOptions = field(default_factory=ReadOptions)


@contextmanager
def quiet_downloads() -> Iterator[None]:
    """Without MLflow's bar for each artifact download (unless the user set
    ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``): the step's output is its own bar and its one summary or error
    line."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if name in os.environ:
        yield
        return
    os.environ[name] = "false"
    try:
        yield
    finally:
        os.environ.pop(name, None)


def check_params(params: PredictParams) -> mlflow.models.model.ModelInfo:
    """Fail in one line, before any work, on a missing click file, an output that may not be written or a model
    URI that does not resolve; returns the model's info."""
    if not params.sessions:
        raise ValueError("sessions: give the click file of the sessions to score (-P sessions=PATH)")
    check_file(Path(params.sessions))
    check_output_file(params.out, params.options.overwrite)
    return mlflow.models.get_model_info(params.model_uri)


def load_recommender(model_uri: str) -> Recommender:
    """The model's recommender, loaded once through its pyfunc."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().recommender


def run_tags(params: PredictParams, info: mlflow.models.model.ModelInfo) -> dict[str, str]:
    """The run's tags: which model (URI, run, LoggedModel, kind) made the recommendations."""
    tags = {"seqrec.model_uri": params.model_uri, "seqrec.predicted_run_id": info.run_id or "",
            "seqrec.predicted_model_id": info.model_id or ""}
    if info.run_id:
        tags[tracking.TAG_MODEL] = mlflow.get_run(info.run_id).data.tags.get(tracking.TAG_MODEL, "")
    return tags


def log_run_inputs(params: PredictParams, model_id: str | None) -> None:
    """The click file as the run's input dataset (identified by its content) and the model as its input model."""
    path = Path(params.sessions)
    tracking.log_file_input(path, file_digest(path), path.name, context="predict")
    if model_id:
        mlflow.log_input(model=LoggedModelInput(model_id))


@dataclass
class WorkTimer:
    """Wall and CPU (all threads) seconds of the timed phases, summed: reading to writing, without the model
    load and the MLflow bookkeeping between them."""

    wall: float = 0.0
    cpu: float = 0.0

    @contextmanager
    def phase(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu


def run_metrics(counts: PredictCounts, work: WorkTimer, read_seconds: float, skipped_lines: int) -> dict[str, float]:
    """The run's metrics: counts, the unknown clicks and sessions, and the throughput of read-to-write
    (``seconds``: reading and grouping, ``read_seconds`` of them, then scoring and writing)."""
    return {"sessions": counts.sessions, "clicks": counts.clicks, "unknown_items": counts.unknown_items,
            "unknown_sessions": counts.unknown_sessions, "skipped_lines": skipped_lines, "seconds": work.wall,
            "cpu_seconds": work.cpu, "read_seconds": read_seconds,
            "sessions_per_second": counts.sessions / max(work.wall, 1e-9)}


def run_predict(params: PredictParams, nested: bool = False) -> tuple[str, dict[str, float]]:
    """Score every session of ``params.sessions`` with ``params.model_uri`` into ``params.out`` in one run;
    returns the run id and its metrics. ``seconds`` covers reading, grouping, scoring and writing."""
    with quiet_downloads():
        info = check_params(params)
    work = WorkTimer()
    with work.phase():
        clicks = read_clicks(params.sessions, params.read.on_bad_lines, params.fmt, params.read)
        skipped = clicks.skipped_lines
        grouped = group_clicks(clicks)
        del clicks
    read_seconds = work.wall
    started = time.perf_counter()
    with quiet_downloads():
        recommender = load_recommender(params.model_uri)
    load_seconds = time.perf_counter() - started
    with tracking.start_run("predict", tags=run_tags(params, info), nested=nested,
                            run_name=f"predict-{Path(params.sessions).name}") as run:
        tracking.log_params({"model_uri": params.model_uri, "sessions": params.sessions, "out": params.out,
                             "format": params.fmt, **asdict(params.options), **read_params(params.read)})
        log_run_inputs(params, info.model_id)
        with work.phase():
            counts = write_predictions(recommender, grouped, params.out, params.options)
        metrics = {**run_metrics(counts, work, read_seconds, skipped), "model_load_seconds": load_seconds}
        tracking.log_metrics_at(metrics)
        return run.info.run_id, metrics


def read_params(read: ReadOptions) -> dict[str, str]:
    """The reading options as run parameters (``columns`` and ``events`` as written on the command line)."""
    return {"columns": ",".join(f"{k}={v}" for k, v in read.columns.items()), "time_unit": read.time_unit,
            "sep": read.sep, "events": ",".join(read.events), "on_bad_lines": read.on_bad_lines,
            "session_gap": str(read.session_gap)}
