"""The neural models by name: class, config type and presets (model overrides, training overrides)."""

from __future__ import annotations

from dataclasses import dataclass

from seqrec.models.sasrec import SASRec, SASRecConfig


@dataclass(frozen=True)
class ModelSpec:
    model_type: type
    config_type: type
    presets: dict[str, tuple[dict, dict]]


SASREC_PRESETS = {
    "tiny": ({"hidden": 16, "blocks": 1, "heads": 1, "dropout": 0.1, "emb_dropout": 0.1},
             {"epochs": 2, "batch_size": 64, "patience": 1, "warmup_epochs": 0.0}),
    "sample": ({"hidden": 64, "blocks": 2, "heads": 2, "dropout": 0.3, "emb_dropout": 0.3},
               {"epochs": 40, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.1, "patience": 5}),
    "default": ({"hidden": 128, "blocks": 2, "heads": 2, "dropout": 0.2, "emb_dropout": 0.2},
                {"epochs": 20, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.05, "patience": 3}),
}

MODELS: dict[str, ModelSpec] = {
    "sasrec": ModelSpec(SASRec, SASRecConfig, SASREC_PRESETS),
}
