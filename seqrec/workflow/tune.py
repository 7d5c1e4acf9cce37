"""The ``tune`` step: an Optuna study of one model's hyper-parameters in one MLflow run, then its best setting
trained and tested as a normal training run nested under it.

Every trial is a nested run (its parameters, per-epoch curves, ``best_val_*``) that selects only: it trains
on train_tr and scores valid, and the pruner stops it when its ``val_mrr_at_20`` at an epoch falls below the
median of earlier trials. No trial sees test. The parent run logs the best parameters, the table of every
trial of the study, and the optimisation history and parameter importances under ``plots/``. The final step
is ``train_<model>`` (or ``train_baseline``) with the best setting and ``seeds`` seeds: select the epoch count
on valid, refit on train_full, test.

Workers on several machines share one study when they run the same command with the same ``study`` and a
shared ``storage`` (``tuning.open_storage``): each adds its own ``trials`` to the study, as nested runs of its
own parent run, all tagged ``seqrec.study``. At its end each worker logs the whole study as it stands and takes
its best setting; the final run of a setting (model, preset, fixed and best values, seeds, data digest, code
version: its ``seqrec.final_key``) is trained once per tracking store: a worker that finds a finished final run
of the same key reuses it (``seqrec.final_reused``) instead of training it again, and workers that share a
checkpoint folder train their final runs one after another (a file lock), never into one checkpoint
directory at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import optuna
from mlflow.entities import RunTag

from seqrec import tracking, tuning
from seqrec.checkpoints import Checkpointer
from seqrec.configs import RangeError, at_least, check_ranges, ranged
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import SELECTION_METRIC
from seqrec.models import registry
from seqrec.models.auto_preset import AUTO, DataShape
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.train_config import split_overrides
from seqrec.trainer import History, Trainer, TrainingDiverged
from seqrec.version import code_version
from seqrec.workflow import neural as neural_workflow
from seqrec.workflow.baseline import run_baseline, validate_baseline
from seqrec.workflow.neural import epoch_logger, model_factory, run_neural
from seqrec.workflow.report import RANKING_PREFIXES, log_inputs

TAG_STUDY = "seqrec.study"
TAG_TRIAL = "seqrec.trial"
TAG_TRIAL_STATE = "seqrec.trial_state"
TAG_FINAL_RUN = "seqrec.final_run_id"
TAG_FINAL_KEY = "seqrec.final_key"
TAG_FINAL_REUSED = "seqrec.final_reused"
TAG_BEST_TRIAL = "seqrec.best_trial"
TAG_WORKER = "seqrec.worker"
TAG_STORAGE = "seqrec.study_storage"


@dataclass
class TuneParams:
    """Parameters of the ``tune`` entry point."""

    model: str
    data: str
    preset: str = "default"  # the neural model's preset the searched parameters override (auto: sized from data)
    epochs: int = ranged(0, at_least(0))  # cap on the epochs of every trial and of the final run (0: the preset's)
    trials: int = ranged(20, at_least(0))  # trials this call adds to the study (0: until ``timeout``)
    timeout: float = ranged(0.0, at_least(0))  # seconds after which no new trial starts (0: none)
    study: str = ""  # study to create or continue (empty: a new one named by model, dataset and time)
    jobs: int = ranged(1, at_least(1))  # trials run at once (threads of this process)
    seeds: int = ranged(1, at_least(1))  # seeds of the final training run
    space: str = ""  # search-space overrides, name=kind:args,...
    params: dict = field(default_factory=dict)  # fixed overrides (they leave the search space)
    write_preset: str = ""  # save the best setting as this preset of the model
    seed: int = ranged(0, at_least(0))  # the sampler's seed
    device: str = ""  # auto | cpu | cuda (empty: auto)
    storage: str = ""  # Optuna storage URL shared by workers (empty: studies/NAME.db)

    def __post_init__(self) -> None:
        check_ranges("TuneParams", self)
        tuning.check_storage(self.storage)
        if self.trials == 0 and self.timeout == 0:
            raise RangeError("TuneParams", "trials=0 needs a timeout: give trials > 0 or timeout > 0 (seconds)")


def run_tune(p: TuneParams, nested: bool = False) -> dict[str, Any]:
    """Search, log the study, then train and test the best setting; returns the outcome (run ids, trial
    counts, best parameters and value, the final run's test metrics)."""
    neural = p.model in registry.MODELS
    if not neural and p.model not in BASELINES:
        raise ValueError(f"unknown model {p.model!r}, expected one of {sorted(registry.MODELS)} or {BASELINES}")
    fixed = dict(p.params)
    if p.epochs and neural:
        fixed["epochs"] = p.epochs
    if p.device and neural:
        fixed["device"] = p.device
    space = tuning.search_space(p.model, p.space, fixed)
    _check_space(p.model, p.preset, fixed, space)
    data = ProcessedDataset.load(p.data)
    name = p.study or f"{p.model}-{data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    identity = {"model": p.model, "preset": p.preset if neural else "", "data_digest": data.digest,
                "metric": SELECTION_METRIC}
    study = tuning.open_study(name, identity, p.seed, storage=p.storage)
    where = tuning.describe_storage(p.storage, name)
    tags = {tracking.TAG_MODEL: p.model, tracking.TAG_PRESET: p.preset if neural else "default", TAG_STUDY: name,
            TAG_WORKER: tuning.worker_id(), TAG_STORAGE: where, **tracking.dataset_tags(data.stats)}
    with tracking.start_run("tune", tags=tags, nested=nested, run_name=f"tune-{name}") as parent:
        # the launcher of ``mlflow run`` logs the entry point's own parameters as given; these are what they became
        tracking.log_params({**{k: v for k, v in asdict(p).items() if k not in ("params", "study", "storage")},
                             "study": name, "storage": where,
                             "fixed_params": ",".join(f"{k}={v}" for k, v in fixed.items()),
                             "search_space": ",".join(f"{k}={d.kind}:{':'.join(map(str, d.values))}"
                                                      for k, d in space.items())})
        log_inputs(data, ("train_tr", "valid"))
        before = len(study.trials)
        objective = _Objective(p, data, fixed, space, name, parent.info.run_id, parent.info.experiment_id)
        print(f"tune: study {name!r} ({where}), {before} trials so far; searching "
              f"{', '.join(space)}", flush=True)
        # a trial whose values are each in range but not together (heads not dividing hidden) fails alone
        study.optimize(objective, n_trials=p.trials or None, timeout=p.timeout or None, n_jobs=p.jobs,
                       catch=(TrainingDiverged, RangeError), gc_after_trial=True)
        counts = _log_study(study, parent.info.run_id)
        best = tuning.best_overrides(study)
        best_trial, best_value = study.best_trial.number, study.best_value  # over every worker's trials so far
        tracking.log_params({f"best.{k}": v for k, v in best.items()})
        tracking.log_json(best, "best_params.json")
        mlflow.set_tag(TAG_BEST_TRIAL, str(best_trial))
        final_run, test, reused = _final_run(p, name, data.digest, {**fixed, **best}, best_trial,
                                             parent.info.experiment_id)
        mlflow.set_tags({TAG_FINAL_RUN: final_run, TAG_FINAL_REUSED: str(reused).lower()})
    return {"run_id": parent.info.run_id, "study": name, "trials": counts, "best": best, "best_value": best_value,
            "best_trial": best_trial, "final_run_id": final_run, "final_reused": reused, "test": test}


