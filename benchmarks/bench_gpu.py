"""One training epoch of SASRec and GRU4Rec on a generated dataset of full YooChoose size, on CUDA.

    python benchmarks/bench_gpu.py [--clicks 33003944]

Prints training clicks/s, s/epoch and peak GPU memory for each model, and the evaluator's speed.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import generated_clicks, processed

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.synthetic import YOOCHOOSE_CLICKS
from seqrec.evaluation import evaluate
from seqrec.models.registry import MODELS
from seqrec.training import _make_optimizer
from seqrec.workflow.neural import split_overrides


def epoch(name: str, preset: str, overrides: dict, data: ProcessedDataset, device: torch.device) -> None:
    model_cfg, train_cfg = split_overrides(name, preset, overrides)
    model = MODELS[name].model_type(data.n_items, model_cfg, torch.as_tensor(data.popularity).float()).to(device)
    opt = _make_optimizer(model, train_cfg)
    split = data.split("train_full")
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    started = time.perf_counter()
    model.train()
    for batch in model.batches(split, train_cfg.batch_size, 0, 1):
        batch = tuple(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    print(f"{name} ({preset}): {seconds:.1f} s/epoch, {split.n_predictions / seconds:,.0f} training clicks/s, "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB", flush=True)
    test = data.split("test")
    started = time.perf_counter()
    evaluate(model, test, data.n_items, progress=False, batch_size=1024)
    torch.cuda.synchronize()
    print(f"  evaluator: {test.n_predictions / (time.perf_counter() - started):,.0f} predictions/s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clicks", type=int, default=YOOCHOOSE_CLICKS)
    a = p.parse_args()
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}")
    started = time.perf_counter()
    data = ProcessedDataset.load(processed(generated_clicks(a.clicks, n_items=52_739), f"synthetic-{a.clicks}-gpu"))
    print(f"data ready in {time.perf_counter() - started:.0f} s: {data.split('train_full').n_clicks:,} training "
          f"clicks, {data.n_items:,} items")
    epoch("sasrec", "default", {"batch_size": 1024}, data, device)
    epoch("gru4rec", "small", {"batch_size": 512}, data, device)


if __name__ == "__main__":
    main()
