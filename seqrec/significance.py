"""Is one model's test accuracy really higher than another's? A paired test over the same test predictions.

Both models rank the same targets (``EvalResult.ranks``, in the split's prediction order), so each
prediction gives a pair: its reciprocal rank at K (0 beyond K, as MRR@K) and its hit at K (as Recall@K)
under either model. The paired bootstrap resamples predictions with replacement and looks at how often the
mean difference reaches zero or below (or zero or above); twice the smaller share is the two-sided p-value.
Ranks of several seeds (``[seeds, n]``) are averaged per prediction first, so the test is about the models
as trained over those seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 2000
_CHUNK_VALUES = 1 << 22  # resampled values held at once: bounds memory for large test splits


def per_prediction(ranks: np.ndarray, k: int = 20) -> dict[str, np.ndarray]:
    """Each prediction's ``mrr_at_k`` (1/rank when rank <= k, else 0) and ``recall_at_k`` (hit), averaged
    over the seeds when ``ranks`` is ``[seeds, n]``."""
    ranks = np.atleast_2d(np.asarray(ranks, dtype=np.float64))
    hit = ranks <= k
    return {f"mrr_at_{k}": np.where(hit, 1.0 / ranks, 0.0).mean(0), f"recall_at_{k}": hit.mean(0)}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value of ``mean(a - b) != 0`` for paired values ``a``, ``b`` (``[n]`` each).

    Identical values give 1; a difference that no resample brings to zero gives ``2 / (resamples + 1)``.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.ndim != 1 or len(diff) == 0:
        raise ValueError(f"paired values must be two equally long non-empty vectors, got a difference of "
                         f"shape {diff.shape}")
    rng = np.random.default_rng(seed)
    n = len(diff)
    chunk = max(1, _CHUNK_VALUES // n)
    at_most_zero = at_least_zero = 0
    for lo in range(0, resamples, chunk):
        means = diff[rng.integers(0, n, size=(min(chunk, resamples - lo), n))].mean(1)
        at_most_zero += int((means <= 0).sum())
        at_least_zero += int((means >= 0).sum())
    return min(1.0, 2 * (min(at_most_zero, at_least_zero) + 1) / (resamples + 1))


@dataclass
class PairedResult:
    """One metric of a paired comparison: both means, their difference and its p-value."""

    metric: str
    mean_a: float
    mean_b: float
    difference: float
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare_ranks(ranks_a: np.ndarray, ranks_b: np.ndarray, k: int = 20, resamples: int = RESAMPLES,
                  seed: int = 0) -> list[PairedResult]:
    """Model A against model B on MRR@k and Recall@k of the same test predictions (paired bootstrap).

    ``ranks_a``, ``ranks_b``: ``[n]`` or ``[seeds, n]`` ranks of the same ``n`` predictions.
    """
    a, b = per_prediction(ranks_a, k), per_prediction(ranks_b, k)
    n_a, n_b = len(next(iter(a.values()))), len(next(iter(b.values())))
    if n_a != n_b:
        raise ValueError(f"the two models ranked different test splits ({n_a} and {n_b} predictions): "
                         f"compare runs on the same dataset")
    return [PairedResult(name, float(a[name].mean()), float(b[name].mean()), float(a[name].mean() - b[name].mean()),
                         paired_bootstrap(a[name], b[name], resamples, seed)) for name in a]
