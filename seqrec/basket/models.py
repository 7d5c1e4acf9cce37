"""Basket models on arrays: baselines and gradient-boosted trees. Each answers, for the sessions of a
:class:`~seqrec.basket.features.Features`, a buy score per session and a bought score per candidate.

* ``clicked``: every session buys every item it clicked (constant scores);
* ``count``: clicked items ranked by clicks, then recency; the longer the session, the likelier a buy;
* ``buypop``: clicked items ranked by their training buy rate; a session buys with the noisy-or of its
  items' buy rates;
* ``gbdt``: scikit-learn ``HistGradientBoostingClassifier`` on the session features (does the session buy)
  and on the session-item features of buying sessions (is this clicked item bought, given a buy); saved in the
  skops format (JSON and ``.npy`` arrays, loaded with an explicit list of trusted types, no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqrec.basket.features import PAIR_FEATURES, SESSION_FEATURES, Features
from seqrec.basket.metrics import BasketPredictions
from seqrec.configs import above, at_least, check_ranges, ranged

if TYPE_CHECKING:  # imported when a model is built: scikit-learn is slow to import
    from sklearn.ensemble import HistGradientBoostingClassifier

_P = {name: i for i, name in enumerate(PAIR_FEATURES)}
_S = {name: i for i, name in enumerate(SESSION_FEATURES)}


def _predictions(features: Features, buy: np.ndarray, score: np.ndarray) -> BasketPredictions:
    c = features.candidates
    return BasketPredictions(np.asarray(buy, dtype=np.float64), c.session, c.item, np.asarray(score, np.float64))


@dataclass
class NoConfig:
    """The baselines have no parameters."""


class ClickedBaseline:
    name = "clicked"

    def __init__(self) -> None:
        self.config = NoConfig()

    def fit(self, train: Features) -> ClickedBaseline:
        return self

    def predict(self, features: Features) -> BasketPredictions:
        return _predictions(features, np.ones(features.n_sessions), np.ones(len(features.pair)))

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> ClickedBaseline:
        return self


class CountBaseline(ClickedBaseline):
    name = "count"

    def predict(self, features: Features) -> BasketPredictions:
        pair = features.pair
        score = pair[:, _P["count"]] + 0.5 / (1.0 + pair[:, _P["from_end"]])  # recency breaks count ties
        return _predictions(features, features.session[:, _S["length"]], score)


class BuyPopBaseline(ClickedBaseline):
    name = "buypop"

    def predict(self, features: Features) -> BasketPredictions:
        rate = features.pair[:, _P["buy_rate"]].astype(np.float64)
        c = features.candidates
        log_none = np.bincount(c.session, weights=np.log1p(-np.clip(rate, 0, 1 - 1e-9)), minlength=features.n_sessions)
        score = rate + 1e-6 * features.pair[:, _P["log_clicks"]]
        return _predictions(features, 1.0 - np.exp(log_none), score)


@dataclass
class GBDTConfig:
    """Settings of both classifiers (scikit-learn ``HistGradientBoostingClassifier``)."""

    max_iter: int = ranged(150, at_least(1))  # boosting rounds
    learning_rate: float = ranged(0.04, above(0))
    max_leaf_nodes: int = ranged(15, at_least(2))
    min_samples_leaf: int = ranged(100, at_least(1))
    l2_regularization: float = ranged(1.0, at_least(0))
    early_stopping: bool = False  # True: stop on a 10 % hold-out of the training rows
    seed: int = ranged(0, at_least(0))
    # OpenMP threads of fitting and scoring (0: all cores; on a shared machine 1 is fastest)
    threads: int = ranged(1, at_least(0))
    extra: dict = field(default_factory=dict)  # any other HistGradientBoostingClassifier argument

    def __post_init__(self) -> None:
        check_ranges("gbdt", self)


class GBDTBasket:
    """Two gradient-boosted tree classifiers: session buys, and clicked item bought given a buy."""

    name = "gbdt"

    def __init__(self, config: GBDTConfig | None = None) -> None:
        self.config = config or GBDTConfig()
        self.buy_model: HistGradientBoostingClassifier | None = None
        # a float: the constant probability when the training pairs had one class only
        self.item_model: HistGradientBoostingClassifier | float | None = None

    def _classifier(self, categorical: list[int]):
        from sklearn.ensemble import HistGradientBoostingClassifier

        c = self.config
        return HistGradientBoostingClassifier(
            max_iter=c.max_iter, learning_rate=c.learning_rate, max_leaf_nodes=c.max_leaf_nodes,
            min_samples_leaf=c.min_samples_leaf, l2_regularization=c.l2_regularization,
            early_stopping=c.early_stopping, random_state=c.seed, categorical_features=categorical or None,
            **c.extra)

    @staticmethod
    def pair_matrix(features: Features) -> np.ndarray:
        """Candidate features next to those of their session."""
        return np.hstack([features.pair, features.session[features.candidates.session]])

    def _threads(self):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.config.threads or None, user_api="openmp")

    def fit(self, train: Features) -> GBDTBasket:
        with self._threads():
            return self._fit(train)

    def _fit(self, train: Features) -> GBDTBasket:
        if train.label_buy is None or train.label_pair is None or not train.label_buy.any() or train.label_buy.all():
            raise ValueError("gbdt: the training split needs both buying and non-buying sessions")
        self.buy_model = self._classifier([]).fit(train.session, train.label_buy)
        buyers = train.label_buy[train.candidates.session]
        pairs, labels = self.pair_matrix(train)[buyers], train.label_pair[buyers]
        if labels.all() or not labels.any():  # one class: a constant model
            self.item_model = float(labels.mean())
        else:
            self.item_model = self._classifier([_P["category_kind"]]).fit(pairs, labels)
        return self

    def predict(self, features: Features) -> BasketPredictions:
        with self._threads():
            return self._predict(features)

    def _predict(self, features: Features) -> BasketPredictions:
        if self.buy_model is None or self.item_model is None:
            raise ValueError("gbdt: fit the model before predicting")
        buy = self.buy_model.predict_proba(features.session)[:, 1] if features.n_sessions else np.zeros(0)
        if isinstance(self.item_model, float):
            score = np.full(len(features.pair), self.item_model)
        elif len(features.pair):
            score = self.item_model.predict_proba(self.pair_matrix(features))[:, 1]
        else:
            score = np.zeros(0)
        return _predictions(features, buy, score)

    @property
    def n_parameters(self) -> int:
        """Tree nodes of both classifiers."""
        models = [m for m in (self.buy_model, self.item_model) if m is not None and not isinstance(m, float)]
        return int(sum(len(p.nodes) for m in models for per_iter in m._predictors for p in per_iter))

    def save(self, path: str | Path) -> Path:
        """Write the fitted classifiers to ``path`` in the skops format; fails if reading them back would need a
        type outside :data:`GBDT_TRUSTED_TYPES` (a scikit-learn version that builds other objects)."""
        import zipfile

        import skops.io

        if self.buy_model is None:
            raise ValueError("gbdt: fit the model before saving it")
        path = Path(path)
        skops.io.dump({"buy": self.buy_model, "item": self.item_model}, path, compression=zipfile.ZIP_DEFLATED)
        if unknown := sorted(set(skops.io.get_untrusted_types(file=path)) - set(GBDT_TRUSTED_TYPES)):
            path.unlink()
            raise ValueError(f"gbdt: saving needs types that loading does not trust: {unknown}")
        return path

    @classmethod
    def load(cls, path: str | Path, config: GBDTConfig | None = None) -> GBDTBasket:
        """The model that :meth:`save` wrote to ``path``; only :data:`GBDT_TRUSTED_TYPES` (beyond the types
        skops trusts by default) may be built, no pickle is read."""
        import skops.io

        loaded = skops.io.load(Path(path), trusted=list(GBDT_TRUSTED_TYPES))
        model = cls(config)
        model.buy_model, model.item_model = loaded["buy"], loaded["item"]
        return model


# the types of a fitted HistGradientBoostingClassifier that skops does not trust by default: its trees, and the
# input check of its categorical-feature preprocessing (a partial of scikit-learn's check_array)
GBDT_TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
    "functools.partial",
)

BASELINES = {m.name: m for m in (ClickedBaseline, CountBaseline, BuyPopBaseline)}
