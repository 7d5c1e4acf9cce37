"""Hyper-parameter search with Optuna: search spaces as data, studies stored in SQLite, pruning on valid.

A search space maps a parameter (any override a model takes: a field of its config, of ``TrainConfig``,
or of a baseline's config) to a distribution written as text, the same way on the command line
(``-P space="lr=loguniform:1e-4:1e-2,hidden=choice:64:128"``) as in ``SPACES`` below:

- ``uniform:LOW:HIGH``, ``loguniform:LOW:HIGH``: a float;
- ``int:LOW:HIGH``, ``logint:LOW:HIGH``: an integer (both ends included);
- ``choice:A:B:...``: one of the values (each read as int, float, bool or text).

Trials only select: they train on train_tr and score valid (``val_mrr_at_20`` after every epoch, which
also feeds the pruner); no trial is refitted or tested. A study lives in ``studies/NAME.db`` (or under
``SEQREC_STUDIES``), so a killed search continues, and a second process on the same study runs trials in
parallel with the first.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from seqrec.configs import parse_value
from seqrec.outputs import write_json_atomically

STUDY_ROOT = Path(os.environ.get("SEQREC_STUDIES", "studies"))

# The default search space of each model; a parameter fixed by the caller (``params``) leaves it.
_TRANSFORMER_SPACE = {
    "lr": "loguniform:1e-4:5e-3",
    "hidden": "choice:64:128:256",
    "blocks": "int:1:3",
    "heads": "choice:1:2:4",
    "dropout": "uniform:0.1:0.7",
    "emb_dropout": "uniform:0.1:0.7",
    "weight_decay": "loguniform:1e-3:0.3",
    "batch_size": "choice:128:256:512",
}
_KNN_SPACE = {"k": "logint:50:500", "sample_size": "logint:500:5000", "similarity": "choice:jaccard:vec:cosine"}
SPACES: dict[str, dict[str, str]] = {
    "sasrec": {**_TRANSFORMER_SPACE, "label_smoothing": "uniform:0:0.3"},
    "bert4rec": {**_TRANSFORMER_SPACE, "mask_ratio": "uniform:0.1:0.5"},
    "gru4rec": {
        "lr": "loguniform:0.01:0.3",
        "hidden": "choice:100:200:480",
        "dropout_hidden": "uniform:0:0.6",
        "n_sample": "choice:0:512:2048",
        "sample_alpha": "uniform:0:1",
        "momentum": "uniform:0:0.9",
        "batch_size": "choice:32:64:128",
    },
    "meanemb": {"lr": "loguniform:1e-4:1e-2", "hidden": "choice:64:128:256"},
    "itemknn": {"n_sims": "logint:20:500", "lmbd": "loguniform:1:100", "alpha": "uniform:0:1"},
    "ar": {"pruning": "int:5:50"},
    "sr": {"steps": "int:2:15", "pruning": "int:5:50"},
    "sknn": _KNN_SPACE,
    "vsknn": _KNN_SPACE,
    "stan": {**_KNN_SPACE, "spw": "loguniform:0.5:20", "snh_days": "loguniform:0.5:100", "inh": "loguniform:0.5:20"},
    "vstan": {**_KNN_SPACE, "spw": "loguniform:0.5:20", "ipw": "loguniform:0.5:20", "idf": "uniform:0:5"},
}
_KINDS = ("uniform", "loguniform", "int", "logint", "choice")


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its kind (``uniform``, ``loguniform``, ``int``, ``logint``, ``choice``) and its
    bounds or choices."""

    kind: str
    values: tuple

    @classmethod
    def parse(cls, name: str, text: str) -> Dimension:
        """``"loguniform:1e-4:1e-2"`` -> a dimension; a malformed text is refused naming ``name``."""
        kind, *parts = text.strip().split(":")
        if kind not in _KINDS:
            raise ValueError(f"search space: {name}={text!r}: unknown kind {kind!r}, expected one of {_KINDS}")
        values = tuple(parse_value(p) for p in parts)
        if kind == "choice":
            if not values:
                raise ValueError(f"search space: {name}={text!r}: choice needs at least one value (choice:A:B)")
            return cls(kind, values)
        numeric = int if kind in ("int", "logint") else float
        if len(values) != 2 or not all(isinstance(v, numeric) or (numeric is float and isinstance(v, int))
                                       for v in values) or any(isinstance(v, bool) for v in values):
            raise ValueError(f"search space: {name}={text!r}: {kind} needs two {numeric.__name__} bounds "
                             f"({kind}:LOW:HIGH)")
        low, high = values
        if low > high or (kind.startswith("log") and low <= 0):
            positive = " and LOW > 0" if kind.startswith("log") else ""
            raise ValueError(f"search space: {name}={text!r}: expected LOW <= HIGH{positive}")
        return cls(kind, (numeric(low), numeric(high)))

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """The trial's value of this parameter (Optuna's sampler chooses it)."""
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.values))
        low, high = self.values
        if self.kind in ("int", "logint"):
            return trial.suggest_int(name, low, high, log=self.kind == "logint")
        return trial.suggest_float(name, low, high, log=self.kind == "loguniform")

    def example(self) -> Any:
        """A value inside the dimension (checks a parameter's name and type before a study starts)."""
        return self.values[0]


