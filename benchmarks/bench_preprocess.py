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

from _common import ROOT, generated_clicks

from seqrec.data.synthetic import YOOCHOOSE_CLICKS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clicks", type=int, default=YOOCHOOSE_CLICKS)
    a = p.parse_args()
    started = time.perf_counter()
    clicks = generated_clicks(a.clicks)
    print(f"generated data ready in {time.perf_counter() - started:.1f} s (cached under benchmarks/.cache)")
    size_gb = clicks.stat().st_size / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        cmd = [sys.executable, str(ROOT / "steps" / "preprocess.py"), "--clicks", str(clicks),
               "--out", f"{tmp}/processed"]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=tmp)
        wall = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    print(f"preprocess: {a.clicks:,} clicks ({size_gb:.2f} GB) in {wall:.1f} s wall, "
          f"{a.clicks / wall:,.0f} clicks/s, peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