def _final_run(p: TuneParams, study: str, digest: str, setting: dict, best_trial: int,
               experiment_id: str) -> tuple[str, dict[str, float], bool]:
    """Train and test ``setting`` nested under the active tune run, or reuse the finished final run of the same
    key in this experiment (another worker's, or an earlier call's); returns its id, test metrics, and whether
    it was reused. Holds the final-run lock of the checkpoint folder meanwhile; writes ``write_preset``."""
    key = _final_key(p, digest, setting)
    with _final_lock():
        if p.write_preset:
            path = tuning.save_preset(p.model, p.write_preset, p.preset, setting, _shape(p))
            mlflow.set_tag("seqrec.written_preset", p.write_preset)
            print(f"tune: wrote preset {p.write_preset!r} of {p.model} to {path}", flush=True)
        done = mlflow.MlflowClient().search_runs(
            [experiment_id], f"tags.`{TAG_STUDY}` = '{study}' AND tags.`{TAG_FINAL_KEY}` = '{key}' AND "
                             f"attributes.status = 'FINISHED'", max_results=1, order_by=["attributes.start_time ASC"])
        if done:
            run = done[0]
            print(f"tune: the best setting (trial {best_trial}) was trained and tested already, in run "
                  f"{run.info.run_id}: reusing it", flush=True)
            return run.info.run_id, {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}, True
        if p.model in registry.MODELS:
            final_run, test = run_neural(p.model, p.data, p.preset, setting, nested=True, seeds=p.seeds)
        else:
            final_run, test = run_baseline(p.data, p.model, setting, nested=True, seeds=p.seeds)
        tags = {TAG_STUDY: study, TAG_BEST_TRIAL: str(best_trial), TAG_FINAL_KEY: key}  # one request: all or none
        mlflow.MlflowClient().log_batch(final_run, tags=[RunTag(k, v) for k, v in tags.items()])
    return final_run, test, False


