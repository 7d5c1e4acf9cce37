"""EDA on a processed dataset of full YooChoose size (33 M generated clicks): wall time and peak RSS.

    python benchmarks/bench_eda.py [--clicks 33003944]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from _common import generated_clicks, peak_rss_gb, processed

from seqrec import eda
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.synthetic import YOOCHOOSE_CLICKS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clicks", type=int, default=YOOCHOOSE_CLICKS)
    a = p.parse_args()
    # generate and preprocess (cached) in a child process, so that this process measures the EDA alone
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        path = pool.apply(_prepare, (a.clicks,))
    data = ProcessedDataset.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary, plots, _ = eda.run(data, Path(tmp))
        wall = time.perf_counter() - started
    print(f"eda: {summary['clicks']:,} clicks, {len(plots)} plots in {wall:.1f} s, peak RSS {peak_rss_gb():.2f} GB")


def _prepare(clicks: int) -> Path:
    return processed(generated_clicks(clicks), f"synthetic-{clicks}")


if __name__ == "__main__":
    main()