def parse_space(text: str) -> dict[str, Dimension]:
    """``"lr=loguniform:1e-4:1e-2,hidden=choice:64:128"`` -> dimensions by parameter name."""
    space = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, spec = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"search space: {part!r} is not name=kind:args (e.g. lr=loguniform:1e-4:1e-2)")
        space[name.strip()] = Dimension.parse(name.strip(), spec)
    return space


def search_space(model: str, override: str = "", fixed: dict | None = None) -> dict[str, Dimension]:
    """``model``'s default space (``SPACES``) with ``override`` (text) replacing or adding dimensions, less
    the parameters ``fixed`` by the caller."""
    space = {name: Dimension.parse(name, spec) for name, spec in SPACES.get(model, {}).items()}
    space.update(parse_space(override))
    space = {name: dim for name, dim in space.items() if name not in (fixed or {})}
    if not space:
        raise ValueError(f"nothing to search for {model}: it has no default search space and -P space= names no "
                         f"parameter that -P params does not fix")
    return space


def suggest(trial: optuna.Trial, space: dict[str, Dimension]) -> dict[str, Any]:
    """The trial's value of every dimension of ``space``."""
    return {name: dim.suggest(trial, name) for name, dim in space.items()}


def make_pruner(startup_trials: int = 2, warmup_epochs: int = 1) -> optuna.pruners.BasePruner:
    """Stop a trial whose ``val_mrr_at_20`` at an epoch is below the median of earlier trials at that epoch,
    once ``startup_trials`` trials finished and from epoch ``warmup_epochs`` on."""
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)


def pruning_callback(trial: optuna.Trial, metric: str) -> Callable[[str, int, dict], None]:
    """A training loop's per-epoch callback (``phase, epoch, record``) that reports ``record[metric]`` of each
    selection epoch to ``trial`` and raises ``optuna.TrialPruned`` when the pruner says stop."""

    def on_epoch(phase: str, epoch: int, record: dict) -> None:
        if phase != "select" or metric not in record:
            return
        trial.report(float(record[metric]), step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {metric} {record[metric]:.4f} is below the median of "
                                     f"earlier trials")

    return on_epoch


def study_path(name: str) -> Path:
    """The SQLite file of study ``name`` (``studies/NAME.db``)."""
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"study name {name!r}: expected a plain file name (letters, digits, - and _)")
    return STUDY_ROOT / f"{name}.db"


