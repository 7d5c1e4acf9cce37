"""Stress test of two-process (DDP, gloo) training: N launches per neural model, and the crash count.

Each launch is ``torchrun --standalone --nproc_per_node=2 -m seqrec.train`` with the tiny preset on a
small generated dataset, in its own checkpoint directory and MLflow store. A launch that exits non-zero
is a crash; the script prints each model's crash count and the exit codes and stderr tails of crashes
(a native abort shows as ``exitcode: -6``, a segfault as ``exitcode: -11``). It exits 1 if any launch crashed.

    python benchmarks/stress_ddp.py --runs 30
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import generated_clicks, processed

MODELS = ("sasrec", "gru4rec", "bert4rec")


def launch(model: str, data: Path, workdir: Path, epochs: int, seed: int) -> subprocess.CompletedProcess:
    """One two-process training launch in a fresh checkpoint directory and MLflow store."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
           "SEQREC_CHECKPOINTS": str(workdir / "checkpoints")}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(inherited, None)
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "seqrec.train", "--model", model,
           "--data", str(data), "--preset", "tiny", "--epochs", str(epochs), "--progress", "false",
           "--threads", "1", "--seed", str(seed)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="launches per model")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--clicks", type=int, default=20_000, help="size of the generated dataset")
    args = parser.parse_args()

    data = processed(generated_clicks(args.clicks, seed=7), f"stress-{args.clicks}")
    crashed_any = False
    print(f"{'model':10s} {'launches':>8s} {'crashes':>8s} {'s/launch':>9s}  exit codes of crashes")
    for model in args.models.split(","):
        crashes: list[str] = []
        started = time.perf_counter()
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="stress-ddp-") as tmp:
                done = launch(model, data, Path(tmp), args.epochs, seed=i)
            if done.returncode != 0:
                codes = sorted(set(re.findall(r"exitcode\s*:\s*(-?\d+)", done.stderr))) or [str(done.returncode)]
                crashes.append("/".join(codes))
                print(f"--- {model} launch {i + 1} exited {done.returncode}; stderr tail:\n{done.stderr[-1500:]}",
                      file=sys.stderr)
            print(f"\r{model}: {i + 1}/{args.runs} launches, {len(crashes)} crashed", end="", file=sys.stderr)
        print(file=sys.stderr)
        per_launch = (time.perf_counter() - started) / args.runs
        print(f"{model:10s} {args.runs:8d} {len(crashes):8d} {per_launch:9.1f}  {', '.join(crashes) or '-'}")
        crashed_any |= bool(crashes)
    return 1 if crashed_any else 0


if __name__ == "__main__":
    sys.exit(main())
