"""The neural models by name: class, config type and presets (model overrides, training overrides)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from seqrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from seqrec.models.sasrec import BERT4Rec, BERT4RecConfig, SASRec, SASRecConfig
from seqrec.training import TrainConfig


@dataclass(frozen=True)
class ModelSpec:
    model_type: type
    config_type: type
    presets: dict[str, tuple[dict, dict]]


SASREC_PRESETS = {
    "tiny": ({"hidden": 16, "blocks": 1, "heads": 1, "dropout": 0.1, "emb_dropout": 0.1},
             {"epochs": 2, "batch_size": 64, "patience": 1, "warmup_epochs": 0.0}),
    # tuned on the real sample's valid split (see the README): one row per prefix, wide, heavily
    # regularised, cosine scores
    "sample": ({"hidden": 256, "blocks": 2, "heads": 4, "dropout": 0.6, "emb_dropout": 0.6, "label_smoothing": 0.2,
                "normalize": True, "logit_scale": 12.0, "train_on": "prefixes"},
               {"epochs": 80, "batch_size": 2048, "lr": 2e-3, "weight_decay": 0.1, "patience": 8}),
    "default": ({"hidden": 128, "blocks": 2, "heads": 2, "dropout": 0.2, "emb_dropout": 0.2},
                {"epochs": 20, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.05, "patience": 3}),
}

# GRU4Rec trains like the official implementation: Adagrad (sparse rows), constant rate, no clipping.
_GRU_TRAIN = {"optimizer": "adagradm", "schedule": "constant", "warmup_epochs": 0.0, "clip": 0.0, "lr": 0.07,
              "batch_size": 48, "epochs": 10, "patience": 3}
_GRU_OFFICIAL = {"constrained_embedding": True, "hidden": 480, "dropout_hidden": 0.2, "n_sample": 2048,
                 "sample_alpha": 0.2, "logq": 1.0, "loss": "ce"}
GRU4REC_PRESETS = {
    "tiny": ({"hidden": 16, "n_sample": 32}, {**_GRU_TRAIN, "epochs": 2, "batch_size": 16, "patience": 1}),
    # tuned on the real sample's valid split: the official settings with 100 units and batch 32
    "sample": ({**_GRU_OFFICIAL, "hidden": 100}, {**_GRU_TRAIN, "batch_size": 32}),
    "default": (_GRU_OFFICIAL, _GRU_TRAIN),
    "small": ({**_GRU_OFFICIAL, "constrained_embedding": False, "embedding": 128, "hidden": 256}, _GRU_TRAIN),
    "medium": ({**_GRU_OFFICIAL, "constrained_embedding": False, "embedding": 256, "hidden": 256}, _GRU_TRAIN),
    "large": ({**_GRU_OFFICIAL, "constrained_embedding": False, "embedding": 256, "hidden": 512}, _GRU_TRAIN),
}

BERT4REC_PRESETS = {
    "tiny": SASREC_PRESETS["tiny"],
    "sample": ({"hidden": 256, "blocks": 2, "heads": 2, "dropout": 0.6, "emb_dropout": 0.6, "label_smoothing": 0.1,
                "mask_ratio": 0.2, "train_on": "prefixes"},
               {**SASREC_PRESETS["sample"][1], "batch_size": 1024, "epochs": 60}),
    "default": ({**SASREC_PRESETS["default"][0], "mask_ratio": 0.2}, SASREC_PRESETS["default"][1]),
}

MODELS: dict[str, ModelSpec] = {
    "sasrec": ModelSpec(SASRec, SASRecConfig, SASREC_PRESETS),
    "bert4rec": ModelSpec(BERT4Rec, BERT4RecConfig, BERT4REC_PRESETS),
    "gru4rec": ModelSpec(GRU4Rec, GRU4RecConfig, GRU4REC_PRESETS),
}


def split_overrides(model_name: str, preset: str, overrides: dict) -> tuple[object, TrainConfig]:
    """Model config and train config for a preset, with ``overrides`` applied to whichever has the field."""
    spec = MODELS[model_name]
    if preset not in spec.presets:
        raise ValueError(f"unknown preset {preset!r} for {model_name}, expected one of {sorted(spec.presets)}")
    model_over, train_over = spec.presets[preset]
    model_cfg = replace(spec.config_type(), **model_over)
    train_cfg = replace(TrainConfig(), **train_over)
    model_fields = {f.name for f in fields(model_cfg)}
    train_fields = {f.name for f in fields(train_cfg)}
    unknown = set(overrides) - model_fields - train_fields
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {model_name}; "
                         f"expected fields of {type(model_cfg).__name__} or TrainConfig")
    model_cfg = replace(model_cfg, **{k: v for k, v in overrides.items() if k in model_fields})
    train_cfg = replace(train_cfg, **{k: v for k, v in overrides.items() if k in train_fields})
    return model_cfg, train_cfg
