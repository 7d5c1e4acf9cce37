"""The training step of the sequence models in MLflow: the ``train`` entry point (any model of the registry),
and ``train_gru``, ``train_sasrec`` and ``train_bert4rec``, which are ``train`` with that model.

Names: a run of model ``NAME`` is the step ``train_NAME`` whatever entry point started it (its ``seqrec.step``
tag, the key ``main`` reuses it by, and the prefix of its printed summary and errors): ``train_gru`` runs are
``train_gru4rec`` runs.

Presets are named the same for every model: ``auto`` (the default: sized from the dataset's statistics,
``seqrec.models.auto_preset``, each choice's reason printed and logged as ``preset_auto.json``), ``tiny``
(seconds, for tests), ``sample`` (tuned on the real YooChoose sample's valid split) and ``default``
(YooChoose-size data); GRU4Rec adds ``small``, ``medium`` and ``large`` (``seqrec.models.presets``). Any field of
the model's config, of ``TrainConfig`` or of ``RuntimeConfig`` can be overridden.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import mlflow

from seqrec import distributed, tracking
from seqrec.checkpoints import CHECKPOINT_ROOT, Checkpointer, RunArtifacts, run_key
from seqrec.configs import at_least, check_range
from seqrec.data.dataset import ProcessedDataset
from seqrec.devices import resolve_device
from seqrec.models import registry
from seqrec.models.auto_preset import AUTO, DataShape
from seqrec.models.base import SequenceModel
from seqrec.models.fused import Fused
from seqrec.models.registry import build_model
from seqrec.train_config import RuntimeConfig, TrainConfig, auto_choice, split_overrides
from seqrec.trainer import EpochCallback, History, ModelFactory, Trainer
from seqrec.workflow.plots import curve_figures, log_figure
from seqrec.workflow.report import SeedResult, log_final_metrics, log_inputs, log_trained_model, seed_summary

Resume = bool | Literal["auto"]
TAG_SEED_PROCESSES = "seqrec.seed_processes"  # how many seeds of the run trained at once
TAG_AUTO_BASE = "seqrec.auto_base"  # preset=auto: the named preset it started from


def run_neural(model_name: str, data_dir: str, preset: str = "default", overrides: dict | None = None,
               resume: Resume = False, nested: bool = False, seeds: int = 1) -> tuple[str, dict[str, float]]:
    """Train one neural model with the select-then-refit protocol in one MLflow run.

    ``resume``: ``True`` continues the unfinished run of the same settings and data from its last checkpoint
    (and stops with an error if there is none), ``"auto"`` continues it if there is one and starts a new run
    otherwise (saying so), ``False`` starts a new run. The run is found in the tracking store by its tag
    ``seqrec.checkpoint_key`` and its checkpoint in its artifacts, so it continues on any machine that reaches
    the store (``_run_checkpointer``).

    Under torchrun (one machine or several) every rank trains; only rank 0 logs to MLflow and checkpoints (the
    others return ``("", {})``); every rank reads its own copy of ``data_dir``, and all stop with an error when
    the copies' digests differ.

    ``seeds`` > 1 repeats the whole protocol (selection of the epoch count included) with the training seed
    plus 0, 1, ..., N-1: the final metrics are the means over the seeds, with ``_mean``, ``_std`` and
    ``_seed<i>`` variants; per-epoch curves are logged under their names for the first seed and with a
    ``_seed<i>`` suffix for the others; the LoggedModel is the first seed's. On CPU the seeds train at once in
    separate processes where the cores allow (``seed_processes``), each seed exactly as it would alone with the
    same threads.
    """
    check_range(f"train_{model_name}", "seeds", seeds, at_least(1))
    model_cfg, train_cfg, runtime = split_overrides(model_name, preset, overrides or {})  # checked before the data
    data = ProcessedDataset.load(data_dir)
    if preset == AUTO:  # sized from the data, now that it is read
        model_cfg, train_cfg, runtime = split_overrides(model_name, preset, overrides or {}, DataShape.of(data))
    is_main = distributed.init_distributed(runtime.device)
    try:
        job = _Job(model_name, data_dir, data, preset, model_cfg, train_cfg, runtime, seeds)
        _check_ranks_agree(job)
        run_id = distributed.main_computes(lambda: _run_to_continue(model_name, job.key(0), resume))
        if is_main:
            result = _train_and_log(job, run_id, nested)
        else:
            _train_quietly(job, resume=run_id is not None)
            result = "", {}
    except distributed.RankZeroFailed:  # rank 0 reports it
        distributed.leave_process_group(wait=False)
        return "", {}
    except BaseException:
        distributed.leave_process_group(wait=False)
        raise
    distributed.leave_process_group()
    return result


@dataclass
class _Job:
    """One training run as every rank sees it: the model, data, settings and seed count."""

    model_name: str
    data_dir: str
    data: ProcessedDataset
    preset: str
    model_cfg: Any
    train_cfg: TrainConfig
    runtime: RuntimeConfig
    seeds: int

    def seed_cfg(self, seed: int) -> TrainConfig:
        """The training settings of the ``seed``-th seed (0-based): the training seed plus ``seed``."""
        return replace(self.train_cfg, seed=self.train_cfg.seed + seed)

    def key(self, seed: int) -> str:
        """The checkpoint key (``run_key``) of the ``seed``-th seed; the first seed's names the run (its tag).
        A run of several seeds keys every seed with the seed count too, so no one-seed run shares its
        checkpoints."""
        params = _run_params(self.model_cfg, self.seed_cfg(seed))
        params = {**params, "seeds": self.seeds} if self.seeds > 1 else params
        return run_key(self.model_name, params, self.data, distributed.rank_and_world()[1])

    def directory(self, seed: int) -> Path:
        """Where this machine keeps the ``seed``-th seed's checkpoints (rank 0 only writes them)."""
        return CHECKPOINT_ROOT / f"{self.model_name}-{self.key(seed)}"


