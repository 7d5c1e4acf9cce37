"""Preprocess a generated click log and print wall time, peak RSS and events/s.

    python benchmarks/bench_preprocess.py                              # raw YooChoose, 33,003,944 clicks
    python benchmarks/bench_preprocess.py --format otto --events 15000000  # OTTO-shaped JSON lines

The generated files are cached under benchmarks/.cache (the OTTO one is converted from a generated
raw file by ``seqrec.data.writers``; every tenth event is a cart, dropped by the default event
filter). The step runs in a child process (the real ``steps/preprocess.py`` entry point, MLflow
logging included) so that its peak memory is measured alone. Events/s counts the events in the file;
the CPU seconds and the load average tell how much a busy machine stretched the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

from _common import CACHE, ROOT, generated_clicks

from seqrec.data.synthetic import YOOCHOOSE_CLICKS
from seqrec.data.writers import convert


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--format", choices=["yoochoose", "otto"], default="yoochoose")
    p.add_argument("--events", "--clicks", type=int, default=YOOCHOOSE_CLICKS, help="events in the generated file")
    p.add_argument("--engine", choices=["memory", "duckdb", "auto"], default="memory",
                   help="the preprocess engine (memory: the numpy path these figures were always taken with; "
                        "benchmarks/bench_outofcore.py times duckdb on logs bigger than memory)")
    a = p.parse_args()
    started = time.perf_counter()
    path = generated_clicks(a.events)
    if a.format == "otto":
        raw = path
        path = CACHE / f"otto-{a.events}.jsonl"
        if not path.exists():
            convert(raw, "otto", path)
    print(f"generated data ready in {time.perf_counter() - started:.1f} s (cached under benchmarks/.cache)")
    size_gb = path.stat().st_size / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        cmd = [sys.executable, str(ROOT / "steps" / "preprocess.py"), "--clicks", str(path), "--format", a.format,
               "--out", f"{tmp}/processed", "--engine", a.engine]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=tmp)
        wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"preprocess {a.format} ({a.engine} engine): {a.events:,} events ({size_gb:.2f} GB) in {wall:.1f} s wall "
          f"({usage.ru_utime + usage.ru_stime:.1f} s CPU), {a.events / wall:,.0f} events/s, "
          f"peak RSS {usage.ru_maxrss / 1e6:.2f} GB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
