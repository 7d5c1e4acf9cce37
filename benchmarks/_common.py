"""Helpers shared by the benchmark scripts: cached generated data and the real sample."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_clicks
from seqrec.data.synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
SAMPLE = Path(os.environ.get("SEQREC_SAMPLE", ROOT.parent / "shared" / "data" / "yoochoose-100k"))


def generated_clicks(n_clicks: int, seed: int = 0, n_items: int = 0) -> Path:
    """A generated raw clicks file of ``n_clicks`` clicks, created once and cached."""
    folder = CACHE / f"synthetic-{n_clicks}-s{seed}-i{n_items}"
    if not (folder / "clicks.dat").exists():
        generate(folder, SyntheticConfig(n_clicks=n_clicks, seed=seed, n_items=n_items))
    return folder / "clicks.dat"


def processed(clicks: Path, name: str, **config) -> Path:
    """The processed dataset of ``clicks`` (cached)."""
    out = CACHE / "processed" / name
    if not (out / "stats.json").exists():
        preprocess(read_clicks(clicks), out, PreprocessConfig(**config), name, {"path": str(clicks)})
    return out


def sample_processed() -> Path | None:
    """The real sample (train_full + test) preprocessed as published (min_item_support=1), if present."""
    if not (SAMPLE / "train_full.txt").exists():
        return None
    both = CACHE / "yoochoose-100k.tsv"
    if not both.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        full = (SAMPLE / "train_full.txt").read_text().splitlines()
        test = (SAMPLE / "test.txt").read_text().splitlines()[1:]
        both.write_text("\n".join(full + test) + "\n")
    return processed(both, "yoochoose-100k", min_item_support=1)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def timed_training(model, opt, batches, device, seconds: float, warmup_steps: int = 20, forward=None) -> dict:
    """Train ``model`` over ``batches`` (bf16 autocast on CUDA) for at most about ``seconds``.

    ``forward`` computes the loss instead of ``model.loss`` (e.g. a compiled ``model``). The first
    ``warmup_steps`` steps (kernel warm-up, compilation; at most a quarter of the epoch) are not timed.
    Returns the measured training clicks/s, the steps run and whether the whole epoch ran (else the
    rate is from a part).
    """
    import time

    import torch

    from seqrec.trainer import batch_loss

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    warmup_steps = min(warmup_steps, len(batches) // 4)
    steps = clicks = 0
    started = None
    loss, state = torch.tensor(float("nan")), None
    for batch in batches:
        if steps == warmup_steps:
            sync()
            started, clicks = time.perf_counter(), 0
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, state = batch_loss(model, batch, state, forward)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        clicks += int((batch[1] > 0).sum())
        if started is not None and steps % 10 == 0 and time.perf_counter() - started > seconds:
            break
    sync()
    elapsed = time.perf_counter() - started
    return {"clicks_per_s": clicks / elapsed, "steps": steps, "total_steps": len(batches),
            "whole": steps == len(batches), "loss": loss.item()}


def first_sessions(split, n_sessions: int):
    """The first ``n_sessions`` sessions of a split (a smaller evaluation set for huge catalogues)."""
    from seqrec.data.dataset import SessionSplit

    n = min(n_sessions, len(split.offsets) - 1)
    end = int(split.offsets[n])
    return SessionSplit(split.items[:end], split.offsets[: n + 1], split.times[:end], split.session_ids[:n])
