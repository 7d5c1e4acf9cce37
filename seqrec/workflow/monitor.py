"""The ``monitor`` step: replay clicks that came after a model's training data through the model, period by period,
and say whether it should be retrained (docs/monitor.md).

The model is any MLflow model URI (default ``models:/seqrec@champion``); the clicks are a file in any format
``preprocess`` reads, or, when none is given and the model was trained on the built-in data, the later period of
that data (generated under ``data/raw/<dataset>-later/``). The run (``seqrec.step`` = ``monitor``) has the model as
an input, the clicks as an input dataset, ``monitor_*`` metrics per period (``step`` = period index), a plot of
them, and the verdict as the tag ``seqrec.monitor.verdict``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import LoggedModel, LoggedModelInput

from seqrec import tracking
from seqrec.data.formats.common import check_file
from seqrec.data.preprocess import file_digest
from seqrec.data.readers import FORMATS, ReadOptions, concat_clicks, read_clicks
from seqrec.data.synthetic import LaterConfig, SyntheticConfig
from seqrec.monitoring import (
    K,
    PeriodResult,
    Thresholds,
    click_log,
    parse_period,
    period_bounds,
    replay,
    verdict,
)
from seqrec.serving.recommender import Recommender
from seqrec.workflow.predict import quiet_downloads
from seqrec.workflow.preprocess import DEFAULT_DATA_ROOT, generated_data
from seqrec.workflow.register import metric_of

TAG_VERDICT = "seqrec.monitor.verdict"
REFERENCE = f"test_mrr_at_{K}"
PLOT = "plots/monitor.png"


@dataclass
class MonitorParams:
    """Parameters of the monitor entry point."""

    model_uri: str = "models:/seqrec@champion"
    clicks: str = ""  # later clicks, several files comma-separated; empty: the built-in data's later period
    period: str = "1d"
    format: str = "auto"
    read: ReadOptions = field(default_factory=ReadOptions)  # on_bad_lines, columns, time_unit, sep, events, ...
    thresholds: Thresholds = field(default_factory=Thresholds)
    progress: bool = True

    def __post_init__(self) -> None:
        parse_period(self.period)
        if self.format not in ("auto", *FORMATS):
            raise ValueError(f"format must be auto or one of {', '.join(FORMATS)}, got {self.format!r}")

    @property
    def seconds(self) -> float:
        return parse_period(self.period)


def built_in_config(dataset: str) -> SyntheticConfig | None:
    """The generator settings of a built-in dataset: its folder's record (``data/raw/<name>/generator.json``), else
    its name (``synthetic-<clicks>-s<seed>``); ``None`` for any other dataset."""
    record = DEFAULT_DATA_ROOT / "raw" / dataset / "generator.json"
    if dataset and record.exists():
        known = {f.name for f in fields(SyntheticConfig)}
        return SyntheticConfig(**{k: v for k, v in json.loads(record.read_text())["config"].items() if k in known})
    found = re.fullmatch(r"synthetic-(\d+)-s(\d+)", dataset)
    return SyntheticConfig(n_clicks=int(found.group(1)), seed=int(found.group(2))) if found else None


def later_clicks(model: LoggedModel | None) -> tuple[list[Path], str]:
    """The later period of the built-in data the model was trained on (generated once, through the same safe path
    as the built-in data) and its name; an error naming what to give when the model was trained on other data."""
    dataset = model.tags.get(tracking.TAG_DATASET, "") if model is not None else ""
    cfg = built_in_config(dataset)
    if cfg is None:
        raise ValueError(f"clicks is empty, and the model was trained on {dataset or 'an unknown dataset'!r}, not on "
                         f"the built-in data: give clicks=PATH (later clicks, in any format preprocess reads)")
    name = f"{dataset}-later"
    clicks, _ = generated_data(DEFAULT_DATA_ROOT / "raw" / name, LaterConfig.after(cfg))
    return [clicks], name


def load_recommender(model_uri: str) -> Recommender:
    """The model's recommender (raw ids in, scores out), as the service loads it."""
    recommender = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().recommender
    if not isinstance(recommender, Recommender):
        raise ValueError(f"{model_uri} is not a next-click recommender (a basket model?): monitor replays next clicks")
    return recommender


def reference_mrr(model: LoggedModel | None, run_id: str | None) -> float | None:
    """The model's own ``test_mrr_at_20`` (as its training run logged it), or ``None`` when it has none."""
    if model is not None and any(m.key == REFERENCE for m in model.metrics or []):
        return metric_of(model, REFERENCE)
    if run_id:
        return mlflow.get_run(run_id).data.metrics.get(REFERENCE)
    return None


def given_clicks(params: MonitorParams) -> list[Path]:
    """The click files given, each checked (a missing or empty file is one line, before the model is loaded)."""
    files = [Path(f) for f in params.clicks.split(",")] if params.clicks else []
    for f in files:
        check_file(f)
    return files


def monitor_tags(params: MonitorParams, info, model: LoggedModel | None) -> dict[str, str]:
    """The monitor run's tags naming the model it watched."""
    tags = {"seqrec.monitored_model_uri": params.model_uri, "seqrec.monitored_model_id": info.model_id or "",
            "seqrec.monitored_run_id": info.run_id or ""}
    if model is not None:
        tags.update({tracking.TAG_MODEL: model.tags.get(tracking.TAG_MODEL, ""),
                     "seqrec.monitored_dataset": model.tags.get(tracking.TAG_DATASET, "")})
    return tags


