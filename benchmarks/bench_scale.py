"""Large catalogues: SASRec with ``loss=sampled`` on generated data with 10 k, 100 k and 1 M items, on CPU.

    python benchmarks/bench_scale.py [--clicks 2000000] [--items 10000,100000,1000000]

For each catalogue size: one training epoch (clicks/s) and a full-ranking evaluation of the test
split against every item (predictions/s; the evaluator scores in batches sized to the catalogue),
with the peak RSS of a child process that does both.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

from _common import generated_clicks, peak_rss_gb, processed


def one_size(n_clicks: int, n_items: int) -> str:
    import torch

    from seqrec.data.dataset import ProcessedDataset
    from seqrec.evaluation import evaluate
    from seqrec.models.registry import MODELS, split_overrides
    from seqrec.training import _make_optimizer

    path = processed(generated_clicks(n_clicks, n_items=n_items), f"synthetic-{n_clicks}-i{n_items}",
                     min_item_support=1)
    data = ProcessedDataset.load(path)
    model_cfg, train_cfg = split_overrides("sasrec", "default", {"loss": "sampled", "hidden": 64,
                                                                   "n_negatives": 2048, "batch_size": 256})
    model = MODELS["sasrec"].model_type(data.n_items, model_cfg, torch.as_tensor(data.popularity).float())
    opt = _make_optimizer(model, train_cfg)
    split = data.split("train_full")
    started = time.perf_counter()
    model.train()
    for batch in model.batches(split, train_cfg.batch_size, 0, 1):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = time.perf_counter() - started
    test = data.split("test")
    started = time.perf_counter()
    evaluate(model.eval(), test, data.n_items, progress=False)
    ev = time.perf_counter() - started
    return (f"{data.n_items:>9,} items: {split.n_predictions / train:,.0f} training clicks/s ({train:.0f} s/epoch), "
            f"evaluation {test.n_predictions / ev:,.0f} predictions/s, peak RSS {peak_rss_gb():.2f} GB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clicks", type=int, default=2_000_000)
    p.add_argument("--items", default="10000,100000,1000000")
    a = p.parse_args()
    for n_items in map(int, a.items.split(",")):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            print(pool.apply(one_size, (a.clicks, n_items)), flush=True)


if __name__ == "__main__":
    main()
