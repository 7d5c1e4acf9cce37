"""Named settings of every neural model, as plain data: ``PRESETS[model][preset] = {"model": ..., "train": ...}``.

``model`` overrides fields of the model's config class, ``train`` fields of ``seqrec.train_config.TrainConfig``.
Every model has ``tiny`` (seconds, for tests) and ``default`` (YooChoose-size data); ``sample`` is tuned
on the real YooChoose sample's valid split (see the README); GRU4Rec adds ``small``, ``medium`` and
``large``. ``auto`` (``seqrec.models.auto_preset``) starts from one of these, chosen and resized from the
dataset's statistics. ``PRESET_FOR`` names the preset that ``train`` and ``main`` use for each model. Presets written by
``tune -P write_preset=NAME`` (a study's best setting) are kept as data in ``tuned_presets.json`` beside this
file and join these; they never replace a preset defined here.
"""

from __future__ import annotations

import json
from pathlib import Path

_TINY_TRANSFORMER = {"hidden": 16, "layers": 1, "heads": 1, "dropout": 0.1, "emb_dropout": 0.1}
_TINY_TRAIN = {"epochs": 2, "batch_size": 64, "patience": 1, "warmup_epochs": 0.0}
_TRANSFORMER = {"hidden": 128, "layers": 2, "heads": 2, "dropout": 0.2, "emb_dropout": 0.2}
# a cosine schedule short enough to anneal within what main's time budget affords on two CPU cores (about
# 12 epochs of the built-in data), with a rate high enough to converge in it
_TRANSFORMER_TRAIN = {"epochs": 12, "batch_size": 256, "lr": 3e-3, "weight_decay": 0.05, "patience": 3}
_SAMPLE_TRAIN = {"epochs": 80, "batch_size": 2048, "lr": 2e-3, "weight_decay": 0.1, "patience": 8}

# GRU4Rec trains like the official implementation: Adagrad (sparse rows), constant rate, no clipping.
_GRU_TRAIN = {"optimizer": "adagradm", "schedule": "constant", "warmup_epochs": 0.0, "clip": 0.0, "lr": 0.07,
              "batch_size": 48, "epochs": 10, "patience": 3}
_GRU_OFFICIAL = {"constrained_embedding": True, "hidden": 480, "dropout": 0.2, "n_negatives": 2048,
                 "sample_alpha": 0.2, "logq": 1.0, "loss": "sampled"}

PRESETS: dict[str, dict[str, dict[str, dict]]] = {
    "sasrec": {
        "tiny": {"model": _TINY_TRANSFORMER, "train": _TINY_TRAIN},
        # one row per prefix, wide, heavily regularised, cosine scores, a learned bonus for repeated items
        "sample": {"model": {"hidden": 256, "layers": 2, "heads": 4, "dropout": 0.6, "emb_dropout": 0.6,
                             "label_smoothing": 0.2, "normalize": True, "logit_scale": 12.0, "train_on": "prefixes",
                             "repeat_bonus": True},
                   "train": _SAMPLE_TRAIN},
        "default": {"model": _TRANSFORMER, "train": _TRANSFORMER_TRAIN},
    },
    "bert4rec": {
        "tiny": {"model": _TINY_TRANSFORMER, "train": _TINY_TRAIN},
        "sample": {"model": {"hidden": 256, "layers": 2, "heads": 2, "dropout": 0.6, "emb_dropout": 0.6,
                             "label_smoothing": 0.1, "mask_ratio": 0.2, "train_on": "prefixes"},
                   "train": {**_SAMPLE_TRAIN, "batch_size": 1024, "epochs": 60}},
        "default": {"model": {**_TRANSFORMER, "mask_ratio": 0.2}, "train": _TRANSFORMER_TRAIN},
    },
    "gru4rec": {
        "tiny": {"model": {"hidden": 16, "n_negatives": 32},
                 "train": {**_GRU_TRAIN, "epochs": 2, "batch_size": 16, "patience": 1}},
        # the official settings with 100 units and batch 32
        "sample": {"model": {**_GRU_OFFICIAL, "hidden": 100}, "train": {**_GRU_TRAIN, "batch_size": 32}},
        "default": {"model": _GRU_OFFICIAL, "train": _GRU_TRAIN},
        "small": {"model": {**_GRU_OFFICIAL, "constrained_embedding": False, "embedding": 128, "hidden": 256},
                  "train": _GRU_TRAIN},
        "medium": {"model": {**_GRU_OFFICIAL, "constrained_embedding": False, "embedding": 256, "hidden": 256},
                   "train": _GRU_TRAIN},
        "large": {"model": {**_GRU_OFFICIAL, "constrained_embedding": False, "embedding": 256, "hidden": 512},
                  "train": _GRU_TRAIN},
    },
    "meanemb": {
        "tiny": {"model": {"hidden": 16}, "train": {**_TINY_TRAIN, "lr": 1e-2}},
        "default": {"model": {"hidden": 128}, "train": {"epochs": 20, "batch_size": 256, "patience": 3}},
    },
}

# The preset each role picks, by model: ``train``, what the ``train`` entry point (and ``train_<model>``) trains
# when no preset is named (``default`` for a model not listed here); ``main``, what the ``main`` workflow compares
# the model with. ``main`` trains the models that have one, in this order, and leaves the others out of its
# ``models=all`` (``main -P models=NAME`` trains any of them with its ``train`` preset).
PRESET_FOR: dict[str, dict[str, str]] = {
    "gru4rec": {"train": "auto", "main": "auto"},
    "sasrec": {"train": "auto", "main": "auto"},
    "bert4rec": {"train": "auto", "main": "auto"},
    "meanemb": {"train": "auto"},  # the example of how a model plugs in: not in main's comparison
}

TUNED_FILE = Path(__file__).with_name("tuned_presets.json")
if TUNED_FILE.exists():
    for _model, _tuned in json.loads(TUNED_FILE.read_text()).items():
        PRESETS.setdefault(_model, {}).update({k: v for k, v in _tuned.items() if k not in PRESETS.get(_model, {})})