def _check_ranks_agree(job: _Job) -> None:
    """Stop every rank, saying which holds what, when the ranks' copies of the dataset or their settings differ
    (each machine reads its own ``--data``, and is started with its own command line)."""
    distributed.check_same_on_every_rank(
        "dataset", job.data.digest, str(job.data.path.resolve()),
        "every machine needs the same processed dataset (the digest of its stats.json): preprocess the same raw "
        "files with the same settings on each, or copy the directory")
    distributed.check_same_on_every_rank(
        "settings", job.key(0), f"{job.model_name}, preset {job.preset}, {job.seeds} seed(s)",
        "start every machine with the same model, preset, overrides and seeds")


def _train_and_log(job: _Job, run_id: str | None, nested: bool) -> tuple[str, dict[str, float]]:
    """Rank 0's MLflow run (a new one, or ``run_id`` continued): every seed's training, the curves, the LoggedModel
    (the first seed's) and the final metrics; the run's id and its test metrics."""
    params = _run_params(job.model_cfg, job.train_cfg)
    # runtime switches are logged with the training settings, but a run resumes under other ones
    params_logged = {**params, **{f"train.{k}": v for k, v in asdict(job.runtime).items() if k != "progress"}}
    tags = {tracking.TAG_MODEL: job.model_name, tracking.TAG_PRESET: job.preset,
            **({tracking.TAG_FUSED: job.train_cfg.fuse} if job.train_cfg.fuse else {}),
            **tracking.dataset_tags(job.data.stats)}
    label = tracking.model_label(tags)  # sasrec, or sasrec+vstan when fused
    with tracking.start_run(f"train_{job.model_name}", tags={**tags, tracking.TAG_CHECKPOINT_KEY: job.key(0)},
                            nested=nested, run_id=run_id, run_name=f"{label}-{job.preset}-{job.data.name}",
                            system_metrics=True) as run:
        if run_id is None:
            tracking.log_params({"data": str(job.data_dir), "preset": job.preset, "seeds": job.seeds, **params_logged})
        if job.preset == AUTO:
            _log_auto_choice(job)
        datasets = log_inputs(job.data)
        started = time.perf_counter()
        model, first_history, results = _train_seeds(job, run.info.run_id, resume=run_id is not None)
        wall = time.perf_counter() - started
        model_id = _log_model_and_curves(model, first_history, job.data, f"{label} ({job.preset})", tags,
                                         {"preset": job.preset, "seeds": job.seeds, **params_logged})
        logged = log_final_metrics(model_id, datasets, results, {"wall_seconds": wall})
    return run.info.run_id, {k: v for k, v in logged.items() if k.startswith("test_")}


