"""Hyper-parameter search with Optuna: search spaces as data, studies stored in SQLite, pruning on valid.

A search space maps a parameter (any override a model takes: a field of its config, of ``TrainConfig``,
or of a baseline's config) to a distribution written as text, the same way on the command line
(``-P space="lr=loguniform:1e-4:1e-2,hidden=choice:64:128"``) as in a sequence model's ``search_space`` (declared
in its file, found through ``seqrec.models.registry``) and in the baselines' ``SPACES`` below:

- ``uniform:LOW:HIGH``, ``loguniform:LOW:HIGH``: a float;
- ``int:LOW:HIGH``, ``logint:LOW:HIGH``: an integer (both ends included);
- ``choice:A:B:...``: one of the values (each read as int, float, bool or text).

Trials only select: they train on train_tr and score valid (``val_mrr_at_20`` after every epoch, which
also feeds the pruner); no trial is refitted or tested. A study lives in ``studies/NAME.db`` (or under
``SEQREC_STUDIES``), so a killed search continues, and a second process on the same study runs trials in
parallel with the first. A study in a shared storage (``storage``: an Optuna RDB URL such as
``postgresql://...``, or ``journal:///PATH`` for a journal file on a shared file system) is shared by workers on
several machines in the same way.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

import optuna

from seqrec.configs import parse_value
from seqrec.outputs import write_json_atomically

if TYPE_CHECKING:
    from seqrec.models.auto_preset import DataShape

STUDY_ROOT = Path(os.environ.get("SEQREC_STUDIES", "studies"))

# The default search space of each baseline (a sequence model declares its own, ``search_space``); a parameter
# fixed by the caller (``params``) leaves it.
_KNN_SPACE = {"k": "logint:50:500", "sample_size": "logint:500:5000", "similarity": "choice:jaccard:vec:cosine"}
SPACES: dict[str, dict[str, str]] = {
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
        low, high = cast(tuple[float, float], values)  # two numbers (ints count as floats), checked above
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


def default_space(model: str) -> dict[str, str]:
    """``model``'s default space as text: a sequence model's own (``search_space``, through the registry), a
    baseline's from ``SPACES``."""
    from seqrec.models import registry

    return registry.search_space(model) if model in registry.MODELS else dict(SPACES.get(model, {}))


def search_space(model: str, override: str = "", fixed: dict | None = None) -> dict[str, Dimension]:
    """``model``'s default space (``default_space``) with ``override`` (text) replacing or adding dimensions,
    less the parameters ``fixed`` by the caller."""
    space = {name: Dimension.parse(name, spec) for name, spec in default_space(model).items()}
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


_RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
JOURNAL = "journal:"


def check_storage(url: str) -> None:
    """Refuse a storage URL that is neither empty (the SQLite file), an RDB URL (``sqlite:///``,
    ``postgresql[+driver]://``, ``mysql[+driver]://``) nor a journal file (``journal:///PATH``)."""
    if not url or (url.startswith(JOURNAL) and _journal_path(url)):
        return
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme not in _RDB_SCHEMES or "://" not in url:
        raise ValueError(f"storage={describe_storage(url)!r}: expected an Optuna RDB URL (postgresql://USER@HOST/DB, "
                         f"mysql://..., sqlite:///PATH) or journal:///PATH (a journal file on a shared file system); "
                         f"empty: studies/NAME.db")


def describe_storage(url: str, name: str = "") -> str:
    """Where a study lives, for messages and MLflow: the SQLite file, or the URL without its password."""
    if not url:
        return str(study_path(name)) if name else str(STUDY_ROOT / "NAME.db")
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _journal_path(url: str) -> str:
    """``journal:///abs/file.log`` -> ``/abs/file.log``; ``journal:rel/file.log`` -> ``rel/file.log``."""
    rest = url[len(JOURNAL):]
    return rest[2:] if rest.startswith("//") else rest


