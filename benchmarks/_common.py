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
