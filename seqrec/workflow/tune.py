"""The ``tune`` step: an Optuna study of one model's hyper-parameters in one MLflow run, then its best setting
trained and tested as a normal training run nested under it.

Every trial is a nested run (its parameters, per-epoch curves, ``best_val_*``) that selects only: it trains
on train_tr and scores valid, and the pruner stops it when its ``val_mrr_at_20`` at an epoch falls below the
median of earlier trials. No trial sees test. The parent run logs the best parameters, the table of every
trial of the study, and the optimisation history and parameter importances under ``plots/``. The final step
is ``train_<model>`` (or ``train_baseline``) with the best setting and ``seeds`` seeds: select the epoch count
on valid, refit on train_full, test.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import optuna

from seqrec import tracking, tuning
from seqrec.configs import RangeError, at_least, check_ranges, ranged
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import SELECTION_METRIC
from seqrec.models import registry
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.trainer import Checkpointer, History, Trainer, TrainingDiverged, split_overrides
from seqrec.workflow.baseline import run_baseline, validate_baseline
from seqrec.workflow.neural import epoch_logger, model_factory, run_neural
from seqrec.workflow.report import RANKING_PREFIXES, log_inputs

TAG_STUDY = "seqrec.study"
TAG_TRIAL = "seqrec.trial"
TAG_TRIAL_STATE = "seqrec.trial_state"
TAG_FINAL_RUN = "seqrec.final_run_id"


@dataclass
class TuneParams:
    """Parameters of the ``tune`` entry point."""

    model: str
    data: str
    preset: str = "default"  # the neural model's preset the searched parameters override
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

    def __post_init__(self) -> None:
        check_ranges("TuneParams", self)
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
    study = tuning.open_study(name, identity, p.seed)
    tags = {tracking.TAG_MODEL: p.model, tracking.TAG_PRESET: p.preset if neural else "default", TAG_STUDY: name,
            **tracking.dataset_tags(data.stats)}
    with tracking.start_run("tune", tags=tags, nested=nested, run_name=f"tune-{name}") as parent:
        # the launcher of ``mlflow run`` logs the entry point's own parameters as given; these are what they became
        tracking.log_params({**{k: v for k, v in asdict(p).items() if k not in ("params", "study")}, "study": name,
                             "fixed_params": ",".join(f"{k}={v}" for k, v in fixed.items()),
                             "search_space": ",".join(f"{k}={d.kind}:{':'.join(map(str, d.values))}"
                                                      for k, d in space.items())})
        log_inputs(data, ("train_tr", "valid"))
        before = len(study.trials)
        objective = _Objective(p, data, fixed, space, name, parent.info.run_id, parent.info.experiment_id)
        print(f"tune: study {name!r} ({tuning.study_path(name)}), {before} trials so far; searching "
              f"{', '.join(space)}", flush=True)
        # a trial whose values are each in range but not together (heads not dividing hidden) fails alone
        study.optimize(objective, n_trials=p.trials or None, timeout=p.timeout or None, n_jobs=p.jobs,
                       catch=(TrainingDiverged, RangeError), gc_after_trial=True)
        counts = _log_study(study, before)
        best = tuning.best_overrides(study)
        tracking.log_params({f"best.{k}": v for k, v in best.items()})
        tracking.log_json(best, "best_params.json")
        if p.write_preset:
            path = tuning.save_preset(p.model, p.write_preset, p.preset, {**fixed, **best})
            mlflow.set_tag("seqrec.written_preset", p.write_preset)
            print(f"tune: wrote preset {p.write_preset!r} of {p.model} to {path}", flush=True)
        if neural:
            final_run, test = run_neural(p.model, p.data, p.preset, {**fixed, **best}, nested=True, seeds=p.seeds)
        else:
            final_run, test = run_baseline(p.data, p.model, {**fixed, **best}, nested=True, seeds=p.seeds)
        mlflow.set_tag(TAG_FINAL_RUN, final_run)
    return {"run_id": parent.info.run_id, "study": name, "trials": counts, "best": best,
            "best_value": study.best_value, "final_run_id": final_run, "test": test}


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
        values = tuning.suggest(trial, self.space)
        tags = {tracking.TAG_STEP: "tune_trial", tracking.TAG_MODEL: self.p.model, TAG_STUDY: self.study,
                TAG_TRIAL: str(trial.number), tracking.TAG_PRESET: self.p.preset,
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
        model_cfg, train_cfg, runtime = split_overrides(self.p.model, self.p.preset, overrides)
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
        return history.select[history.best_epoch - 1], history.best_value


def _log_study(study: optuna.Study, before: int) -> dict[str, int]:
    """On the parent run: trial counts, the best value, the table of trials, and the plots."""
    states = [t.state for t in study.trials]
    counts = {"trials_total": len(states), "trials_added": len(states) - before,
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
