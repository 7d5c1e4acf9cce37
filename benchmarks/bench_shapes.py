"""``preset=auto`` on datasets of several shapes: the best sequence model against the best session-kNN model.

    python benchmarks/bench_shapes.py                          # every shape, GRU4Rec and SASRec, 3 seeds
    python benchmarks/bench_shapes.py --shapes built-in-20k,yoochoose-10% --seeds 3 --out shapes.json
    python benchmarks/bench_shapes.py --shapes built-in-100k --models gru4rec+vstan   # GRU4Rec fused with V-STAN

Each shape is a processed dataset (cached under ``benchmarks/.cache``): the real YooChoose sample as published
and 10 % / 30 % of its sessions; the built-in generated data at 20 k, 100 k and 1 M clicks; generated data with
longer sessions, and with a larger catalogue. On each, every session-kNN model (S-KNN, V-SKNN, STAN, V-STAN) and
every sequence model (``preset=auto``, ``--seeds`` seeds) runs through the training workflow in a throw-away MLflow
store; ``NET+KNN`` (``gru4rec+vstan``) is network ``NET`` fused with session-kNN model ``KNN`` (``-P fuse=KNN``,
``seqrec.models.fused``). The best of each family (kNN, sequence, fused) is the one with the best validation MRR@20 (the
test split chooses nothing); the table gives its valid MRR@20 and test Recall@20 / MRR@20 (means ± std over
seeds) and whether the better of the sequence and fused models matches the kNN model on both test metrics.
Finished cells are kept in ``--out`` and not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from _common import CACHE, generated_clicks, processed, sample_processed

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.synthetic import SyntheticConfig, generate
from seqrec.models.auto_preset import DataShape

KNN = ("sknn", "vsknn", "stan", "vstan")
SEQUENCE = ("gru4rec", "sasrec")
METRICS = ("best_val_mrr_at_20", "test_recall_at_20", "test_mrr_at_20")


def _sample_fraction(percent: int) -> Path | None:
    """The real sample with ``percent`` % of its sessions (chosen by a hash of the session id), preprocessed as
    published (``min_item_support=1``)."""
    full = sample_processed()
    if full is None:
        return None
    part = CACHE / f"yoochoose-100k-{percent}pct.tsv"
    if not part.exists():
        lines = (CACHE / "yoochoose-100k.tsv").read_text().splitlines()
        keep = [lines[0]] + [line for line in lines[1:]
                             if zlib.crc32(line.split("\t", 1)[0].encode()) % 100 < percent]
        part.write_text("\n".join(keep) + "\n")
    return processed(part, f"yoochoose-100k-{percent}pct", min_item_support=1)


def _generated(name: str, cfg: SyntheticConfig) -> Path:
    folder = CACHE / f"shape-{name}"
    if not (folder / "clicks.dat").exists():
        generate(folder, cfg)
    return processed(folder / "clicks.dat", f"shape-{name}")


SHAPES: dict[str, Callable[[], Path | None]] = {
    "yoochoose-sample": sample_processed,
    "yoochoose-30%": lambda: _sample_fraction(30),
    "yoochoose-10%": lambda: _sample_fraction(10),
    "built-in-20k": lambda: processed(generated_clicks(20_000), "synthetic-20k"),
    "built-in-100k": lambda: processed(generated_clicks(100_000), "synthetic-100k"),
    "built-in-1m": lambda: processed(generated_clicks(1_000_000), "synthetic-1m"),
    # sessions twice as long (a mean near 8 clicks) at 100 k clicks; a catalogue of 30 k items with a flatter
    # popularity at 150 k clicks (5,640 items keep the 5 clicks preprocessing asks for, 2.3x the built-in data's)
    "long-sessions": lambda: _generated("long-sessions", SyntheticConfig(n_clicks=100_000, length_log_mean=1.55)),
    "large-catalogue": lambda: _generated("large-catalogue", SyntheticConfig(
        n_clicks=150_000, n_items=30_000, popularity_exponent=1.3)),
}


def run_cell(data_dir: Path, model: str, seeds: int) -> dict[str, float]:
    """Train and test one model on one dataset (``preset=auto`` for a sequence model); its final metrics."""
    import mlflow

    from seqrec.workflow.baseline import run_baseline
    from seqrec.workflow.neural import run_neural

    started = time.perf_counter()
    if model in KNN:
        run_id, _ = run_baseline(str(data_dir), model)
    else:
        network, _, knn = model.partition("+")
        run_id, _ = run_neural(network, str(data_dir), "auto", {"progress": False, **({"fuse": knn} if knn else {})},
                               seeds=seeds)
    metrics = mlflow.MlflowClient().get_run(run_id).data.metrics
    cell = {k: v for k, v in metrics.items() if k.startswith((*METRICS, "fusion_weight", "network_test_"))}
    cell["wall_seconds"] = time.perf_counter() - started
    return cell


def mean_std(cell: dict[str, float], metric: str) -> tuple[float, float]:
    """A metric's mean over seeds and its standard deviation (0 for one seed or a deterministic model)."""
    seeds = [v for k, v in cell.items() if k.startswith(f"{metric}_seed")]
    if len(seeds) > 1:
        return statistics.mean(seeds), statistics.stdev(seeds)
    return cell[metric], 0.0


