"""Next-basket models on generated data (with its planted buying signal): the test table of the README, and the
feature-building time.

    python benchmarks/bench_basket.py                               # 300,000 clicks, every model
    python benchmarks/bench_basket.py --clicks 1000000 --models clicked,count,buypop,gbdt
    python benchmarks/bench_basket.py --feature-clicks 3000000      # also time the features at 3 M clicks

Each model runs the protocol of ``train_basket`` (fitted on train_tr, thresholds and epochs chosen on valid,
refitted on train_full, tested once) in a throw-away MLflow store, with one CPU thread.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _common import CACHE, generated_clicks

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_buys, read_clicks
from seqrec.data.synthetic import YOOCHOOSE_CLICKS
from seqrec.workflow.basket import MODELS, NEURAL, load_pair

COLUMNS = ("buy_auc", "buy_f1", "challenge_score", "jaccard_of_buyers", "basket_recall_at_10", "basket_ndcg_at_10",
           "basket_recall_at_20")


def processed_with_buys(n_clicks: int, seed: int) -> ProcessedDataset:
    """Generated clicks and buys, preprocessed (cached)."""
    clicks = generated_clicks(n_clicks, seed)
    out = CACHE / "processed" / f"basket-{n_clicks}-s{seed}"
    if not (out / "stats.json").exists():
        preprocess(read_clicks(clicks), out, PreprocessConfig(), out.name, {"path": str(clicks)},
                   buys=read_buys(clicks.with_name("buys.dat")))
    return ProcessedDataset.load(out)


def time_features(n_clicks: int, seed: int) -> None:
    """Seconds to build the features of train_full and test (the bigger pair) at ``n_clicks`` clicks."""
    data = processed_with_buys(n_clicks, seed)
    started = time.perf_counter()
    full, test = load_pair(data, "train_full", "test")
    seconds = time.perf_counter() - started
    clicks = data.stats["splits"]["train_full"]["clicks"] + data.stats["splits"]["test"]["clicks"]
    print(f"features of train_full + test, {clicks:,} clicks ({full.features.n_sessions + test.features.n_sessions:,} "
          f"sessions, {len(full.features.pair) + len(test.features.pair):,} candidates): {seconds:.1f} s; "
          f"{seconds / clicks * YOOCHOOSE_CLICKS:.0f} s extrapolated linearly to {YOOCHOOSE_CLICKS:,} clicks")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clicks", type=int, default=300_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=6, help="epoch budget of the neural models")
    p.add_argument("--feature-clicks", type=int, default=0, help="also time the features at this size")
    a = p.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    import torch

    from seqrec.workflow.basket import run_basket

    torch.set_num_threads(1)
    data = processed_with_buys(a.clicks, a.seed)
    s = data.stats["splits"]
    print(f"generated data, {a.clicks:,} clicks: " + ", ".join(
        f"{k} {v['sessions']:,} sessions / {v['buying_sessions']:,} buying" for k, v in s.items()))
    print("| model | " + " | ".join(COLUMNS) + " | seconds |")
    print("|---|" + "---|" * (len(COLUMNS) + 1))
    for model in a.models.split(","):
        params = {"epochs": a.epochs, "preset": "tiny", "threads": 1} if model in NEURAL else \
            {"threads": 1} if model == "gbdt" else {}
        started = time.perf_counter()
        _, test = run_basket(str(data.path), model, params)
        seconds = time.perf_counter() - started
        print(f"| {model} | " + " | ".join(f"{test[f'test_{c}']:.4f}" for c in COLUMNS) + f" | {seconds:.0f} |",
              flush=True)
    if a.feature_clicks:
        time_features(a.feature_clicks, a.seed)


if __name__ == "__main__":
    main()
