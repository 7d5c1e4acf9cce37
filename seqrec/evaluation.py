"""PROTOCOL 3, implemented once for every model: next-click ranking over all items.

Every session of n clicks gives n - 1 predictions (input: the clicks before click i, at most the
last ``max_len``; target: click i). A model scores a batch of left-padded prefixes against every
item (``[B, n_items + 1]``, column 0 = padding, never ranked). The rank of the target is the number
of items scoring greater than OR EQUAL to it (ties count against the model). Scoring happens in
batches on the model's device, so memory is bounded by ``batch_size * n_items`` scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from seqrec.data.dataset import SessionSplit, gather_windows

KS = (10, 20)
LENGTH_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 9), (10, None))
SCORE_BUDGET = 1 << 25  # floats per scored batch: bounds memory for huge catalogues


class Scorer(Protocol):
    """What the evaluator needs from a model: scores of every item for a batch of prefixes."""

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs``: LongTensor ``[B, L]`` left-padded with 0 -> scores ``[B, n_items + 1]``."""
        ...


def _bucket_name(lo: int, hi: int | None) -> str:
    return f"{lo}" if hi == lo else (f"{lo}-{hi}" if hi else f"{lo}+")


@dataclass
class EvalResult:
    """Metrics of one evaluation, plus breakdowns by prefix length."""

    metrics: dict[str, float]
    by_length: dict[str, dict[str, float]] = field(default_factory=dict)

    def prefixed(self, prefix: str) -> dict[str, float]:
        """Metrics named ``{prefix}_{name}`` (e.g. ``test_recall_at_20``) for MLflow."""
        return {f"{prefix}_{k}": v for k, v in self.metrics.items()}


def ranks_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conservative ranks (1 = best) and whether another item tied with the target.

    Column 0 (padding) is never ranked; a NaN target score ranks last.
    """
    target_scores = scores.gather(1, targets[:, None])
    ranked = scores[:, 1:]
    rank = (ranked >= target_scores).sum(1)
    tied = (ranked == target_scores).sum(1) > 1
    nan = torch.isnan(target_scores[:, 0])
    rank = torch.where(nan, torch.full_like(rank, ranked.shape[1]), rank)
    return rank, tied


def _batch_size_for(n_items: int, requested: int) -> int:
    return max(1, min(requested, SCORE_BUDGET // (n_items + 1)))


def device_of(model: object) -> torch.device:
    """Where a scorer computes: its parameters' device for a torch module, else its ``device``."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device(getattr(model, "device", "cpu"))


@torch.no_grad()
def evaluate(
    model: Scorer,
    split: SessionSplit,
    n_items: int,
    max_len: int = 50,
    batch_size: int = 512,
    popularity: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "evaluate",
) -> EvalResult:
    """Rank every next click of ``split`` against all items; see the module docstring."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    device = device_of(model)
    items = np.asarray(split.items, dtype=np.int64)
    starts, targets = split.prediction_positions()
    # similar prefix lengths share a batch, so models can skip padding; metrics do not depend on order
    order = np.argsort(np.minimum(targets - starts, max_len), kind="stable")
    starts, targets = starts[order], targets[order]
    n = len(targets)
    if n == 0:
        raise ValueError("the split has no predictions (every session has a single click)")
    ranks = np.empty(n, dtype=np.int64)
    tied = np.empty(n, dtype=bool)
    top_k = max(KS)
    recommended = np.zeros(n_items + 1, dtype=np.int64)
    step = _batch_size_for(n_items, batch_size)
    for lo in tqdm(range(0, n, step), desc=desc, disable=not progress, leave=False, unit="batch"):
        hi = min(lo + step, n)
        inputs = torch.from_numpy(gather_windows(items, starts[lo:hi], targets[lo:hi], max_len)).to(device)
        scores = model.score(inputs)
        target = torch.from_numpy(items[targets[lo:hi]]).to(scores.device)
        rank, tie = ranks_of_targets(scores, target)
        ranks[lo:hi], tied[lo:hi] = rank.cpu().numpy(), tie.cpu().numpy()
        top = scores[:, 1:].topk(min(top_k, n_items), dim=1).indices.cpu().numpy() + 1
        recommended += np.bincount(top.ravel(), minlength=n_items + 1)
    if was_training:
        model.train()
    metrics = _metrics(ranks)
    metrics["coverage_at_20"] = float((recommended[1:] > 0).sum() / n_items)
    if popularity is not None:
        percentile = _popularity_percentile(popularity)
        metrics["popularity_percentile_at_20"] = float((recommended * percentile).sum() / recommended.sum())
    metrics["tied_predictions"] = float(tied.sum())
    metrics["predictions"] = float(n)
    prefix_len = targets - starts
    by_length = {}
    for lo_len, hi_len in LENGTH_BUCKETS:
        mask = (prefix_len >= lo_len) & (prefix_len <= (hi_len or np.iinfo(np.int64).max))
        if mask.any():
            m = _metrics(ranks[mask], ks=(20,))
            by_length[_bucket_name(lo_len, hi_len)] = {
                "recall_at_20": m["recall_at_20"], "mrr_at_20": m["mrr_at_20"], "predictions": int(mask.sum())
            }
    return EvalResult(metrics, by_length)


def _metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        out[f"recall_at_{k}"] = float(hit.mean())
        out[f"mrr_at_{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
        out[f"ndcg_at_{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out


def _popularity_percentile(popularity: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each item's training popularity among all items; padding gets 0."""
    pop = np.asarray(popularity[1:], dtype=np.float64)
    order = np.argsort(np.argsort(pop, kind="stable"), kind="stable")
    return np.concatenate([[0.0], 100.0 * order / max(len(pop) - 1, 1)])


def plot_by_length(result: EvalResult, path: str | Path, title: str = "Accuracy by prefix length") -> Path:
    """Bar chart of Recall@20 and MRR@20 per prefix-length bucket, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.by_length)
    recall = [result.by_length[b]["recall_at_20"] for b in names]
    mrr = [result.by_length[b]["mrr_at_20"] for b in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, recall, 0.4, label="Recall@20")
    ax.bar(x + 0.2, mrr, 0.4, label="MRR@20")
    ax.set_xticks(x, [f"{b}\n(n={result.by_length[b]['predictions']:,})" for b in names])
    ax.set_xlabel("prefix length (clicks before the target)")
    ax.set_ylabel("metric value")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
