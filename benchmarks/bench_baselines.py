"""Fit and test time and accuracy of every baseline.

    python benchmarks/bench_baselines.py            # the real sample (if present), every baseline
    python benchmarks/bench_baselines.py --scale    # also a generated YooChoose-size file, fraction 1/64

On the sample, it prints the table of the README (fit on train_full, all test predictions, ties
counted against the model).
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import generated_clicks, processed, sample_processed

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.synthetic import YOOCHOOSE_CLICKS
from seqrec.evaluation import evaluate
from seqrec.models.baselines import BASELINES, make_baseline


def bench(path, label: str, models) -> None:
    data = ProcessedDataset.load(path)
    full, test = data.split("train_full"), data.split("test")
    print(f"\n{label}: {data.n_items:,} items, {full.n_clicks:,} training clicks, {test.n_predictions:,} test "
          f"predictions ({torch.get_num_threads()} threads)")
    print("| model | fit s | test s | predictions/s | Recall@10 | MRR@10 | Recall@20 | MRR@20 | ties |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in models:
        started = time.perf_counter()
        model = make_baseline(name).fit(full, data.n_items)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        m = evaluate(model, test, data.n_items, progress=False).metrics
        seconds = time.perf_counter() - started
        print(f"| {name} | {fit:.2f} | {seconds:.2f} | {m['predictions'] / seconds:,.0f} | {m['recall_at_10']:.4f} | "
              f"{m['mrr_at_10']:.4f} | {m['recall_at_20']:.4f} | {m['mrr_at_20']:.4f} | {m['tied_predictions']:.0f} |",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", action="store_true", help="also run on generated data of YooChoose size, 1/64")
    p.add_argument("--models", default=",".join(BASELINES))
    a = p.parse_args()
    models = a.models.split(",")
    sample = sample_processed()
    if sample is not None:
        bench(sample, "real YooChoose sample (yoochoose-100k)", models)
    else:
        print("real sample not found: skipped")
    if a.scale:
        clicks = generated_clicks(YOOCHOOSE_CLICKS)
        bench(processed(clicks, "synthetic-full-64", fraction=64), "generated YooChoose-size data, fraction 1/64",
              models)


if __name__ == "__main__":
    main()