def _log_auto_choice(job: _Job) -> None:
    """Print and log what ``preset=auto`` chose for this dataset and why (``preset_auto.json``; tag
    ``seqrec.auto_base``: the named preset it started from)."""
    choice = auto_choice(job.model_name, DataShape.of(job.data))
    mlflow.set_tag(TAG_AUTO_BASE, choice.base)
    mlflow.log_dict(choice.record(), "preset_auto.json")
    print(f"train_{job.model_name}: {choice.summary()}", flush=True)


def seed_processes(job: _Job) -> int:
    """How many seeds train at once: on CPU, one process per seed as far as the cores go (each with at least
    ``threads`` threads, one by default); one at a time on a GPU, under torchrun, or with ``seed_processes=1``."""
    if job.seeds == 1 or distributed.is_distributed() or resolve_device(job.runtime.device).type != "cpu":
        return 1
    if job.runtime.seed_processes:
        return min(job.seeds, job.runtime.seed_processes)
    return max(1, min(job.seeds, len(os.sched_getaffinity(0)) // max(1, job.runtime.threads)))


def _train_seeds(job: _Job, run_id: str, resume: bool) -> tuple[SequenceModel | Fused, History, list[SeedResult]]:
    """Every seed of the run: the first in this process (its curves logged live, its model kept), the others in
    a pool of worker processes meanwhile (their curves logged when they end). The cores are shared evenly."""
    processes = seed_processes(job)
    mlflow.set_tag(TAG_SEED_PROCESSES, str(processes))
    runtime = job.runtime
    if processes > 1 and not runtime.threads:
        runtime = replace(runtime, threads=max(1, len(os.sched_getaffinity(0)) // processes))
    job = replace(job, runtime=runtime)
    results: list[SeedResult | None] = [None] * job.seeds
    pool = _seed_pool(processes - 1) if processes > 1 else None
    with pool if pool is not None else contextlib.nullcontext():
        spec = _SeedSpec(job.model_name, job.data_dir, job.preset, job.model_cfg, job.train_cfg,
                         replace(runtime, progress=False), job.seeds, run_id, resume, mlflow.get_tracking_uri())
        others: dict[int, Future] = {i: pool.submit(_seed_in_worker, spec, i) for i in range(1, job.seeds)} \
            if pool is not None else {}
        for i in [i for i in range(job.seeds) if i not in others]:
            seed_model, history, results[i] = _train_seed(job, i, run_id, resume, epoch_logger(
                job.model_name, "" if i == 0 else f"_seed{i + 1}"))
            if i == 0:
                model, first_history = seed_model, history
        for i, future in others.items():
            try:
                history, results[i] = future.result()
            except BrokenProcessPool:
                raise RuntimeError(f"the process training seed {i + 1} died (killed, or out of memory): resume=true "
                                   f"continues the run from each seed's last checkpoint") from None
            _replay_curves(epoch_logger(job.model_name, f"_seed{i + 1}", echo=False), history)
    return model, first_history, [r for r in results if r is not None]


def _train_seed(job: _Job, seed: int, run_id: str, resume: bool,
                on_epoch: EpochCallback) -> tuple[SequenceModel | Fused, History, SeedResult]:
    """The ``seed``-th seed's select-then-refit protocol with its checkpoints in run ``run_id``."""
    checkpointer = _run_checkpointer(job, seed, run_id, resume=resume)
    trainer = Trainer(model_factory(job.model_name, job.data, job.model_cfg), job.data, job.seed_cfg(seed),
                      checkpointer, on_epoch, job.runtime)
    model, history, test = trainer.run(resume=resume)
    assert test is not None  # rank 0 evaluates
    best_val = {k: v for k, v in history.selected().items() if k.startswith("val_")}
    return model, history, SeedResult(best_val, test, _summary(model, history))


@dataclass
class _SeedSpec:
    """What a worker process needs to train one seed of a run (the dataset is loaded again from its path)."""

    model_name: str
    data_dir: str
    preset: str
    model_cfg: Any
    train_cfg: TrainConfig
    runtime: RuntimeConfig
    seeds: int
    run_id: str
    resume: bool
    tracking_uri: str


def _seed_in_worker(spec: _SeedSpec, seed: int) -> tuple[History, SeedResult]:
    """A worker process: train seed ``seed`` (printing each epoch), checkpointing into the run; its history and
    result go back to the run's process, which logs them."""
    mlflow.set_tracking_uri(spec.tracking_uri)
    job = _Job(spec.model_name, spec.data_dir, ProcessedDataset.load(spec.data_dir), spec.preset, spec.model_cfg,
               spec.train_cfg, spec.runtime, spec.seeds)
    _, history, result = _train_seed(job, seed, spec.run_id, spec.resume,
                                     epoch_printer(spec.model_name, f"_seed{seed + 1}"))
    return history, result


def _seed_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started afresh (``spawn``: no copy of this process's threads or open runs), each ending
    when this process does."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_end_with_parent, initargs=(os.getpid(),))


PR_SET_PDEATHSIG = 1  # Linux prctl option: the signal a process gets when its parent ends


def _end_with_parent(parent: int) -> None:
    """Make a seed worker end when the run's process ends (killed, or crashed) instead of training on alone and
    writing checkpoints nobody resumes: on Linux the kernel sends it SIGTERM then (``PR_SET_PDEATHSIG``); a
    parent already gone ends it at once. Elsewhere the pool's shutdown is what ends it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _replay_curves(on_epoch: EpochCallback, history: History) -> None:
    """Log a finished seed's per-epoch records as its epoch callback would have, in order."""
    for phase, records in (("select", history.select), ("refit", history.refit)):
        for record in records:
            on_epoch(phase, int(record["epoch"]), record)


def _run_params(model_cfg: Any, train_cfg: TrainConfig) -> dict[str, Any]:
    """The settings that make a run what it is (``model.*``, ``train.*``): logged, and its checkpoint key."""
    return {**{f"model.{k}": v for k, v in asdict(model_cfg).items()},
            **{f"train.{k}": v for k, v in asdict(train_cfg).items()}}


def _run_checkpointer(job: _Job, seed: int, run_id: str, resume: bool) -> Checkpointer:
    """The ``seed``-th seed's checkpoints in run ``run_id``: written on this machine (``CHECKPOINT_ROOT``) and
    uploaded to the run's artifacts (``checkpoints/last.pt``, a further seed's ``checkpoints/seed<i>/last.pt``),
    the latest one only. Resuming fetches the uploaded one, whichever machine wrote it; the local files stay
    only when they are the run's own (``run.json``), as the fallback (or the checkpoint, when the run has
    uploaded none). A new run starts from none."""
    folder = "checkpoints" if seed == 0 else f"checkpoints/seed{seed + 1}"
    checkpointer = Checkpointer(job.directory(seed), RunArtifacts(run_id, folder))
    own = (checkpointer.read_json("run.json") or {}).get("run_id") == run_id
    if not resume or not (checkpointer.fetch(keep_local=own) or own):
        checkpointer.clear()
    checkpointer.save_json("run.json", {"run_id": run_id})
    return checkpointer


def model_factory(model_name: str, data: ProcessedDataset, model_cfg: Any) -> ModelFactory:
    """A factory of fresh models, given the popularity of the phase's training split (the trainer seeds and
    builds one per phase)."""
    return lambda popularity: build_model(model_name, data.n_items, model_cfg, popularity)


def _run_to_continue(model_name: str, key: str, resume: Resume) -> str | None:
    """The unfinished run that ``resume`` continues: the latest run tagged with the checkpoint key ``key`` in the
    tracking store, whichever machine started it; ``None`` for a new run. ``resume=True`` without one is an
    error that says why."""
    if not resume:
        return None
    tracking.check_tracking_server()
    run = tracking.latest_run_tagged(tracking.TAG_CHECKPOINT_KEY, key)
    if run is not None and run.info.status != "FINISHED":  # RUNNING after a kill, FAILED after a crash
        return run.info.run_id
    if run is None:
        others = sorted(p.name for p in CHECKPOINT_ROOT.glob(f"{model_name}-*") if p.name != f"{model_name}-{key}")
        missing = (f"no checkpoint of a {model_name} run with these settings and data in the tracking store "
                   f"{mlflow.get_tracking_uri()} (no run tagged {tracking.TAG_CHECKPOINT_KEY}={key}; the key: the "
                   f"dataset's digest, the model and training settings with the seed, and the process count; not "
                   f"the data path nor runtime switches){_other_runs(others)}")
    else:
        missing = f"the latest run of these settings and data, {run.info.run_id}, already finished (its results stand)"
    if resume is True:
        raise ValueError(f"resume=true: {missing}. Run with resume=auto to start a new run when there is "
                         f"nothing to resume, or with resume=false to start a new one")
    print(f"train_{model_name}: resume=auto: {missing}; starting a new run", flush=True)
    return None


def _other_runs(names: list[str]) -> str:
    """A hint naming the checkpoints of other settings of the same model, if any."""
    if not names:
        return ""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"; checkpoints of other settings: {shown}"


def epoch_logger(model_name: str, suffix: str = "", echo: bool = True) -> EpochCallback:
    """Log each epoch's record to the active MLflow run (step = epoch; names with ``suffix``, e.g. ``_seed2``)
    and, with ``echo``, print a one-line summary of it."""
    printer = epoch_printer(model_name, suffix)

    def on_epoch(phase: str, epoch: int, record: dict) -> None:
        tracking.log_metrics_at({f"{k}{suffix}": v for k, v in record.items() if k != "epoch"}, step=epoch)
        if echo:
            printer(phase, epoch, record)

    return on_epoch


def epoch_printer(model_name: str, suffix: str = "") -> EpochCallback:
    """Print a one-line summary of each epoch's record."""
    shown_keys = ("train_loss", "val_loss", "val_recall_at_20", "val_mrr_at_20", "refit_train_loss")

    def on_epoch(phase: str, epoch: int, record: dict) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k in shown_keys)
        seconds = record.get("epoch_seconds", record.get("refit_epoch_seconds", 0.0))
        print(f"{model_name}{suffix} {phase} epoch {epoch}: {shown} ({seconds:.1f} s)", flush=True)

    return on_epoch


def _log_model_and_curves(model: SequenceModel | Fused, history: History, data: ProcessedDataset, title: str,
                          tags: dict[str, str], params: dict) -> str:
    """Log the loss and metric curves, the history and the model (as the run's LoggedModel); its id."""
    for name, fig in curve_figures(history, title).items():
        log_figure(fig, f"plots/{name}")
    tracking.log_json(history.to_dict(), "history.json")
    return log_trained_model(model.cpu().eval(), data, model.config.max_len, tags, params=params)


def _summary(model: SequenceModel | Fused, history: History) -> dict[str, float]:
    """Training time, selected epoch and model size of one seed (and a fused model's kNN share), logged with the
    final metrics."""
    train_seconds = sum(r["epoch_seconds"] for r in history.select) + \
        sum(r["refit_epoch_seconds"] for r in history.refit)
    fused = isinstance(model, Fused)
    summary = {"train_seconds": train_seconds, "best_epoch": history.best_epoch,
               "n_parameters": model.n_parameters if fused else sum(p.numel() for p in model.parameters())}
    if fused:
        summary.update(fusion_weight=model.weight,
                       **{f"network_{k}": v for k, v in history.fusion["network_test"].items()})
    return summary


def _train_quietly(job: _Job, resume: bool) -> None:
    """A non-zero rank: the same training of every seed, without MLflow, checkpoint files or evaluation; a
    resumed seed's state comes from rank 0 (``Trainer._restore``), so this machine needs none of its files."""
    for i in range(job.seeds):
        Trainer(model_factory(job.model_name, job.data, job.model_cfg), job.data, job.seed_cfg(i),
                Checkpointer(job.directory(i)), runtime=replace(job.runtime, progress=False)).run(resume=resume)


def cli(model_name: str | None, argv: list[str] | None = None) -> int:
    """Command line of ``train`` (``model_name=None``: ``--model NAME`` names the model) or of training
    ``model_name``; extra ``--key value`` pairs override any field."""
    from seqrec.workflow.cli import parse_with_overrides, run_step

    argv = sys.argv[1:] if argv is None else list(argv)
    if model_name is None:
        model_name, argv = _named_model(argv)
    p = build_parser(model_name)
    args, overrides = parse_with_overrides(p, argv)
    if args.nproc < 1:
        p.error(f"argument --nproc: nproc={args.nproc} must be >= 1")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return distributed.relaunch(model_name, args.nproc, argv)
    if args.epochs:  # 0: the preset's own; any other value is TrainConfig's epochs (checked: >= 1)
        overrides["epochs"] = args.epochs
    if args.device not in ("", "auto"):  # auto: RuntimeConfig's own (or the device given in --params)
        overrides["device"] = args.device
    preset = args.preset or registry.default_preset(model_name)

    def action() -> str:
        run_id, m = run_neural(model_name, args.data, preset, overrides, resume=args.resume, seeds=args.seeds)
        if not run_id:  # a rank other than 0: rank 0 reports
            return ""
        return f"run {run_id}: test {seed_summary(m)}"

    return run_step(f"train_{model_name}", action)


def build_parser(model_name: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``train`` (``model_name=None``: ``--model`` required, ``--preset`` empty for the model's own)
    or of training ``model_name`` (``--model`` is it or absent, ``--preset`` defaults to its own preset)."""
    from seqrec.workflow.cli import int_arg, resume_arg

    what = model_name or "a sequence model"
    p = argparse.ArgumentParser(description=f"Train {what}: select on valid, refit, test, log to MLflow.",
                                allow_abbrev=False)  # `--seed 3` overrides the seed, never means `--seeds 3`
    p.add_argument("--model", required=model_name is None, default=model_name,
                   choices=[model_name] if model_name else sorted(registry.MODELS), help="the sequence model")
    presets = " | ".join(registry.preset_names(model_name)) if model_name else "tiny | sample | default | ..."
    p.add_argument("--preset", default=registry.default_preset(model_name) if model_name else "",
                   help=f"{presets} (empty: the model's own, registry.default_preset; auto: sized from the data)")
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--epochs", type=int_arg, default=0, help="maximum epochs (0: the preset's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (empty: auto)")
    p.add_argument("--resume", type=resume_arg, default=False,
                   help="true: continue the interrupted run of the same settings and data from its last "
                        "checkpoint, and stop with an error if there is none; auto: continue it if there is one, "
                        "else start a new run (saying so); false: start a new run")
    p.add_argument("--params", default="", help="overrides as key=value,key=value")
    p.add_argument("--nproc", type=int_arg, default=1, help="processes: > 1 relaunches itself under torchrun (DDP)")
    p.add_argument("--seeds", type=int_arg, default=1,
                   help="repeat the protocol with N seeds; final metrics are means, also as _mean and _std")
    return p


def _named_model(argv: list[str]) -> tuple[str, list[str]]:
    """The model ``--model`` names in ``argv`` and the other arguments; none, or an unknown one, is a usage error
    (``train``'s parser says which, or prints its help)."""
    picker = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    picker.add_argument("--model")
    known, rest = picker.parse_known_args(argv)
    if known.model not in registry.MODELS:  # --help, or --model missing or unknown: argparse's own message
        parser = build_parser()
        parser.parse_args(argv)
        parser.error("argument --model: required")
    return known.model, rest