def _final_key(p: TuneParams, digest: str, setting: dict) -> str:
    """What makes two final runs the same: model, preset, setting, seeds, dataset digest and code version."""
    what = {"model": p.model, "preset": p.preset, "setting": setting, "seeds": p.seeds, "data_digest": digest,
            "code": code_version()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _final_lock() -> Iterator[None]:
    """An exclusive lock on the checkpoint folder's ``.tune-final.lock``: the final runs of workers that share
    the folder (one machine, or a shared file system) train one after another. Without locks on the file system,
    no lock."""
    root = Path(neural_workflow.CHECKPOINT_ROOT)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / ".tune-final.lock", "a")  # noqa: SIM115 (held across the yield)
    except OSError as exc:
        print(f"tune: no final-run lock in {root} ({exc}); going on without it", flush=True)
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            print(f"tune: {root} does not support locks ({exc}); going on without one", flush=True)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)


def _check_space(model: str, preset: str, fixed: dict, space: dict[str, tuning.Dimension]) -> None:
    """Refuse an unknown parameter, or a value of the wrong type or out of its range (each bound or choice of a
    dimension, with the other parameters as fixed or preset), before the first trial, not in it."""
    def check(overrides: dict) -> None:
        if model in registry.MODELS:
            split_overrides(model, preset, overrides)
        else:
            make_baseline(model, **overrides)

    check(fixed)
    for name, dim in space.items():
        for value in dim.values:
            check({**fixed, name: value})


def _shape(p: TuneParams, data: ProcessedDataset | None = None) -> DataShape | None:
    """The dataset's shape where ``preset=auto`` needs it (``None`` for a named preset)."""
    return DataShape.of(data or ProcessedDataset.load(p.data)) if p.preset == AUTO else None


