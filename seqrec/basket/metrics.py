"""Metrics of next-basket prediction: the RecSys Challenge 2015 score, buy AUC and F1, basket ranking.

Predictions of a split are arrays: one buy score per session and one score per candidate (session,
item) pair (:class:`BasketPredictions`). The challenge score of a set of sessions predicted to buy is

    score = sum over predicted s that bought:  |S_b| / |S| + Jaccard(predicted items of s, bought items of s)
          - sum over predicted s that did not:  |S_b| / |S|

(S: all sessions of the split, S_b: those that bought); its maximum, reached by the perfect prediction,
is |S_b| * (|S_b| / |S| + 1), and ``challenge_score`` reports the score divided by it (1 = perfect,
0 = predicting no buys, negative = worse than that). Bought items outside the training vocabulary count
in the bought set (they lower the Jaccard index), as they would in the challenge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from seqrec.data.buys import BasketLabels

KS = (10, 20)


@dataclass
class BasketPredictions:
    """A model's predictions for the sessions of one split."""

    buy: np.ndarray  # [S] buy score of each session (greater = more likely to buy)
    session: np.ndarray  # [P] session index of each candidate, non-decreasing
    item: np.ndarray  # [P] dense item id of each candidate (the session's clicked items)
    score: np.ndarray  # [P] score of each candidate being bought

    @property
    def n_sessions(self) -> int:
        return len(self.buy)


def candidate_ranks(pred: BasketPredictions) -> np.ndarray:
    """1-based rank of each candidate in its session, best score first (ties: lower item id first)."""
    order = np.lexsort((pred.item, -pred.score, pred.session))
    starts = np.searchsorted(pred.session[order], pred.session[order], side="left")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order)) - starts + 1
    return ranks


def predicted_baskets(pred: BasketPredictions, item_threshold: float) -> np.ndarray:
    """Mask over candidates: the best candidate of each session, plus every other whose score is at least
    ``item_threshold``."""
    return (candidate_ranks(pred) == 1) | (pred.score >= item_threshold)


def jaccard(pred: BasketPredictions, chosen: np.ndarray, labels: BasketLabels, n_items: int) -> np.ndarray:
    """Jaccard index ``[S]`` of each session's chosen candidates and its bought items (0 when both empty)."""
    n = pred.n_sessions
    key_pred = pred.session[chosen].astype(np.int64) * (n_items + 1) + pred.item[chosen]
    known = labels.item > 0
    key_bought = labels.session[known] * (n_items + 1) + labels.item[known]
    both = np.isin(key_pred, key_bought)
    inter = np.bincount(pred.session[chosen][both], minlength=n)
    union = np.bincount(pred.session[chosen], minlength=n) + labels.basket_sizes(n) - inter
    return np.divide(inter, union, out=np.zeros(n), where=union > 0)


def challenge_score(buy_pred: np.ndarray, jac: np.ndarray, bought: np.ndarray) -> float:
    """The normalised challenge score (module docstring) of sessions predicted to buy (``buy_pred``),
    given each session's Jaccard index ``jac`` and whether it ``bought``."""
    n, n_b = len(bought), int(bought.sum())
    if n_b == 0:
        return 0.0
    share = n_b / n
    score = (share + jac[buy_pred & bought]).sum() - share * (buy_pred & ~bought).sum()
    return float(score / (n_b * (share + 1.0)))


def buy_auc(buy: np.ndarray, bought: np.ndarray) -> float:
    """Session-level ROC AUC of the buy scores (0.5 when the split has one class only)."""
    if bought.all() or not bought.any():
        return 0.5
    return float(roc_auc_score(bought, buy))


def f1(buy_pred: np.ndarray, bought: np.ndarray) -> float:
    tp = int((buy_pred & bought).sum())
    denominator = int(buy_pred.sum()) + int(bought.sum())
    return 2.0 * tp / denominator if denominator else 0.0