def open_study(name: str, identity: dict[str, str], seed: int = 0,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create study ``name`` (maximising) or continue it; ``identity`` (model, dataset digest, metric) is stored
    on creation and must match on continuation, so a study never mixes models or datasets.

    The TPE sampler is seeded with ``seed`` plus the number of trials so far: a continued study does not
    repeat the first run's proposals. Trials of a process that was killed are marked failed after a grace
    period (heartbeats), so they neither count as running nor block the study.
    """
    path = study_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # heartbeats are marked experimental; they are what resuming a kill needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}", heartbeat_interval=30,
                                             grace_period=90)
    if name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        stored = {k: study.user_attrs.get(k) for k in identity}
        if stored != identity:
            raise ValueError(f"study {name!r} ({path}) was made for {stored}, not {identity}: choose another "
                             f"-P study name")
        n_done = len(study.trials)
    else:
        n_done = 0
    sampler = optuna.samplers.TPESampler(seed=seed + n_done)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler,
                                pruner=pruner or make_pruner(), load_if_exists=True)
    if n_done == 0 and not study.user_attrs:
        for key, value in identity.items():
            study.set_user_attr(key, value)
    return study


def trials_table(study: optuna.Study) -> dict[str, list]:
    """Every trial as a row: number, state, value, the selected epoch, seconds, MLflow run and parameters."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    value = [t.value if t.value is not None else float("nan") for t in trials]
    return {
        "trial": [t.number for t in trials],
        "state": [t.state.name for t in trials],
        "value": value,
        "best_epoch": [t.user_attrs.get("best_epoch", 0) for t in trials],
        "epochs_run": [len(t.intermediate_values) for t in trials],
        "seconds": [t.duration.total_seconds() if t.duration else float("nan") for t in trials],
        "run_id": [t.user_attrs.get("run_id", "") for t in trials],
        **{f"param.{n}": [str(t.params.get(n, "")) for t in trials] for n in names},
    }


def plot_history(study: optuna.Study, path: Path, metric: str) -> Path:
    """Each finished trial's selection value and the best so far, by trial number."""
    plt = _pyplot()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = [t.number for t in done]
    values = [t.value for t in done]
    fig, ax = plt.subplots(figsize=(7, 4))
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.scatter([t.number for t in pruned], [max(t.intermediate_values.values()) for t in pruned], marker="x",
                   color="grey", label="pruned (best epoch reached)")
    ax.scatter(numbers, values, label="trial")
    if values:
        ax.step(numbers, [max(values[: i + 1]) for i in range(len(values))], where="post", color="C1", label="best")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="trial", ylabel=metric, title=f"Optimisation history of {study.study_name}")
    ax.legend()
    return _save(fig, path)


def importances(study: optuna.Study) -> dict[str, float]:
    """How much each parameter explains of the selection value (fANOVA over finished trials; empty when fewer
    than two trials finished or nothing varied)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):  # every finished trial has the same values, or a single distribution
        return {}


def plot_importances(values: dict[str, float], path: Path, title: str) -> Path:
    """A horizontal bar per parameter, most important on top (an empty note when nothing can be said)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.4 * len(values) + 1)))
    names = list(values)[::-1]
    ax.barh(names, [values[n] for n in names])
    if not values:
        ax.text(0.5, 0.5, "fewer than two finished trials", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="importance (fANOVA)", title=title)
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def best_overrides(study: optuna.Study) -> dict[str, Any]:
    """The parameters of the study's best finished trial (``ValueError`` when none finished)."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise ValueError(f"study {study.study_name!r} has no finished trial (all pruned, failed or running): "
                         f"run more trials, or widen the search space")
    return dict(study.best_trial.params)


def save_preset(model: str, name: str, base: str, overrides: dict[str, Any]) -> Path:
    """Write preset ``name`` of ``model``: preset ``base`` with ``overrides`` (a study's fixed and best
    parameters) as complete ``model`` and ``train`` settings, into ``presets.TUNED_FILE``; it is then
    trained like any preset (``-P preset=NAME``). A preset defined in ``presets.py`` is never replaced."""
    from dataclasses import fields

    from seqrec.models import presets, registry
    from seqrec.trainer import RuntimeConfig, TrainConfig

    if model not in registry.MODELS:
        raise ValueError(f"write_preset: presets are for the neural models {sorted(registry.MODELS)}, not {model}")
    tuned = json.loads(presets.TUNED_FILE.read_text()) if presets.TUNED_FILE.exists() else {}
    if name in presets.PRESETS.get(model, {}) and name not in tuned.get(model, {}):
        raise ValueError(f"write_preset: {name!r} is a built-in preset of {model}; choose another name")
    model_part, train_part = registry.preset(model, base)
    train_fields = {f.name for f in fields(TrainConfig)}
    runtime_fields = {f.name for f in fields(RuntimeConfig)}
    for key, value in overrides.items():
        if key not in runtime_fields:
            (train_part if key in train_fields else model_part)[key] = value
    entry = {"model": model_part, "train": train_part}
    tuned.setdefault(model, {})[name] = entry
    write_json_atomically(presets.TUNED_FILE, tuned)
    presets.PRESETS.setdefault(model, {})[name] = entry
    return presets.TUNED_FILE
