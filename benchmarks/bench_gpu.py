"""Training epochs of SASRec and GRU4Rec on a generated dataset of full YooChoose size, on CUDA.

    python benchmarks/bench_gpu.py [--clicks 33003944] [--seconds 60] [--compile] [--device cuda] [--prepare-only]

For each model: training clicks/s, s/epoch and peak GPU memory (bf16 autocast, as the training loop
does on CUDA), then the evaluator's speed on the test split. ``--seconds`` bounds each measurement:
when an epoch would take longer, the rate is measured on the steps run in that time and the epoch
time is projected from it (the output says so). ``--compile`` adds a ``torch.compile`` run of SASRec.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import generated_clicks, processed, timed_training

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.synthetic import YOOCHOOSE_CLICKS
from seqrec.evaluation import evaluate
from seqrec.models.registry import build_model
from seqrec.optim import make_optimizer
from seqrec.train_config import split_overrides
from seqrec.trainer import make_loader


def epoch(name: str, preset: str, overrides: dict, data: ProcessedDataset, device: torch.device, seconds: float,
          compile_model: bool = False) -> None:
    model_cfg, train_cfg, _ = split_overrides(name, preset, overrides)
    torch.manual_seed(0)
    popularity = torch.as_tensor(data.popularity).float()
    model = build_model(name, data.n_items, model_cfg, popularity).to(device)
    opt = make_optimizer(model, train_cfg)
    split = data.split("train_full")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine = torch.compile(model, dynamic=True) if compile_model else model
    batches = make_loader(model.loader_spec(), split, train_cfg.batch_size, seed=0, epoch=1, train=True,
                          popularity=popularity, device=device)
    run = timed_training(model, opt, batches, device, seconds, forward=engine)
    rate = run["clicks_per_s"]
    how = ("measured over the epoch" if run["whole"]
           else f"projected from {run['steps']:,} of {run['total_steps']:,} steps")
    memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB" if device.type == "cuda" else ""
    print(f"{name} ({preset}{', compiled' if compile_model else ''}, batch {train_cfg.batch_size}): {rate:,.0f} "
          f"training clicks/s, {split.n_predictions / rate:.0f} s/epoch ({how}), loss {run['loss']:.3f}{memory}",
          flush=True)
    test = data.split("test")
    started = time.perf_counter()
    result = evaluate(model, test, data.n_items, progress=False, batch_size=1024)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"  evaluator: {test.n_predictions / (time.perf_counter() - started):,.0f} predictions/s "
          f"({test.n_predictions:,} test predictions, Recall@20 {result.metrics['recall_at_20']:.3f})", flush=True)


def prepare(n_clicks: int) -> Path:
    """The processed generated dataset (YooChoose's 52,739 items), created once and cached."""
    return processed(generated_clicks(n_clicks, n_items=52_739), f"synthetic-{n_clicks}-gpu")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clicks", type=int, default=YOOCHOOSE_CLICKS)
    p.add_argument("--seconds", type=float, default=60.0, help="time bound of each training measurement")
    p.add_argument("--compile", action="store_true", help="also time SASRec under torch.compile")
    p.add_argument("--device", default="cuda")
    p.add_argument("--prepare-only", action="store_true", help="only generate and preprocess the data (cached)")
    a = p.parse_args()
    if a.prepare_only:
        print(f"data prepared: {prepare(a.clicks)}", flush=True)
        return
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    data = ProcessedDataset.load(prepare(a.clicks))
    print(f"data ready in {time.perf_counter() - started:.0f} s: {data.split('train_full').n_clicks:,} training "
          f"clicks, {data.n_items:,} items", flush=True)
    epoch("sasrec", "default", {"batch_size": 1024}, data, device, a.seconds)
    if a.compile:
        epoch("sasrec", "default", {"batch_size": 1024}, data, device, a.seconds, compile_model=True)
    epoch("gru4rec", "small", {"batch_size": 512}, data, device, a.seconds)


if __name__ == "__main__":
    main()
