"""Large catalogues: SASRec with ``loss=sampled`` on generated data with 10 k, 100 k and 1 M items, on CPU.

    python benchmarks/bench_scale.py [--clicks 10000000] [--items 10000,100000,1000000] [--seconds 60]

For each catalogue size, in a child process whose peak RSS is reported: training clicks/s of SASRec
(64 units, sampled softmax with 2,048 popularity negatives plus in-batch ones, batch 256), measured
over at most ``--seconds`` of an epoch, and the speed of a full-ranking evaluation against every item
of the vocabulary (ranked in item chunks with bounded memory) on the first ``--eval-sessions`` test
sessions. Items that nobody clicks are not in the vocabulary, so a 1 M-item vocabulary needs about
10 M generated clicks.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

from _common import first_sessions, generated_clicks, peak_rss_gb, processed, timed_training


def one_size(n_clicks: int, n_items: int, seconds: float, eval_sessions: int) -> str:
    import torch

    from seqrec.data.dataset import ProcessedDataset
    from seqrec.evaluation import evaluate
    from seqrec.models.registry import build_model
    from seqrec.optim import make_optimizer
    from seqrec.train_config import split_overrides
    from seqrec.trainer import make_loader

    started = time.perf_counter()
    path = processed(generated_clicks(n_clicks, n_items=n_items), f"synthetic-{n_clicks}-i{n_items}",
                     min_item_support=1)
    data = ProcessedDataset.load(path)
    prepared = time.perf_counter() - started
    model_cfg, train_cfg, _ = split_overrides("sasrec", "default", {"loss": "sampled", "hidden": 64,
                                                                   "n_negatives": 2048, "batch_size": 256})
    torch.manual_seed(0)
    model = build_model("sasrec", data.n_items, model_cfg, torch.as_tensor(data.popularity).float())
    split = data.split("train_full")
    batches = make_loader(model.loader_spec(), split, train_cfg.batch_size, seed=0, epoch=1, train=True)
    run = timed_training(model, make_optimizer(model, train_cfg), batches, torch.device("cpu"), seconds)
    rate = run["clicks_per_s"]
    how = "whole epoch" if run["whole"] else f"{run['steps']:,} of {run['total_steps']:,} steps"
    test = first_sessions(data.split("test"), eval_sessions)
    started = time.perf_counter()
    evaluate(model.eval(), test, data.n_items, progress=False)
    ev = time.perf_counter() - started
    return (f"{data.n_items:>9,} items in the vocabulary ({split.n_clicks:,} training clicks, data ready in "
            f"{prepared:.0f} s): {rate:,.0f} training clicks/s ({how}; {split.n_predictions / rate:,.0f} s/epoch), "
            f"evaluation {test.n_predictions / ev:,.0f} predictions/s over {test.n_predictions:,}, "
            f"peak RSS {peak_rss_gb():.2f} GB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clicks", type=int, default=10_000_000)
    p.add_argument("--items", default="10000,100000,1000000")
    p.add_argument("--seconds", type=float, default=60.0, help="time bound of each training measurement")
    p.add_argument("--eval-sessions", type=int, default=2_000)
    a = p.parse_args()
    for n_items in map(int, a.items.split(",")):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            print(pool.apply(one_size, (a.clicks, n_items, a.seconds, a.eval_sessions)), flush=True)


if __name__ == "__main__":
    main()
