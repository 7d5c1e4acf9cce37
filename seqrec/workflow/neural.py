"""The training step of the sequence models in MLflow: the ``train`` entry point (any model of the registry),
and ``train_gru``, ``train_sasrec`` and ``train_bert4rec``, which are ``train`` with that model.

Names: a run of model ``NAME`` is the step ``train_NAME`` whatever entry point started it (its ``seqrec.step``
tag, the key ``main`` reuses it by, and the prefix of its printed summary and errors): ``train_gru`` runs are
``train_gru4rec`` runs.

Presets are named the same for every model: ``tiny`` (seconds, for tests), ``sample`` (tuned on the
real YooChoose sample's valid split) and ``default`` (YooChoose-size data); GRU4Rec adds ``small``,
``medium`` and ``large`` (``seqrec.models.presets``); without one a model trains with its own
(``registry.default_preset``: GRU4Rec's ``small``, the others' ``default``). Any field of the model's config,
of ``TrainConfig`` or of ``RuntimeConfig`` can be overridden.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow.exceptions import MlflowException

from seqrec import distributed, tracking
from seqrec.checkpoints import CHECKPOINT_ROOT, Checkpointer, run_key
from seqrec.configs import at_least, check_range
from seqrec.data.dataset import ProcessedDataset
from seqrec.models import registry
from seqrec.models.base import SequenceModel
from seqrec.models.registry import build_model
from seqrec.train_config import RuntimeConfig, TrainConfig, split_overrides
from seqrec.trainer import EpochCallback, History, ModelFactory, Trainer
from seqrec.workflow.plots import curve_figures, log_figure
from seqrec.workflow.report import SeedResult, log_final_metrics, log_inputs, log_trained_model, seed_summary

Resume = bool | Literal["auto"]


def run_neural(model_name: str, data_dir: str, preset: str = "default", overrides: dict | None = None,
               resume: Resume = False, nested: bool = False, seeds: int = 1) -> tuple[str, dict[str, float]]:
    """Train one neural model with the select-then-refit protocol in one MLflow run.

    ``resume``: ``True`` continues the run of the same settings and data from its last checkpoint (and
    stops with an error if there is none), ``"auto"`` continues it if there is one and starts a new run
    otherwise (saying so), ``False`` starts a new run. Under torchrun every rank trains; only rank 0 logs
    to MLflow (the others return ``("", {})``).

    ``seeds`` > 1 repeats the whole protocol (selection of the epoch count included) with the training seed
    plus 0, 1, ..., N-1: the final metrics are the means over the seeds, with ``_mean``, ``_std`` and
    ``_seed<i>`` variants; per-epoch curves are logged under their names for the first seed and with a
    ``_seed<i>`` suffix for the others; the LoggedModel is the first seed's.
    """
    check_range(f"train_{model_name}", "seeds", seeds, at_least(1))
    model_cfg, train_cfg, runtime = split_overrides(model_name, preset, overrides or {})  # checked before the data
    data = ProcessedDataset.load(data_dir)
    if not distributed.init_distributed(runtime.device):
        for i in range(seeds):
            if not _train_quietly(model_name, data, model_cfg, replace(train_cfg, seed=train_cfg.seed + i), runtime):
                break
        distributed.leave_process_group()
        return "", {}
    params = _run_params(model_cfg, train_cfg)
    # runtime switches are logged with the training settings, but a run resumes under other ones
    params_logged = {**params, **{f"train.{k}": v for k, v in asdict(runtime).items() if k != "progress"}}
    # a run of several seeds resumes only as such (its first seed's checkpoints are those of a one-seed run's
    # otherwise)
    key_params = {**params, "seeds": seeds} if seeds > 1 else params
    checkpointer, run_id = _checkpoint_directory(model_name, key_params, data, resume)
    tags = {tracking.TAG_MODEL: model_name, tracking.TAG_PRESET: preset, **tracking.dataset_tags(data.stats)}
    with tracking.start_run(f"train_{model_name}", tags=tags, nested=nested, run_id=run_id,
                            run_name=f"{model_name}-{preset}-{data.name}", system_metrics=True) as run:
        if run_id is None:
            tracking.log_params({"data": str(data_dir), "preset": preset, "seeds": seeds, **params_logged})
            checkpointer.save_json("run.json", {"run_id": run.info.run_id})
        datasets = log_inputs(data)
        started = time.perf_counter()
        results, model, first_history = [], None, None
        for i in range(seeds):
            seed_cfg = replace(train_cfg, seed=train_cfg.seed + i)
            seed_checkpointer = checkpointer if i == 0 else _seed_checkpointer(model_name, seed_cfg, model_cfg, data,
                                                                                 fresh=run_id is None)
            trainer = Trainer(model_factory(model_name, data, model_cfg), data, seed_cfg, seed_checkpointer,
                              epoch_logger(model_name, "" if i == 0 else f"_seed{i + 1}"), runtime)
            seed_model, history, test = trainer.run(resume=run_id is not None)
            results.append(SeedResult({k: v for k, v in _best(history).items() if k.startswith("val_")}, test,
                                      _summary(seed_model, history)))
            if i == 0:
                model, first_history = seed_model, history
        wall = time.perf_counter() - started
        model_id = _log_model_and_curves(model, first_history, data, f"{model_name} ({preset})", tags,
                                         {"preset": preset, "seeds": seeds, **params_logged})
        logged = log_final_metrics(model_id, datasets, results, {"wall_seconds": wall})
    distributed.leave_process_group()
    return run.info.run_id, {k: v for k, v in logged.items() if k.startswith("test_")}


def _run_params(model_cfg: Any, train_cfg: TrainConfig) -> dict[str, Any]:
    """The settings that make a run what it is (``model.*``, ``train.*``): logged, and its checkpoint key."""
    return {**{f"model.{k}": v for k, v in asdict(model_cfg).items()},
            **{f"train.{k}": v for k, v in asdict(train_cfg).items()}}


def _seed_checkpointer(model_name: str, train_cfg: TrainConfig, model_cfg: Any, data: ProcessedDataset,
                       fresh: bool) -> Checkpointer:
    """The checkpoints of a further seed of a run (its own key: the seed is part of it); a new run clears them.
    The other ranks get the directory and whether to resume, as for the first seed."""
    key = run_key(model_name, _run_params(model_cfg, train_cfg), data, distributed.rank_and_world()[1])
    checkpointer = Checkpointer(CHECKPOINT_ROOT / f"{model_name}-{key}")
    if fresh:
        checkpointer.clear()
    distributed.from_main((str(checkpointer.directory), not fresh))
    return checkpointer


def model_factory(model_name: str, data: ProcessedDataset, model_cfg: Any) -> ModelFactory:
    """A factory of fresh models, given the popularity of the phase's training split (the trainer seeds and
    builds one per phase)."""
    return lambda popularity: build_model(model_name, data.n_items, model_cfg, popularity)


def _checkpoint_directory(model_name: str, params: dict, data: ProcessedDataset,
                          resume: Resume) -> tuple[Checkpointer, str | None]:
    """The run's checkpoints (named by ``run_key``) and the MLflow run to continue, if any; a new run
    discards old checkpoints of its key. The other ranks get the directory and whether to resume (or
    ``None`` when ``resume=True`` finds nothing, and rank 0 stops with the error)."""
    key = run_key(model_name, params, data, distributed.rank_and_world()[1])
    checkpointer = Checkpointer(CHECKPOINT_ROOT / f"{model_name}-{key}")
    run_file = checkpointer.directory / "run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if resume and run_file.exists() else None
    others = sorted(p.name for p in CHECKPOINT_ROOT.glob(f"{model_name}-*") if p != checkpointer.directory)
    missing = (f"no checkpoint of a {model_name} run with these settings and data under {checkpointer.directory} "
               f"(its key: the dataset's digest, the model and training settings with the seed, and the "
               f"process count; not the data path nor runtime switches){_other_runs(others)}")
    status = _run_status(run_id) if run_id is not None else ""
    if status in ("FINISHED", "missing"):
        run_id, missing = None, (f"the run of these settings and data, {json.loads(run_file.read_text())['run_id']}, "
                                 + ("already finished (its results stand)" if status == "FINISHED" else
                                    "is not in this tracking store"))
    if resume and run_id is None:
        if resume is True:
            distributed.from_main(None)  # the other ranks return and leave the group with this one
            distributed.leave_process_group()
            raise ValueError(f"resume=true: {missing}. Run with resume=auto to start a new run when there is "
                             f"nothing to resume, or with resume=false to start a new one")
        print(f"train_{model_name}: resume=auto: {missing}; starting a new run", flush=True)
    if run_id is None:
        checkpointer.clear()
    distributed.from_main((str(checkpointer.directory), run_id is not None))
    return checkpointer, run_id


def _run_status(run_id: str) -> str:
    """The MLflow status of ``run_id`` (``RUNNING`` after a kill, ``FAILED`` after a crash), or ``missing``."""
    try:
        return mlflow.get_run(run_id).info.status
    except MlflowException:
        return "missing"


def _other_runs(names: list[str]) -> str:
    """A hint naming the checkpoints of other settings of the same model, if any."""
    if not names:
        return ""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"; checkpoints of other settings: {shown}"


def epoch_logger(model_name: str, suffix: str = "") -> EpochCallback:
    """Log each epoch's record to the active MLflow run (step = epoch; names with ``suffix``, e.g. ``_seed2``)
    and print a one-line summary of it."""
    shown_keys = ("train_loss", "val_loss", "val_recall_at_20", "val_mrr_at_20", "refit_train_loss")

    def on_epoch(phase: str, epoch: int, record: dict) -> None:
        tracking.log_metrics_at({f"{k}{suffix}": v for k, v in record.items() if k != "epoch"}, step=epoch)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k in shown_keys)
        seconds = record.get("epoch_seconds", record.get("refit_epoch_seconds", 0.0))
        print(f"{model_name}{suffix} {phase} epoch {epoch}: {shown} ({seconds:.1f} s)", flush=True)

    return on_epoch


def _best(history: History) -> dict:
    return history.select[history.best_epoch - 1]


def _log_model_and_curves(model: SequenceModel, history: History, data: ProcessedDataset, title: str,
                          tags: dict[str, str], params: dict) -> str:
    """Log the loss and metric curves, the history and the model (as the run's LoggedModel); its id."""
    for name, fig in curve_figures(history, title).items():
        log_figure(fig, f"plots/{name}")
    tracking.log_json(history.to_dict(), "history.json")
    return log_trained_model(model.cpu().eval(), data, model.config.max_len, tags, params=params)


def _summary(model: SequenceModel, history: History) -> dict[str, float]:
    """Training time, selected epoch and model size of one seed, logged with the final metrics."""
    train_seconds = sum(r["epoch_seconds"] for r in history.select) + \
        sum(r["refit_epoch_seconds"] for r in history.refit)
    return {"train_seconds": train_seconds, "best_epoch": history.best_epoch,
            "n_parameters": sum(p.numel() for p in model.parameters())}


def _train_quietly(model_name: str, data: ProcessedDataset, model_cfg: Any, train_cfg: TrainConfig,
                   runtime: RuntimeConfig) -> bool:
    """A non-zero rank: the same training, without MLflow, checkpoints or evaluation; ``False`` when rank 0
    found nothing to resume (and reports it)."""
    decision = distributed.from_main(None)  # rank 0's checkpoint directory and whether to resume
    if decision is None:
        return False
    directory, resume = decision
    Trainer(model_factory(model_name, data, model_cfg), data, train_cfg, Checkpointer(Path(directory)),
            runtime=replace(runtime, progress=False)).run(resume=resume)
    return True


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
                   help=f"{presets} (empty: the model's own, registry.default_preset)")
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
