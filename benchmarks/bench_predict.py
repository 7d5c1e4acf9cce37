"""Throughput and peak memory of the ``predict`` entry point, against the model's own batched scoring.

    python benchmarks/bench_predict.py [--clicks 3600000] [--train-clicks 300000] [--items 20000] [--k 20]
                                       [--chunk-sessions 10000] [--model sr] [--repeat 1]

A model (``--model``, a fast baseline) is trained on ``--train-clicks`` generated clicks; the open sessions are
``--clicks`` generated clicks of the same catalogue (same seed and ``--items``: ~3.6 M clicks are ~1 M
sessions). In one run it measures:

* the model's own batched scoring: ``Recommender.recommend`` over the sessions, already grouped into lists of
  raw item ids, in chunks of ``--chunk-sessions`` (timed alone, in this process);
* ``predict`` through its entry point in a subprocess (``python -m steps.predict``): its throughput over the
  whole path (read, group, score, write: the run's ``seconds``), its wall time from process start to exit,
  and its peak memory (the child's RSS high-water mark, ``ru_maxrss`` of ``os.wait4``), also for the first
  10,000 clicks alone (the fixed part: imports and model);

and prints the ratio of the two throughputs, by wall and by CPU time (target >= 0.8). Both use torch's default
thread count. The generated files are cached under ``benchmarks/.cache``; runs go to a throw-away MLflow store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import ROOT, generated_clicks, processed

SMALL = 10_000  # clicks of the small input that measures the fixed memory (imports, model)


def train_model(train_clicks: int, items: int, model: str) -> str:
    """The URI of a ``model`` baseline trained on generated clicks of the benchmark's catalogue."""
    from seqrec.workflow.baseline import run_baseline

    data = processed(generated_clicks(train_clicks, seed=0, n_items=items), f"bench-predict-{train_clicks}-i{items}")
    run_id, _ = run_baseline(str(data), model)
    return f"runs:/{run_id}/model"


def grouped_sessions(clicks: Path) -> list[list]:
    """Every session of ``clicks`` as its list of raw item ids in time order, by session id."""
    from seqrec.data.readers import read_clicks
    from seqrec.serving.predict import group_clicks

    grouped = group_clicks(read_clicks(clicks))
    items = grouped.item_ids[grouped.item].tolist()
    bounds = grouped.offsets.tolist()
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def recommend_rate(model_uri: str, sessions: list[list], k: int, chunk: int) -> tuple[float, float]:
    """Sessions per wall second and per CPU second (all threads) of ``recommend`` over ``sessions`` in chunks of
    ``chunk``."""
    import mlflow

    recommender = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().recommender
    wall, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, len(sessions), chunk):
        recommender.recommend(sessions[lo : lo + chunk], k)
    return len(sessions) / (time.perf_counter() - wall), len(sessions) / (time.process_time() - cpu)


def predict_subprocess(model_uri: str, clicks: Path, out: Path, k: int, chunk: int) -> tuple[float, float, str]:
    """Run the ``predict`` entry point in a child process; returns its wall seconds, its peak RSS (GB, that
    child's ``ru_maxrss``) and the run id from its summary line."""
    command = [sys.executable, "-m", "steps.predict", "--model-uri", model_uri, "--sessions", str(clicks),
               "--out", str(out), "--k", str(k), "--chunk-sessions", str(chunk), "--overwrite", "true"]
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr, env=os.environ.copy())
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0), stderr.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"predict failed ({child.returncode}): {stderr.read()[-2000:]}")
        summary = stdout.read().strip().splitlines()[-1]
    return wall, usage.ru_maxrss / 1e6, summary.split()[2].rstrip(":")  # ru_maxrss: KiB on Linux


def head_of(clicks: Path, lines: int, folder: Path) -> Path:
    """The first ``lines`` clicks of ``clicks`` as a file of their own."""
    out = folder / f"head-{lines}.dat"
    with open(clicks) as source, open(out, "w") as target:
        target.writelines(line for _, line in zip(range(lines), source, strict=False))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clicks", type=int, default=3_600_000, help="generated clicks of open sessions to score")
    p.add_argument("--train-clicks", type=int, default=300_000, help="generated clicks the model is trained on")
    p.add_argument("--items", type=int, default=20_000, help="catalogue size of both generated files")
    p.add_argument("--model", default="sr", help="a fast baseline (sr, pop, ...)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--chunk-sessions", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=1, help="alternate recommend and predict this many times; "
                                                         "the best of each is compared")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        model_uri = train_model(a.train_clicks, a.items, a.model)
        clicks = generated_clicks(a.clicks, seed=0, n_items=a.items)
        sessions = grouped_sessions(clicks)
        out = Path(tmp) / "recs.parquet"
        _, small_gb, _ = predict_subprocess(model_uri, head_of(clicks, SMALL, Path(tmp)), out, a.k, a.chunk_sessions)
        baseline, runs = [], []
        for _ in range(a.repeat):
            baseline.append(recommend_rate(model_uri, sessions, a.k, a.chunk_sessions))
            runs.append(predict_subprocess(model_uri, clicks, out, a.k, a.chunk_sessions))
        report(a, clicks, baseline, runs, small_gb)


def report(a: argparse.Namespace, clicks: Path, baseline: list[tuple[float, float]],
           runs: list[tuple[float, float, str]], small_gb: float) -> None:
    """Print the figures of a benchmark: the best ``recommend`` against the best ``predict`` run, in wall time and
    in CPU time (all threads: the one that other processes on the machine disturb least)."""
    import mlflow

    metrics = [mlflow.get_run(run_id).data.metrics for _, _, run_id in runs]
    m = max(metrics, key=lambda x: x["sessions_per_second"])
    rate = m["sessions_per_second"]
    cpu_rate = max(x["sessions"] / x["cpu_seconds"] for x in metrics)
    best, best_cpu = max(b[0] for b in baseline), max(b[1] for b in baseline)
    wall, peak_gb = min(r[0] for r in runs), max(r[1] for r in runs)
    print(f"input: {m['sessions']:,.0f} sessions, {m['clicks']:,.0f} clicks ({clicks.stat().st_size / 1e6:,.0f} MB), "
          f"{m['unknown_items'] / m['clicks']:.1%} clicks on unknown items; model {a.model}, k={a.k}, "
          f"chunks of {a.chunk_sessions:,} sessions, {torch.get_num_threads()} torch threads, best of {a.repeat}")
    print(f"recommend (already grouped):         {best:>8,.0f} sessions/s, {best_cpu:>8,.0f} per CPU second")
    print(f"predict (read, group, score, write): {rate:>8,.0f} sessions/s, {cpu_rate:>8,.0f} per CPU second "
          f"({m['seconds']:.1f} s, of which read and group {m['read_seconds']:.1f} s)")
    print(f"ratio predict / recommend: {rate / best:.2f} wall, {cpu_rate / best_cpu:.2f} CPU (target >= 0.8)")
    print(f"predict end to end (process start, model load {m['model_load_seconds']:.1f} s, MLflow run): "
          f"{wall:.1f} s, {m['sessions'] / wall:,.0f} sessions/s")
    print(f"predict peak RSS: {peak_gb:.2f} GB; {small_gb:.2f} GB for the first {SMALL:,} clicks alone "
          f"(imports, model): {(peak_gb - small_gb) * 1e9 / m['clicks']:.0f} bytes per click more")


if __name__ == "__main__":
    main()