def _grid(values: np.ndarray, size: int = 200) -> np.ndarray:
    """Candidate thresholds: quantiles of ``values`` plus one above the maximum (nothing passes)."""
    if len(values) == 0:
        return np.array([np.inf])
    qs = np.unique(np.quantile(values, np.linspace(0.0, 1.0, size)))
    return np.concatenate([qs, [np.inf]])


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds chosen on valid: the candidate score for a second item and beyond, the buy score
    maximising the challenge score, and the buy score maximising F1."""

    item: float
    buy: float
    buy_f1: float


def choose_thresholds(pred: BasketPredictions, labels: BasketLabels, n_items: int) -> Thresholds:
    """Thresholds maximising, on this (validation) split, the mean Jaccard of the buying sessions (item),
    the challenge score (buy) and the session-level F1 (buy_f1)."""
    bought = labels.buying(pred.n_sessions)
    best_item, best_jac = np.inf, -1.0
    in_buyers = bought[pred.session]
    for t in _grid(pred.score[in_buyers], 50):
        mean_jac = jaccard(pred, predicted_baskets(pred, t), labels, n_items)[bought].mean() if bought.any() else 0
        if mean_jac > best_jac:
            best_item, best_jac = float(t), float(mean_jac)
    jac = jaccard(pred, predicted_baskets(pred, best_item), labels, n_items)
    grid = _grid(pred.buy)
    scores = [challenge_score(pred.buy >= t, jac, bought) for t in grid]
    f1s = [f1(pred.buy >= t, bought) for t in grid]
    return Thresholds(best_item, float(grid[int(np.argmax(scores))]), float(grid[int(np.argmax(f1s))]))


def ranking_metrics(pred: BasketPredictions, labels: BasketLabels, fallback: np.ndarray,
                    ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@K and NDCG@K of the bought known items of each buying session among its ranked candidates
    (clicked items by score), followed by every other item in ``fallback`` order (``fallback[i]``: global
    rank of dense id i, 1-based; index 0 unused). Averaged over sessions with a known bought item."""
    n_items = len(fallback) - 1
    known = labels.item > 0
    sess, item = labels.session[known], labels.item[known].astype(np.int64)
    cand_key = pred.session.astype(np.int64) * (n_items + 1) + pred.item
    order = np.argsort(cand_key)
    key = sess * (n_items + 1) + item
    pos = np.clip(np.searchsorted(cand_key[order], key), 0, max(len(order) - 1, 0))
    is_cand = (cand_key[order][pos] == key) if len(order) else np.zeros(len(key), dtype=bool)
    ranks = np.empty(len(key), dtype=np.int64)
    ranks[is_cand] = candidate_ranks(pred)[order[pos[is_cand]]]
    # not a candidate: after the session's candidates, by global rank among the non-candidates
    n_cand = np.bincount(pred.session, minlength=pred.n_sessions)
    glob_key = pred.session.astype(np.int64) * (n_items + 2) + fallback[pred.item]
    glob_sorted = np.sort(glob_key)
    other = ~is_cand
    query = sess[other] * (n_items + 2) + fallback[item[other]]
    lower = np.searchsorted(glob_sorted, query) - np.searchsorted(glob_sorted, sess[other] * (n_items + 2))
    ranks[other] = n_cand[sess[other]] + fallback[item[other]] - lower
    evaluated = np.unique(sess)
    size = np.bincount(sess, minlength=pred.n_sessions)[evaluated]
    out = {}
    for k in ks:
        hit = ranks <= k
        hits = np.bincount(sess[hit], minlength=pred.n_sessions)[evaluated]
        gain = np.bincount(sess[hit], weights=1.0 / np.log2(ranks[hit] + 1.0), minlength=pred.n_sessions)[evaluated]
        ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(size, k) - 1]
        out[f"basket_recall_at_{k}"] = float((hits / size).mean()) if len(evaluated) else 0.0
        out[f"basket_ndcg_at_{k}"] = float((gain / ideal).mean()) if len(evaluated) else 0.0
    return out


def evaluate_baskets(pred: BasketPredictions, labels: BasketLabels, thresholds: Thresholds,
                     fallback: np.ndarray) -> dict[str, float]:
    """Every basket metric of ``pred`` on one split with thresholds chosen elsewhere (on valid)."""
    n_items = len(fallback) - 1
    bought = labels.buying(pred.n_sessions)
    jac = jaccard(pred, predicted_baskets(pred, thresholds.item), labels, n_items)
    predicted = pred.buy >= thresholds.buy
    return {
        "buy_auc": buy_auc(pred.buy, bought),
        "buy_f1": f1(pred.buy >= thresholds.buy_f1, bought),
        "challenge_score": challenge_score(predicted, jac, bought),
        "buy_precision": float(bought[predicted].mean()) if predicted.any() else 0.0,
        "buy_recall": float(predicted[bought].mean()) if bought.any() else 0.0,
        "jaccard_of_buyers": float(jac[bought].mean()) if bought.any() else 0.0,
        **ranking_metrics(pred, labels, fallback),
        "sessions": float(pred.n_sessions),
        "buying_sessions": float(bought.sum()),
    }
