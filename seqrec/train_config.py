"""The settings of a training run: ``TrainConfig`` (what the loop optimises and how, part of a run's identity),
``RuntimeConfig`` (where and how it computes and reports, not part of its identity) and ``split_overrides``,
which sends each override of a preset (a named one, or ``auto``: sized from the dataset) to the model config,
``TrainConfig`` or ``RuntimeConfig``.

Each field declares the values it allows (``seqrec.configs``), checked whenever a config is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from seqrec.configs import RangeError, above, at_least, check_ranges, check_types, one_of, ranged, share
from seqrec.evaluation import SELECTION_METRIC
from seqrec.models import registry
from seqrec.models.auto_preset import AUTO, AutoChoice, DataShape, choose
from seqrec.models.fused import FUSIBLE


@dataclass
class TrainConfig:
    """What the loop optimises and how: part of a run's identity (``run_key``). Each field declares the values
    it allows (``seqrec.configs``), checked whenever a config is built."""

    epochs: int = ranged(20, at_least(1))  # at most this many selection epochs
    batch_size: int = ranged(128, at_least(1))  # rows per step, over all ranks together
    lr: float = ranged(1e-3, above(0))  # peak learning rate
    weight_decay: float = ranged(0.0, at_least(0))  # AdamW: matrices of the network, not embeddings or biases
    warmup_epochs: float = ranged(0.5, at_least(0))  # linear warm-up before the cosine decay
    clip: float = ranged(5.0, at_least(0))  # gradient 2-norm limit (0: no clipping)
    patience: int = ranged(3, at_least(1))  # epochs without a better selection metric before stopping
    seed: int = ranged(0, at_least(0))  # seeds the weights, dropout, sampling and shuffles
    # adamw | adam | adagradm (Adagrad with momentum, sparse-aware)
    optimizer: str = ranged("adamw", one_of("adamw", "adam", "adagradm"))
    momentum: float = ranged(0.0, share())  # adagradm only
    schedule: str = ranged("cosine", one_of("cosine", "constant"))  # cosine (after warm-up) | constant
    refit: bool = True  # retrain on train_full for the selected epochs (False: keep the selected weights)
    ema: float = ranged(0.0, share())  # > 0: evaluate and keep a moving average of the weights (decay per step)
    select_metric: str = SELECTION_METRIC  # the valid metric that picks the epoch (early stopping)
    # a session-kNN model to fuse the network with (seqrec.models.fused; its share chosen on valid), "" for none
    fuse: str = ranged("", one_of("", *FUSIBLE))

    def __post_init__(self) -> None:
        check_ranges("TrainConfig", self)
        if not self.select_metric.startswith("val_"):
            raise RangeError("TrainConfig", f"select_metric={self.select_metric!r} must be a validation metric "
                                            f"(val_..., e.g. {SELECTION_METRIC})")


@dataclass
class RuntimeConfig:
    """Where and how a run computes and reports; not part of its identity, so not of ``run_key``."""

    device: str = "auto"  # auto | cpu | cuda
    eval_batch_size: int = ranged(512, at_least(1))  # prefixes per evaluation batch (and validation-loss batch)
    progress: bool = True  # tqdm progress bars
    threads: int = ranged(0, at_least(0))  # torch CPU threads (0: torch's default)
    compile: bool = False  # torch.compile the training step's model (dynamic shapes)
    # end the selection after the epoch that passes this wall time (0: no limit)
    max_seconds: float = ranged(0.0, at_least(0))
    # seeds of a several-seed run trained at once, each in its own process on CPU (0: as many as the cores allow,
    # ``seqrec.workflow.neural.seed_processes``; 1: one after another)
    seed_processes: int = ranged(0, at_least(0))

    def __post_init__(self) -> None:
        check_ranges("RuntimeConfig", self)


def auto_choice(model_name: str, shape: DataShape) -> AutoChoice:
    """What ``preset=auto`` sets for ``model_name`` on data of ``shape``, each field with its reason."""
    return choose(model_name, shape, asdict(registry.model_class(model_name).config_class()), asdict(TrainConfig()))


def preset_values(model_name: str, preset: str, shape: DataShape | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model fields, training fields)`` of a named preset, or of ``auto`` for data of ``shape``; ``auto``
    without a shape (settings checked before the data is read) stands for the model's ``default`` preset."""
    if preset != AUTO:
        return registry.preset(model_name, preset)
    if shape is None:
        return registry.preset(model_name, "default")
    choice = auto_choice(model_name, shape)
    return choice.model_fields, choice.train_fields


def split_overrides(model_name: str, preset: str, overrides: dict[str, Any],
                    shape: DataShape | None = None) -> tuple[Any, TrainConfig, RuntimeConfig]:
    """The model config, ``TrainConfig`` and ``RuntimeConfig`` of a preset with ``overrides`` applied.

    Each override goes to whichever of the three has the field; a field none has, a value of another type than
    its field's, or one outside its field's range (``seqrec.configs``), is refused by name before anything is
    built. ``shape``: the dataset's, for ``preset=auto``.
    """
    model_over, train_over = preset_values(model_name, preset, shape)
    train_fields = {f.name for f in fields(TrainConfig)}
    runtime_fields = {f.name for f in fields(RuntimeConfig)}
    model_values = {**model_over, **{k: v for k, v in overrides.items() if k not in train_fields | runtime_fields}}
    train_values = {**train_over, **{k: v for k, v in overrides.items() if k in train_fields}}
    runtime_values = {k: v for k, v in overrides.items() if k in runtime_fields}
    check_types("TrainConfig", TrainConfig, train_values)
    check_types("RuntimeConfig", RuntimeConfig, runtime_values)
    model_cfg = registry.make_config(model_name, model_values, also=(TrainConfig, RuntimeConfig))
    return model_cfg, TrainConfig(**train_values), RuntimeConfig(**runtime_values)
