"""Preprocess click logs bigger than memory with the out-of-core engine and print one table row per run: wall time,
CPU time, peak RSS and the peak of DuckDB's spill files.

    nice -n 10 python benchmarks/bench_outofcore.py                  # OTTO-shaped 100 M, 200 M, 300 M events (duckdb),
                                                                     # then YooChoose-shaped 33,003,944 clicks (both),
                                                                     # DuckDB's memory_limit 3 GiB for all
    python benchmarks/bench_outofcore.py --otto 10000000 --yoochoose 0  # a quick check

Each run is the real entry point (``steps/preprocess.py``, MLflow logging included) in a child process, so that its
peak RSS is its own (``os.wait4``); its ``TMPDIR`` is a fresh folder whose size is polled to measure how much DuckDB
spills. The OTTO-shaped files are converted from generated raw files (``seqrec.data.writers``; one event in ten is
a cart, dropped by the default event filter) and cached under benchmarks/.cache; the raw file made for a conversion
is deleted once converted, and without ``--keep`` so is each OTTO file of 100 M events or more once measured (300 M
events take 19 GB). CPU seconds and the load average say how much a busy machine stretched the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import CACHE, ROOT, generated_clicks

from seqrec.data.outofcore import MEMORY_LIMIT_ENV
from seqrec.data.synthetic import YOOCHOOSE_CLICKS
from seqrec.data.writers import convert

HEADER = ("| log | events | file | engine | wall | CPU | peak RSS | peak spill | events/s | kept clicks |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def otto_file(events: int) -> Path:
    """The cached OTTO-shaped file of ``events`` events; the raw file it is converted from is removed unless it
    was there before."""
    path = CACHE / f"otto-{events}.jsonl"
    if not path.exists():
        raw_dir = CACHE / f"synthetic-{events}-s0-i0"
        existed = raw_dir.exists()
        convert(generated_clicks(events), "otto", path)
        if not existed:
            shutil.rmtree(raw_dir, ignore_errors=True)
    return path


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):  # removed while counted
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def run(path: Path, fmt: str, engine: str) -> dict:
    """One preprocess run in a child process: its wall and CPU seconds, peak RSS and peak spill (bytes)."""
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        spill = Path(tmp) / "tmp"
        spill.mkdir()
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "TMPDIR": str(spill)}
        cmd = [sys.executable, str(ROOT / "steps" / "preprocess.py"), "--clicks", str(path), "--format", fmt,
               "--out", f"{tmp}/processed", "--engine", engine]
        peak, done = [0], threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], _tree_bytes(spill))

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        started = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        watcher.join()
        output = child.stdout.read() if child.stdout else ""
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
        stats = json.loads((Path(tmp) / "processed" / "stats.json").read_text())
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024,
            "spill": peak[0], "kept": stats["splits"]["train_full"]["clicks"] + stats["splits"]["test"]["clicks"]}


def row(label: str, events: int, path: Path, engine: str, r: dict) -> str:
    return (f"| {label} | {events:,} | {path.stat().st_size / 1e9:.2f} GB | {engine} | {r['wall']:.1f} s | "
            f"{r['cpu']:.1f} s | {r['rss'] / 1e9:.2f} GB | {r['spill'] / 1e9:.2f} GB | {events / r['wall']:,.0f} | "
            f"{r['kept']:,} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--otto", default="100000000,200000000,300000000", help="OTTO-shaped sizes, comma-separated")
    p.add_argument("--yoochoose", type=int, default=YOOCHOOSE_CLICKS, help="YooChoose-shaped clicks (0: none)")
    p.add_argument("--keep", action="store_true", help="keep the OTTO files of 100 M events or more")
    p.add_argument("--memory-limit", default="3GiB", help="DuckDB's memory_limit for every run (the same limit for "
                   "all sizes; empty: the engine's default, a quarter of the memory available at each start)")
    a = p.parse_args()
    if a.memory_limit:
        os.environ[MEMORY_LIMIT_ENV] = a.memory_limit
    print(f"{os.cpu_count()} CPUs; DuckDB memory_limit {a.memory_limit or 'default'}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(HEADER, flush=True)
    rows = []
    # the largest first, so that the disk holds one big OTTO file at a time (each is removed once measured)
    for events in sorted((int(n) for n in a.otto.split(",") if n.strip()), reverse=True):
        path = otto_file(events)
        rows.append((0, events, row("OTTO-shaped JSON lines", events, path, "duckdb", run(path, "otto", "duckdb"))))
        print(rows[-1][2], flush=True)
        if not a.keep and events >= 100_000_000:
            path.unlink()
    if a.yoochoose:
        path = generated_clicks(a.yoochoose)
        for k, engine in enumerate(("memory", "duckdb")):
            result = run(path, "yoochoose", engine)
            rows.append((1 + k, a.yoochoose, row("YooChoose-shaped clicks", a.yoochoose, path, engine, result)))
            print(rows[-1][2], flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; by size:\n\n{HEADER}")
    print("\n".join(text for _, _, text in sorted(rows)))


if __name__ == "__main__":
    main()
