"""Memory and time of one recommendation request against a large catalogue.

    python benchmarks/bench_recommend_memory.py [--items 500000] [--sessions 1000] [--k 20]

Builds a popularity model and a small SASRec (64 units, untrained: the cost does not depend on the
weights) over ``--items`` items and answers one request of ``--sessions`` empty sessions, then one
of ``--sessions`` sessions of five known clicks, printing the peak of Python/numpy allocations
(tracemalloc; torch's own buffers are not counted) and the wall time of each.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import torch

from seqrec.models.baselines import make_baseline
from seqrec.models.sasrec import SASRec, SASRecConfig
from seqrec.serving.recommender import Recommender


def measure(recommender: Recommender, sessions: list[list[str]], k: int) -> tuple[float, float]:
    """Peak traced MiB and seconds of one ``recommend`` call."""
    tracemalloc.start()
    started = time.perf_counter()
    recommender.recommend(sessions, k)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=500_000)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--k", type=int, default=20)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    raw_ids = np.array(["", *(str(i) for i in range(1, a.items + 1))], dtype=object)
    popularity = np.concatenate([[0.0], rng.zipf(1.5, a.items).astype(np.float64)])
    pop = make_baseline("pop")
    pop.popularity, pop.n_items = popularity, a.items
    torch.manual_seed(0)
    sasrec = SASRec(a.items, SASRecConfig(hidden=64, layers=2, heads=2)).eval()
    empty = [[] for _ in range(a.sessions)]
    known = [[str(i) for i in rng.integers(1, a.items + 1, 5)] for _ in range(a.sessions)]
    for name, scorer in (("pop", pop), ("sasrec", sasrec)):
        recommender = Recommender(scorer, raw_ids, popularity, 50)
        for label, sessions in (("empty", empty), ("known", known)):
            peak, seconds = measure(recommender, sessions, a.k)
            print(f"{name:6s} {a.sessions:,} {label} sessions, {a.items:,} items, k={a.k}: "
                  f"peak traced memory {peak:,.1f} MiB, {seconds:.2f} s", flush=True)


if __name__ == "__main__":
    main()