def open_storage(url: str = "", name: str = "", attempts: int = 5) -> optuna.storages.BaseStorage:
    """The Optuna storage behind ``url`` (empty: ``studies/NAME.db``). RDB storages record heartbeats: a trial
    of a killed worker is marked failed after 90 s. Creating the tables of a new database is retried, as two
    workers starting together may both try it."""
    check_storage(url)
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = Path(_journal_path(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if not url:
        path = study_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path.resolve()}"
    engine = {} if url.startswith("sqlite") else {"pool_pre_ping": True}  # a long search outlives idle connections
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental; resuming a kill needs them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=30, grace_period=90)
        except ModuleNotFoundError as exc:
            raise ValueError(f"storage={describe_storage(url)!r}: its database driver is not installed ({exc.name}): "
                             f"pip install 'psycopg[binary]' for postgresql://, or name the installed driver in the "
                             f"URL (postgresql+psycopg2://...)") from None
        except Exception as exc:
            if attempt + 1 == attempts or not any(race in str(exc) for race in ("already exists", "duplicate key")):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def worker_id() -> str:
    """This process among a study's workers: host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


def open_study(name: str, identity: dict[str, str], seed: int = 0,
               pruner: optuna.pruners.BasePruner | None = None, storage: str = "") -> optuna.study.Study:
    """Create study ``name`` (maximising) in ``storage`` (see :func:`open_storage`) or continue it; ``identity``
    (model, dataset digest, metric) is stored on creation and must match on continuation, so a study never mixes
    models or datasets, even when several workers create it at once.

    The TPE sampler is seeded with ``seed`` plus the number of trials so far: a continued study does not
    repeat the first run's proposals; in a shared ``storage`` the worker (host and process) is added, so that
    workers started together do not propose the same settings. Trials of a process that was killed are marked
    failed after a grace period (heartbeats, RDB storages), so they neither count as running nor block the study.
    """
    study_path(name)  # a plain name, whichever the storage
    store = open_storage(storage, name)
    where = describe_storage(storage, name)
    n_done = 0
    if name in optuna.get_all_study_names(store):
        existing = optuna.load_study(study_name=name, storage=store)
        _check_identity(existing, identity, where, unset_ok=True)
        n_done = len(existing.trials)
    offset = zlib.crc32(worker_id().encode()) % 100_003 if storage else 0
    sampler = optuna.samplers.TPESampler(seed=seed + n_done + offset)
    study = optuna.create_study(study_name=name, storage=store, direction="maximize", sampler=sampler,
                                pruner=pruner or make_pruner(), load_if_exists=True)
    stored = study.user_attrs
    for key, value in identity.items():  # a new study's, or what a worker creating it at the same time has not written
        if key not in stored:
            study.set_user_attr(key, value)
    _check_identity(study, identity, where)  # read back: two workers creating it with different identities fail
    return study


def _check_identity(study: optuna.study.Study, identity: dict[str, str], where: str, unset_ok: bool = False) -> None:
    """Refuse a study stored with another identity (``unset_ok``: a study that another worker has just created and
    whose identity it is still writing passes when what it wrote so far matches)."""
    stored = {k: study.user_attrs.get(k) for k in identity}
    if stored != identity and not (unset_ok and all(v is None or v == identity[k] for k, v in stored.items())):
        raise ValueError(f"study {study.study_name!r} ({where}) was made for {stored}, not {identity}: choose "
                         f"another -P study name")


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
        "tune_run_id": [t.user_attrs.get("tune_run_id", "") for t in trials],
        **{f"param.{n}": [str(t.params.get(n, "")) for t in trials] for n in names},
    }


def plot_history(study: optuna.Study, path: Path, metric: str) -> Path:
    """Each finished trial's selection value and the best so far, by trial number."""
    plt = _pyplot()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = [t.number for t in done]
    values = [cast(float, t.value) for t in done]  # a complete (single-objective) trial has its value
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


def save_preset(model: str, name: str, base: str, overrides: dict[str, Any], shape: DataShape | None = None) -> Path:
    """Write preset ``name`` of ``model``: preset ``base`` (``auto``: as sized for data of ``shape``) with
    ``overrides`` (a study's fixed and best parameters) as complete ``model`` and ``train`` settings, into
    ``presets.TUNED_FILE``; it is then trained like any preset (``-P preset=NAME``). A preset defined in
    ``presets.py`` is never replaced."""
    from dataclasses import fields

    from seqrec.models import presets, registry
    from seqrec.train_config import RuntimeConfig, TrainConfig, preset_values

    if model not in registry.MODELS:
        raise ValueError(f"write_preset: presets are for the neural models {sorted(registry.MODELS)}, not {model}")
    tuned = json.loads(presets.TUNED_FILE.read_text()) if presets.TUNED_FILE.exists() else {}
    if name in presets.PRESETS.get(model, {}) and name not in tuned.get(model, {}):
        raise ValueError(f"write_preset: {name!r} is a built-in preset of {model}; choose another name")
    model_part, train_part = (dict(values) for values in preset_values(model, base, shape))
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
