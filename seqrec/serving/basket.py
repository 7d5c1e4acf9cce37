"""Raw item ids in, buy probability and likely bought items out: the basket predictor behind the pyfunc and
``POST /basket`` (docs/protocol.md, "Recommendation request"), and its files.

A session's known items become features (:mod:`seqrec.basket.features`, with the item statistics of the
training data the model was fitted on) and the model scores the session and its clicked items. The answer
ranks the clicked items by their bought score, then the most bought items of training; ``basket`` is the
decision of the challenge (the items above the item threshold, at least the best one) when the session is
predicted to buy, else empty. The buy probability is the model's buy score calibrated on valid (isotonic).
Unknown items are ignored; an empty or all-unknown session gets the training buying rate and the most
bought items.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from seqrec.basket import features as feats
from seqrec.basket.metrics import Thresholds, candidate_ranks
from seqrec.serving.recommender import MAX_K, Recommendation, RequestError

CONFIG_FILE = "basket.json"
GBDT_FILE = "gbdt.skops"
FORMAT = 1


@dataclass
class BasketAnswer:
    buy_probability: float
    items: list[str]
    scores: list[float]
    basket: list[str]


class BasketPredictor:
    """A fitted basket model (``seqrec.basket.models`` or ``NeuralBasket``) for raw-id sessions."""

    def __init__(self, model, stats: feats.ItemStats, raw_ids: np.ndarray, max_len: int, thresholds: Thresholds,
                 calibration: tuple[np.ndarray, np.ndarray], base_rate: float):
        self.scorer = model
        self.stats = stats
        self.raw_ids = np.asarray(raw_ids, dtype=object)
        self.index = {str(raw): i for i, raw in enumerate(self.raw_ids) if i > 0}
        self.max_len = max_len
        self.thresholds = thresholds
        self.calibration = (np.asarray(calibration[0], float), np.asarray(calibration[1], float))
        self.base_rate = float(base_rate)
        self.fallback = stats.most_bought()

    @property
    def n_items(self) -> int:
        return len(self.raw_ids) - 1

    def probability(self, buy_scores: np.ndarray) -> np.ndarray:
        """Calibrated buy probabilities of raw buy scores."""
        xs, ys = self.calibration
        return np.interp(buy_scores, xs, ys) if len(xs) else np.full(len(buy_scores), self.base_rate)

    def _encode(self, sessions: list[list], times: list[list[float]] | None):
        keep = [[j for j, x in enumerate(s) if str(x) in self.index][-self.max_len:] for s in sessions]
        items = np.array([self.index[str(sessions[i][j])] for i, js in enumerate(keep) for j in js], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([len(js) for js in keep])]).astype(np.int64)
        clicked_times = None
        if times is not None:
            clicked_times = np.array([float(times[i][j]) for i, js in enumerate(keep) for j in js], dtype=np.float64)
        return items, offsets, clicked_times

    @torch.no_grad()
    def predict(self, sessions: list[list], k: int = 20, times: list[list[float]] | None = None) -> list[BasketAnswer]:
        """One answer per session (module docstring); ``times``: unix seconds of each click, when known."""
        if not 1 <= k <= MAX_K:
            raise RequestError(f"k must be between 1 and {MAX_K}, got {k}")
        if times is not None and [len(t) for t in times] != [len(s) for s in sessions]:
            raise RequestError("'times' needs one timestamp per clicked item of each session")
        k = min(k, self.n_items)
        items, offsets, clicked_times = self._encode(sessions, times)
        known = np.flatnonzero(np.diff(offsets) > 0)
        answers = [self._empty(k)] * len(sessions)
        if not known.size:
            return answers
        lengths = np.diff(offsets)[known]
        sub_offsets = np.concatenate([[0], np.cumsum(lengths)])
        features = feats.build(items, sub_offsets, clicked_times, self.stats)
        pred = self.scorer.predict(features)
        probability = self.probability(pred.buy)
        ranks = candidate_ranks(pred)
        order = np.lexsort((ranks, pred.session))
        cand_items, cand_scores = pred.item[order], pred.score[order]
        chosen = ((ranks == 1) | (pred.score >= self.thresholds.item))[order]
        starts = features.candidates.start
        for row, s in enumerate(known):
            lo, hi = starts[row], starts[row + 1]
            ids = cand_items[lo:hi]
            head = self.fallback[: k + len(ids)]
            rest = head[~np.isin(head, ids)][: max(0, k - len(ids))]
            top = np.concatenate([ids, rest])[:k]
            scores = np.concatenate([cand_scores[lo:hi], np.zeros(len(rest))])[:k]
            buys = bool(pred.buy[row] >= self.thresholds.buy)
            basket = self.raw_ids[ids[chosen[lo:hi]]].astype(str).tolist() if buys else []
            answers[s] = BasketAnswer(float(probability[row]), self.raw_ids[top].astype(str).tolist(),
                                      [float(x) for x in scores], basket)
        return answers

    def _empty(self, k: int) -> BasketAnswer:
        top = self.fallback[:k]
        return BasketAnswer(self.base_rate, self.raw_ids[top].astype(str).tolist(), [0.0] * len(top), [])

    def predict_each(self, sessions: list[list], ks: list[int]) -> list[BasketAnswer]:
        """:meth:`predict` with one ``k`` per session (one batch when they are all equal)."""
        if len(ks) != len(sessions):
            raise RequestError(f"k must be an integer or a list of {len(sessions)} integers, one per session")
        if len(set(ks)) <= 1:
            return self.predict(sessions, int(ks[0])) if ks else []
        return [self.predict([s], int(k))[0] for s, k in zip(sessions, ks, strict=True)]

    def recommend(self, sessions: list[list], k: int | list[int] = 20) -> list[Recommendation]:
        """The items likely to be bought, as next-item recommendations (what ``/recommend`` answers)."""
        ks = [k] * len(sessions) if isinstance(k, int | np.integer) else list(k)
        return [Recommendation(a.items, a.scores) for a in self.predict_each(sessions, ks)]


def save_basket(predictor: BasketPredictor, directory: str | Path) -> Path:
    """Write ``predictor`` as files that load without unpickling arbitrary objects: ``basket.json``, the model's
    weights (``weights.pt``, read back with ``weights_only``), classifiers (``gbdt.skops``, skops with a fixed
    list of trusted types) or arrays (``state.npz``), item statistics and raw ids (numpy arrays, no pickle)."""
    from seqrec.basket.models import GBDTBasket
    from seqrec.basket.train import NeuralBasket

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = predictor.scorer
    config = {"format": FORMAT, "kind": "basket", "model": model.name, "config": asdict(model.config),
              "n_items": predictor.n_items, "max_len": predictor.max_len,
              "thresholds": asdict(predictor.thresholds), "base_rate": predictor.base_rate,
              "calibration": [predictor.calibration[0].tolist(), predictor.calibration[1].tolist()]}
    if isinstance(model, NeuralBasket):
        config["encoder_config"] = model.encoder_config
        config["n_features"] = [len(feats.SESSION_FEATURES), len(feats.PAIR_FEATURES)]
        torch.save({k: v.detach().cpu() for k, v in model.net.state_dict().items()}, directory / "weights.pt")
    elif isinstance(model, GBDTBasket):
        model.save(directory / GBDT_FILE)
    else:
        np.savez(directory / "state.npz", **model.state_dict())
    s = predictor.stats
    np.savez(directory / "item_stats.npz", clicks=s.clicks, clicked_sessions=s.clicked_sessions,
             bought_sessions=s.bought_sessions, bought=s.bought, category=s.category, base_rate=np.array(s.base_rate))
    np.save(directory / "raw_ids.npy", np.asarray([str(x) for x in predictor.raw_ids], dtype=np.str_))
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return directory


def is_basket(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).exists()


def _build_model(config: dict, directory: Path):
    from seqrec.basket.models import BASELINES, GBDTBasket, GBDTConfig

    name = config["model"]
    if name in BASELINES:
        return BASELINES[name]()
    if name == "gbdt":
        if not (directory / GBDT_FILE).exists():
            raise ValueError(f"{directory}: a gbdt basket model needs {GBDT_FILE} (one saved with its classifiers "
                             "pickled in state.npz is no longer read: train it again)")
        return GBDTBasket.load(directory / GBDT_FILE, GBDTConfig(**config["config"]))
    from seqrec.basket.neural import BasketNet, BasketNetConfig
    from seqrec.basket.train import NeuralBasket
    from seqrec.models.registry import build_model

    encoder = build_model(name, config["n_items"], config["encoder_config"])
    n_session_features, n_pair_features = config["n_features"]
    net = BasketNet(encoder, n_session_features, n_pair_features, BasketNetConfig(**config["config"]))
    net.load_state_dict(torch.load(directory / "weights.pt", map_location="cpu", weights_only=True))
    return NeuralBasket(net.eval(), config["encoder_config"])


def load_basket(directory: str | Path) -> BasketPredictor:
    """Rebuild the predictor that :func:`save_basket` wrote to ``directory``."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE}: format {config.get('format')!r} is not supported "
                         f"(expected {FORMAT})")
    with np.load(directory / "item_stats.npz", allow_pickle=False) as z:
        stats = feats.ItemStats(z["clicks"], z["clicked_sessions"], z["bought_sessions"], z["bought"], z["category"],
                                float(z["base_rate"]))
    raw_ids = np.load(directory / "raw_ids.npy", allow_pickle=False).astype(object)
    raw_ids[0] = ""
    return BasketPredictor(_build_model(config, directory), stats, raw_ids, int(config["max_len"]),
                           Thresholds(**config["thresholds"]), tuple(config["calibration"]), config["base_rate"])
