"""Training speed of SASRec and GRU4Rec, and the evaluator's speed.

    python benchmarks/bench_train.py [--threads 1]

SASRec: embedding 64, 2 blocks, 2 heads, max_len 50, batch 256, one row per session (a target at
every position) and one row per prefix (``train_on=prefixes``, the rows RecBole trains on); on the
real sample also the ``sample`` preset. GRU4Rec: the ``small`` preset and the official
implementation's speed setting (batch 32, 2,048 shared negatives, 100 hidden units). Each on the real
sample (if present) and on a generated 1-million-click dataset.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import generated_clicks, processed, sample_processed

from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import evaluate
from seqrec.models.registry import build_model
from seqrec.optim import make_optimizer, make_scheduler
from seqrec.train_config import TrainConfig, split_overrides
from seqrec.trainer import batch_loss, make_loader


def train_epoch(model_name: str, preset: str, overrides: dict, data: ProcessedDataset) -> tuple[float, int, int]:
    """Seconds for one epoch on train_full, with the number of sequences (windows) and of target clicks."""
    model_cfg, train_cfg, _ = split_overrides(model_name, preset, overrides)
    torch.manual_seed(0)
    popularity = torch.as_tensor(data.popularity).float()
    model = build_model(model_name, data.n_items, model_cfg, popularity)
    split = data.split("train_full")
    batches = make_loader(model.loader_spec(), split, train_cfg.batch_size, seed=0, epoch=1, train=True,
                          popularity=popularity)
    opt = make_optimizer(model, train_cfg)
    sched = make_scheduler(opt, TrainConfig(**{**train_cfg.__dict__, "epochs": 1}), len(batches))
    model.train()
    started = time.perf_counter()
    state = None
    for batch in batches:
        loss, state = batch_loss(model, batch, state)
        opt.zero_grad()
        loss.backward()
        if train_cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip)
        opt.step()
        sched.step()
    seconds = time.perf_counter() - started
    windows = getattr(batches, "n_windows", split.n_sessions)
    return seconds, windows, split.n_predictions, model


SASREC_64 = {"hidden": 64, "layers": 2, "heads": 2, "max_len": 50, "batch_size": 256}


def report(label: str, path, tuned_preset: bool) -> None:
    data = ProcessedDataset.load(path)
    print(f"\n{label}: {data.split('train_full').n_clicks:,} training clicks, {data.n_items:,} items, "
          f"{torch.get_num_threads()} threads")
    setups = [
        ("sasrec", "default", SASREC_64),
        ("sasrec", "default", {**SASREC_64, "train_on": "prefixes"}),
        *([("sasrec", "sample", {})] if tuned_preset else []),
        ("gru4rec", "small", {}),
        ("gru4rec", "sample", {"hidden": 100, "batch_size": 32, "n_negatives": 2048}),
    ]
    for name, preset, overrides in setups:
        seconds, sequences, targets, model = train_epoch(name, preset, overrides, data)
        print(f"{name} ({preset}, {overrides or 'preset'}): {seconds:.1f} s/epoch, {sequences / seconds:,.0f} "
              f"sequences/s, {targets / seconds:,.0f} training clicks/s", flush=True)
        if overrides == SASREC_64:  # the evaluator, once per dataset
            test = data.split("test")
            started = time.perf_counter()
            evaluate(model.eval(), test, data.n_items, progress=False)
            ev = time.perf_counter() - started
            print(f"evaluator (SASRec, full ranking): {test.n_predictions / ev:,.0f} predictions/s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    if (threads := p.parse_args().threads) > 0:
        torch.set_num_threads(threads)
    sample = sample_processed()
    if sample is not None:
        report("real YooChoose sample", sample, tuned_preset=True)
    report("generated 1M clicks", processed(generated_clicks(1_000_000), "synthetic-1m"), tuned_preset=False)


if __name__ == "__main__":
    main()