@dataclass
class _Objective:
    """One trial: a nested MLflow run that selects on valid and returns the selection metric."""

    p: TuneParams
    data: ProcessedDataset
    fixed: dict
    space: dict[str, tuning.Dimension]
    study: str
    parent_id: str
    experiment_id: str

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("tune_run_id", self.parent_id)  # which worker's call ran it (its counts)
        values = tuning.suggest(trial, self.space)
        tags = {tracking.TAG_STEP: "tune_trial", tracking.TAG_MODEL: self.p.model, TAG_STUDY: self.study,
                TAG_TRIAL: str(trial.number), tracking.TAG_PRESET: self.p.preset, TAG_WORKER: tuning.worker_id(),
                **tracking.dataset_tags(self.data.stats)}
        pruned = None
        # the parent is named explicitly: a trial in a worker thread has no active run to nest under
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True, parent_run_id=self.parent_id,
                              experiment_id=self.experiment_id, tags=tags) as run:
            trial.set_user_attr("run_id", run.info.run_id)
            mlflow.log_params({"trial": trial.number, "preset": self.p.preset, **self.fixed, **values})
            try:
                best, value = self._select(trial, {**self.fixed, **values})
            except optuna.TrialPruned as exc:
                pruned = exc
                mlflow.set_tag(TAG_TRIAL_STATE, "PRUNED")
            else:
                mlflow.set_tag(TAG_TRIAL_STATE, "COMPLETE")
                tracking.log_metrics_at({f"best_{k}": v for k, v in best.items() if k.startswith(RANKING_PREFIXES)})
        if pruned is not None:  # raised outside the run, which thus ends FINISHED (a pruned trial is no failure)
            raise pruned
        return value

    def _select(self, trial: optuna.Trial, overrides: dict) -> tuple[dict[str, float], float]:
        """The valid metrics at the selected epoch and the selection metric's value there (neural: epoch by
        epoch, with pruning; baseline: one fit)."""
        if self.p.model not in registry.MODELS:
            val = validate_baseline(self.data, self.p.model, overrides, progress=False).prefixed("val")
            tracking.log_metrics_at(val, step=0)
            trial.set_user_attr("best_epoch", 0)
            return val, val[SELECTION_METRIC]
        model_cfg, train_cfg, runtime = split_overrides(self.p.model, self.p.preset, overrides,
                                                        _shape(self.p, self.data))
        log_epoch = epoch_logger(f"trial {trial.number} {self.p.model}")
        prune = tuning.pruning_callback(trial, train_cfg.select_metric)

        def on_epoch(phase: str, epoch: int, record: dict) -> None:
            log_epoch(phase, epoch, record)
            prune(phase, epoch, record)

        with tempfile.TemporaryDirectory(prefix="trial-") as tmp:
            trainer = Trainer(model_factory(self.p.model, self.data, model_cfg), self.data, train_cfg,
                              Checkpointer(Path(tmp)), on_epoch, replace(runtime, progress=False))
            history: History = trainer.select()
        trial.set_user_attr("best_epoch", history.best_epoch)
        tracking.log_metrics_at({"best_epoch": history.best_epoch,
                                 "train_seconds": sum(r["epoch_seconds"] for r in history.select)})
        return history.selected(), history.best_value


def _log_study(study: optuna.Study, parent_id: str) -> dict[str, int]:
    """On the parent run: trial counts (the study's, with every worker's trials, and those this call added), the
    best value, the table of trials, and the plots."""
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    counts = {"trials_total": len(states),
              "trials_added": sum(t.user_attrs.get("tune_run_id") == parent_id for t in trials),
              **{f"trials_{s.name.lower()}": states.count(s) for s in
                 (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)}}
    tracking.log_metrics_at({k: float(v) for k, v in counts.items()})
    if counts["trials_complete"]:
        tracking.log_metrics_at({"study_best_value": study.best_value, "study_best_trial": study.best_trial.number})
    mlflow.log_table(tuning.trials_table(study), "trials.json")
    importance = tuning.importances(study)
    tracking.log_json(importance, "param_importances.json")
    with tempfile.TemporaryDirectory() as tmp:
        for png in (tuning.plot_history(study, Path(tmp) / "optimization_history.png", SELECTION_METRIC),
                    tuning.plot_importances(importance, Path(tmp) / "param_importances.png",
                                            f"Parameter importance in {study.study_name}")):
            mlflow.log_artifact(str(png), "plots")
    print(f"tune: {counts['trials_added']} trials added; the study has {counts['trials_complete']} finished, "
          f"{counts['trials_pruned']} pruned, {counts['trials_fail']} failed", flush=True)
    return counts