def fused(cells: dict[str, dict]) -> tuple[str, ...]:
    """The fused models (``NET+KNN``) among ``cells``."""
    return tuple(m for m in cells if "+" in m)


def best(cells: dict[str, dict], family: tuple[str, ...]) -> str | None:
    """The model of ``family`` with the best mean validation MRR@20."""
    done = [m for m in family if m in cells]
    return max(done, key=lambda m: mean_std(cells[m], METRICS[0])[0]) if done else None


def describe(path: Path) -> dict[str, float]:
    data = ProcessedDataset.load(path)
    shape = DataShape.of(data)
    return {"items": shape.items, "train_clicks": shape.clicks,
            "mean_length": round(shape.clicks / max(1, shape.sessions), 2),
            "test_predictions": data.split("test").n_predictions}


def table(results: dict[str, dict]) -> str:
    def fmt(cell: dict, metric: str) -> str:
        mean, std = mean_std(cell, metric)
        return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"

    group = "| valid MRR@20 | test Recall@20 | test MRR@20 "
    lines = [f"| shape | items | train clicks | mean length | best kNN {group}| best sequence {group}"
             f"| best fused {group}| sequence or fused >= kNN (R@20, MRR@20) |",
             "|" + "---|" * 17]
    for name, shape in results.items():
        cells, stats = shape["cells"], shape["stats"]
        knn, seq, mix = best(cells, KNN), best(cells, SEQUENCE), best(cells, fused(cells))
        row = [name, f"{stats['items']:,}", f"{stats['train_clicks']:,}", f"{stats['mean_length']:.2f}"]
        for model in (knn, seq, mix):
            label = model if model in KNN or not model else f"{model} ({cells[model]['seeds']} seed(s))"
            row += [label or "-"] + ([fmt(cells[model], m) for m in METRICS] if model else ["-"] * 3)
        # the neural side: the better of the two by validation MRR@20, as a user would pick
        neural = best(cells, tuple(m for m in (seq, mix) if m))
        if knn and neural:
            verdict = [mean_std(cells[neural], m)[0] >= mean_std(cells[knn], m)[0] for m in METRICS[1:]]
            row.append(f"{neural}: " + ", ".join("yes" if v else "no" for v in verdict))
        else:
            row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"some of {', '.join(SHAPES)}")
    p.add_argument("--models", default=",".join((*KNN, *SEQUENCE)))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=str(CACHE / "shapes.json"), help="results so far (finished cells are kept)")
    a = p.parse_args()
    unknown = set(a.shapes.split(",")) - set(SHAPES)
    if unknown:
        p.error(f"unknown shape(s) {sorted(unknown)}, expected some of {list(SHAPES)}")
    out = Path(a.out).resolve()
    results = json.loads(out.read_text()) if out.exists() else {}
    store = tempfile.mkdtemp(prefix="bench-shapes-")
    os.chdir(store)  # the store's artifacts (./mlruns) and checkpoints go there, not into the checkout
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ.setdefault("SEQREC_CHECKPOINTS", f"{store}/checkpoints")
    for name in a.shapes.split(","):
        path = SHAPES[name]()
        if path is None:
            print(f"{name}: skipped (the real sample is not at ../shared/data/yoochoose-100k)")
            continue
        shape = results.setdefault(name, {"stats": describe(path), "cells": {}})
        for model in a.models.split(","):
            seeds = 1 if model in KNN else a.seeds
            if shape["cells"].get(model, {}).get("seeds", 0) >= seeds:
                continue
            print(f"{name}: {model} ...", flush=True)
            shape["cells"][model] = {**run_cell(path, model, seeds), "seeds": seeds}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
    print(f"(MLflow runs in {store})")
    print(table({k: v for k, v in results.items() if k in a.shapes.split(",")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
