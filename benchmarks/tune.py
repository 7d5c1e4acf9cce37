"""Grid search of a neural model's hyper-parameters on the valid split (never on test).

    python benchmarks/tune.py --model sasrec --preset sample \
        --grid "hidden=128,256 dropout=0.5,0.6" [--set epochs=60] [--data DIR] [--workers 2] [--refit]

Each point of the grid trains the preset with those overrides on train_tr, evaluates valid after every
epoch and stops early on val_mrr_at_20 (the training loop of the entry points). The table, best
validation MRR@20 first, is printed and written as CSV (``--out``). ``--refit`` also runs the rest of
the protocol (refit on train_full, test metrics) so that the point chosen on valid can be reported
without a second run; choose by the validation columns only. ``--data`` defaults to the real sample
preprocessed as published. Workers run in parallel processes, ``--threads`` torch threads each; on a
GPU they share the device.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import multiprocessing
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_grid(grid: str) -> list[dict]:
    """``"a=1,2 b=x"`` -> ``[{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]``."""
    axes = []
    for part in grid.split():
        name, _, values = part.partition("=")
        if not values:
            raise SystemExit(f"--grid: expected name=v1,v2,... but got {part!r}")
        axes.append([(name, _value(v)) for v in values.split(",")])
    return [dict(point) for point in itertools.product(*axes)] if axes else [{}]


def run_point(args: tuple) -> dict:
    """Train one grid point; returns its overrides, validation (and with refit, test) metrics."""
    model_name, preset, data_dir, overrides, refit, threads, device = args
    import torch

    from seqrec.data.dataset import ProcessedDataset
    from seqrec.models.registry import build_model
    from seqrec.trainer import Checkpointer, Trainer, split_overrides

    torch.set_num_threads(threads)
    data = ProcessedDataset.load(data_dir)
    model_cfg, train_cfg, runtime = split_overrides(model_name, preset, overrides)
    train_cfg = replace(train_cfg, refit=refit)
    runtime = replace(runtime, progress=False, device=device)
    popularity = torch.as_tensor(data.popularity).float()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(lambda: build_model(model_name, data.n_items, model_cfg, popularity), data,
                          train_cfg, Checkpointer(Path(tmp)), runtime=runtime)
        _, history, test = trainer.run()
    best = history.select[history.best_epoch - 1]
    row = {**overrides, "best_epoch": history.best_epoch, "epochs_run": len(history.select),
           "val_mrr_at_20": best["val_mrr_at_20"], "val_recall_at_20": best["val_recall_at_20"],
           "minutes": (time.perf_counter() - started) / 60}
    if refit:
        row.update(test_recall_at_20=test.metrics["recall_at_20"], test_mrr_at_20=test.metrics["mrr_at_20"])
    return row


def main() -> None:
    from _common import sample_processed

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sasrec")
    p.add_argument("--preset", default="sample")
    p.add_argument("--data", help="a processed dataset folder (default: the real sample)")
    p.add_argument("--grid", default="", help='space-separated name=v1,v2 axes, e.g. "hidden=128,256 lr=1e-3"')
    p.add_argument("--set", nargs="*", default=[], help="fixed overrides name=value")
    p.add_argument("--refit", action="store_true", help="also refit on train_full and report test metrics")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="tune.csv")
    a = p.parse_args()
    data = a.data or sample_processed()
    if data is None:
        raise SystemExit("no --data and the real sample is absent")
    fixed = dict(item.split("=", 1) for item in a.set)
    points = [{**{k: _value(v) for k, v in fixed.items()}, **point} for point in parse_grid(a.grid)]
    jobs = [(a.model, a.preset, str(data), point, a.refit, a.threads, a.device) for point in points]
    print(f"{len(points)} configurations of {a.model} (preset {a.preset}) on {data}, {a.workers} workers", flush=True)
    rows = []
    with multiprocessing.get_context("spawn").Pool(a.workers) as pool:
        for row in pool.imap_unordered(run_point, jobs):
            rows.append(row)
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    rows.sort(key=lambda r: -r["val_mrr_at_20"])
    names = list(dict.fromkeys(k for r in rows for k in r))
    with open(a.out, "w", newline="") as f:
        writer = csv.DictWriter(f, names)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nbest on valid first (written to {a.out}):")
    print("  ".join(names))
    for r in rows:
        print("  ".join(f"{r.get(k, ''):.4f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in names))


if __name__ == "__main__":
    main()
