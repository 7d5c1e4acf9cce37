"""Preprocess a generated file of full YooChoose size (33 M clicks) and print clicks/s, wall time, peak RSS.

    python benchmarks/bench_preprocess.py [--clicks 33003944]

The generated file is cached under benchmarks/.cache. The step runs in a child process (the real
``steps/preprocess.py`` entry point, MLflow logging included) so its peak memory is measured alone.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqrec.data.synthetic import YOOCHOOSE_CLICKS, SyntheticConfig, generate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clicks", type=int, default=YOOCHOOSE_CLICKS)
    a = p.parse_args()
    cache = ROOT / "benchmarks" / ".cache" / f"synthetic-{a.clicks}"
    if not (cache / "clicks.dat").exists():
        started = time.perf_counter()
        generate(cache, SyntheticConfig(n_clicks=a.clicks, seed=0))
        print(f"generated {a.clicks:,} clicks in {time.perf_counter() - started:.1f} s")
    size_gb = (cache / "clicks.dat").stat().st_size / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        cmd = [sys.executable, str(ROOT / "steps" / "preprocess.py"), "--clicks", str(cache / "clicks.dat"),
               "--out", f"{tmp}/processed"]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=tmp)
        wall = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    print(f"preprocess: {a.clicks:,} clicks ({size_gb:.2f} GB) in {wall:.1f} s wall, "
          f"{a.clicks / wall:,.0f} clicks/s, peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
