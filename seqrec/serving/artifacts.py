"""A recommender saved as plain files: weights as tensors or arrays plus a small JSON config.

The directory holds ``recommender.json`` (which model, its config, the catalogue size and
``max_len``), ``weights.pt`` (a neural model's ``state_dict``, read with ``weights_only=True``) or
``state.npz`` (a baseline's arrays, read without pickle) or both (a network fused with a session-kNN
model, ``seqrec.models.fused``: the config also names the kNN model, its config and its share),
``raw_ids.npy`` (dense id -> raw item id) and ``popularity.npy``. Loading rebuilds the model from its
class and config, so a saved model never depends on how a Python object was pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec.models.fused import Fused
from seqrec.serving.recommender import Recommender, ServedModel

FORMAT = 1
CONFIG_FILE = "recommender.json"


def save_recommender(recommender: ServedModel, directory: str | Path) -> Path:
    """Write ``recommender`` to ``directory`` (created); returns the directory. A basket predictor is written
    by :func:`seqrec.serving.basket.save_basket`."""
    from seqrec.serving.basket import BasketPredictor, save_basket

    if isinstance(recommender, BasketPredictor):
        return save_basket(recommender, directory)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scorer, fusion = recommender.scorer, {}
    if isinstance(scorer, Fused):
        fusion = {"fused_with": scorer.knn.name, "knn_config": asdict(scorer.knn.config), "weight": scorer.weight}
        knn_state: dict[str, Any] = scorer.knn.state_dict()  # arrays, saved as the baselines' are
        np.savez(directory / "state.npz", **knn_state)
        scorer = scorer.network
    if isinstance(scorer, torch.nn.Module):
        kind, name = "fused" if fusion else "neural", scorer.model_type
        torch.save({k: v.detach().cpu() for k, v in scorer.state_dict().items()}, directory / "weights.pt")
    else:
        kind, name = "baseline", scorer.name
        np.savez(directory / "state.npz", **scorer.state_dict())
    config = {"format": FORMAT, "kind": kind, "model": name, "config": asdict(scorer.config), **fusion,
              "n_items": recommender.n_items, "max_len": recommender.max_len}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    np.save(directory / "raw_ids.npy", np.asarray([str(x) for x in recommender.raw_ids], dtype=np.str_))
    np.save(directory / "popularity.npy", np.asarray(recommender.popularity, dtype=np.float32))
    return directory


def _build_scorer(config: dict, directory: Path):
    from seqrec.models.baselines import make_baseline

    if config["kind"] in ("neural", "fused"):
        from seqrec.models.registry import build_model

        model = build_model(config["model"], config["n_items"], config["config"])
        model.load_state_dict(torch.load(directory / "weights.pt", map_location="cpu", weights_only=True))
        if config["kind"] == "neural":
            return model.eval()
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            knn = make_baseline(config["fused_with"], **config["knn_config"]).load_state_dict(dict(state))
        return Fused(model, knn, config["weight"]).eval()
    with np.load(directory / "state.npz", allow_pickle=False) as state:
        return make_baseline(config["model"], **config["config"]).load_state_dict(dict(state))


def load_recommender(directory: str | Path) -> ServedModel:
    """Rebuild the recommender (or basket predictor) that :func:`save_recommender` wrote to ``directory``."""
    from seqrec.serving.basket import is_basket, load_basket

    directory = Path(directory)
    if is_basket(directory):
        return load_basket(directory)
    config_file = directory / CONFIG_FILE
    if not config_file.exists():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; not a saved seqrec recommender")
    config = json.loads(config_file.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_file}: format {config.get('format')!r} is not supported (expected {FORMAT})")
    raw_ids = np.load(directory / "raw_ids.npy", allow_pickle=False).astype(object)
    raw_ids[0] = ""
    popularity = np.load(directory / "popularity.npy", allow_pickle=False)
    return Recommender(_build_scorer(config, directory), raw_ids, popularity, int(config["max_len"]))
