"""The neural models by name, their presets (``seqrec.models.presets``) and configs built from overrides.

The one list of sequence models: ``train``, ``main``, ``tune`` and the server find them here. Adding a model:
one file under ``seqrec/models/`` with a ``SequenceModel`` subclass that names itself (``model_type``) and may
declare the search space ``tune`` explores (``search_space``, a class attribute: ``{name: "kind:args"}``,
``seqrec.tuning``), and its presets in ``presets.py`` (with, in ``PRESET_FOR``, the preset ``main`` compares it
with, if it is to be part of main's comparison); the registry finds the class by itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields
from typing import Any

import torch

import seqrec.models
from seqrec.configs import check_types, resolve_aliases
from seqrec.models.auto_preset import AUTO
from seqrec.models.base import SequenceModel
from seqrec.models.presets import PRESET_FOR, PRESETS


def _discover() -> dict[str, type[SequenceModel]]:
    """Every ``SequenceModel`` class that sets its own ``model_type`` in a module of ``seqrec.models``."""
    for module in pkgutil.iter_modules(seqrec.models.__path__):
        if not module.ispkg:
            importlib.import_module(f"seqrec.models.{module.name}")
    found, stack = {}, [SequenceModel]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if "model_type" in vars(cls):
            found[cls.model_type] = cls
    return dict(sorted(found.items()))


MODELS: dict[str, type[SequenceModel]] = _discover()


def model_class(name: str) -> type[SequenceModel]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}, expected one of {sorted(MODELS)}")
    return MODELS[name]


def config_fields(name: str) -> set[str]:
    """The field names of model ``name``'s config."""
    return {f.name for f in fields(model_class(name).config_class)}


def preset(name: str, preset_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model overrides, training overrides)`` of a named preset of model ``name`` (``auto`` has none of its
    own: ``seqrec.train_config.preset_values`` sizes it from a dataset)."""
    if preset_name == AUTO:
        raise ValueError(f"preset {AUTO} of {name} is sized from a dataset; name one of "
                         f"{[p for p in preset_names(name) if p != AUTO]}")
    if preset_name not in preset_names(name):
        raise ValueError(f"unknown preset {preset_name!r} for {name}, expected one of {preset_names(name)}")
    return dict(PRESETS[name][preset_name]["model"]), dict(PRESETS[name][preset_name]["train"])


def preset_names(name: str) -> list[str]:
    """The presets of model ``name``, sorted, with ``auto`` (sized from the dataset)."""
    model_class(name)
    return sorted([*PRESETS.get(name, {}), AUTO])


def default_preset(name: str) -> str:
    """The preset model ``name`` trains with when none is named (``train``, ``train_<model>``)."""
    model_class(name)
    return PRESET_FOR.get(name, {}).get("train", AUTO)


def main_models() -> tuple[tuple[str, str], ...]:
    """``(model, preset)`` of each sequence model in ``main``'s comparison, in the order ``main`` trains them."""
    return tuple((name, roles["main"]) for name, roles in PRESET_FOR.items() if "main" in roles and name in MODELS)


def search_space(name: str) -> dict[str, str]:
    """The search space model ``name`` declares for ``tune`` (``{}``: none)."""
    return dict(getattr(model_class(name), "search_space", {}))


def make_config(name: str, values: dict[str, Any], also: tuple[type, ...] = ()) -> Any:
    """Model ``name``'s config with ``values``; a field it does not have, a value of another type than its
    field's, or one out of its range (checked by the config itself, ``seqrec.configs``) is refused by name.

    ``also``: the other config classes the caller accepts fields of, named in the error message. Old names and
    values the config still accepts (``aliases``, ``value_aliases``) are translated first, with a warning.
    """
    values = resolve_aliases(name, model_class(name).config_class, values)
    unknown = set(values) - config_fields(name)
    if unknown:
        expected = ", ".join(c.__name__ for c in (model_class(name).config_class, *also))
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {name}{_elsewhere(name, unknown)}; "
                         f"expected fields of {expected}")
    check_types(name, model_class(name).config_class, values)
    return model_class(name).config_class(**values)


def _elsewhere(name: str, unknown: set[str]) -> str:
    """Which other models have the unknown fields, as a hint (``loss`` for bert4rec: a field of sasrec)."""
    owners = {field: sorted(m for m in MODELS if m != name and field in config_fields(m)) for field in sorted(unknown)}
    hints = [f"{field} is a field of {', '.join(models)}" for field, models in owners.items() if models]
    return f" ({'; '.join(hints)})" if hints else ""


def build_model(name: str, n_items: int, config: Any, popularity: torch.Tensor | None = None) -> SequenceModel:
    """Model ``name`` for ``n_items`` items; ``config`` is its config or a dict of its fields."""
    if isinstance(config, dict):
        config = make_config(name, config)
    return model_class(name)(n_items, config, popularity)