def run_monitor(params: MonitorParams, nested: bool = False) -> dict:
    """Replay the clicks through the model in a ``monitor`` run; returns the run id, the periods and the verdict."""
    files = given_clicks(params)
    info = mlflow.models.get_model_info(params.model_uri)
    model = mlflow.MlflowClient().get_logged_model(info.model_id) if info.model_id else None
    files, name = (files, files[0].name.lstrip(".").split(".")[0]) if files else later_clicks(model)
    with quiet_downloads():
        recommender = load_recommender(params.model_uri)
    clicks = concat_clicks([read_clicks(f, params.read.on_bad_lines, params.format, params.read) for f in files])
    log = click_log(clicks, recommender)
    period_bounds(log, params.seconds)  # too many periods: refused before the run starts
    reference = reference_mrr(model, info.run_id)
    with tracking.start_run("monitor", tags=monitor_tags(params, info, model), nested=nested,
                            run_name=f"monitor-{name}") as run:
        tracking.log_params({"model_uri": params.model_uri, "clicks": ",".join(map(str, files)),
                             "period": params.period, "format": params.format, **asdict(params.thresholds)})
        if info.model_id:
            mlflow.log_input(model=LoggedModelInput(info.model_id))
        tracking.log_file_input(files[0], file_digest(*files), name, context="monitor")
        results = replay(recommender, log, params.seconds, params.progress)
        for r in results:
            tracking.log_metrics_at({f"monitor_{k}": v for k, v in r.metrics.items()}, step=r.index)
        source = f"the model's test MRR@{K}" if reference is not None else \
            f"the first period's MRR@{K} (the model has no {REFERENCE})"
        reference = reference if reference is not None else results[0].metrics[f"mrr_at_{K}"]
        decision, reasons = verdict(results, reference, params.thresholds)
        mlflow.set_tags({TAG_VERDICT: decision, "seqrec.monitor.reasons": "; ".join(reasons) or "none",
                         "seqrec.monitor.reference": f"{source} {reference:.6f}"})
        mlflow.log_metric(f"monitor_reference_mrr_at_{K}", reference)
        log_report(results, reference, params.thresholds, decision)
        return {"run_id": run.info.run_id, "periods": results, "verdict": decision, "reasons": reasons,
                "reference_mrr": reference, "reference": source, "clicks": name}


def log_report(results: list[PeriodResult], reference: float, thresholds: Thresholds, decision: str) -> None:
    """The periods as ``monitor.json`` and as the plot ``plots/monitor.png``."""
    tracking.log_json([{"period": r.index, "start": r.start, **r.metrics} for r in results], "monitor.json")
    figure = plot(results, reference, thresholds, decision)
    mlflow.log_figure(figure, PLOT)
    import matplotlib.pyplot as plt

    plt.close(figure)


def plot(results: list[PeriodResult], reference: float, thresholds: Thresholds, decision: str):
    """Accuracy (top) and drift (bottom) per period, with the verdict's thresholds as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.index for r in results]
    labels = [f"{r.index}\n{np.datetime64(int(r.start), 's').astype(str)[:16].replace('T', ' ')}" for r in results]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7, 0.9 * len(x)), 7), sharex=True)
    for key, label in ((f"recall_at_{K}", f"Recall@{K}"), (f"mrr_at_{K}", f"MRR@{K}")):
        top.plot(x, [r.metrics[key] for r in results], marker="o", label=label)
    top.axhline(reference, color="grey", linestyle=":", label=f"model's test MRR@{K} {reference:.3f}")
    top.axhline(thresholds.min_mrr_ratio * reference, color="red", linestyle="--",
                label=f"retrain below {thresholds.min_mrr_ratio:g} x that")
    top.set(ylabel="metric value", ylim=(0, 1), title=f"Model on later clicks, per period: verdict {decision}")
    top.legend(fontsize=8)
    for key, label in (("unknown_click_share", "clicks on unknown items"),
                       ("unknown_session_share", "sessions with an unknown item"),
                       ("popularity_shift", "popularity shift (JS divergence)")):
        bottom.plot(x, [r.metrics[key] for r in results], marker="o", label=label)
    bottom.axhline(thresholds.max_unknown_share, color="red", linestyle="--",
                   label=f"retrain above {thresholds.max_unknown_share:.0%} unknown clicks")
    bottom.set(xlabel="period (index, start UTC)", ylabel="share / divergence", ylim=(0, 1))
    bottom.set_xticks(x, labels, fontsize=7)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    return fig


def period_line(r: PeriodResult) -> str:
    """One period's figures in one line."""
    m = r.metrics
    start = str(np.datetime64(int(r.start), "s")).replace("T", " ")
    return (f"period {r.index} ({start} UTC): {int(m['sessions']):,} sessions, {int(m['predictions']):,} predictions, "
            f"Recall@{K} {m[f'recall_at_{K}']:.4f}, MRR@{K} {m[f'mrr_at_{K}']:.4f}, unknown clicks "
            f"{m['unknown_click_share']:.1%}, unknown sessions {m['unknown_session_share']:.1%}, popularity shift "
            f"{m['popularity_shift']:.3f}")
