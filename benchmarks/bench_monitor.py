"""The monitoring loop, end to end: train, replay later clicks day by day through the champion (``monitor``), retrain on
a newer window and let ``register`` decide between the old champion and the new model on the newest test split.

    python benchmarks/bench_monitor.py                        # built-in data (100,000 clicks + 4 later days) and,
                                                              # when present, the real sample
    python benchmarks/bench_monitor.py --clicks 30000 --models pop,sr --no-sample

Built-in data: the champion is trained on the generated dataset, monitored on its later period (4 days: items
released meanwhile, popularity drifting), then the models are retrained on both periods together. Real sample
(``../shared/data/yoochoose-100k``, train_full + test: sessions starting 2014-04-01 .. 2014-04-08): trained on the
sessions that start in the first four days, monitored on the rest, retrained on all of it (minimum item support 1:
the sample was filtered upstream). Every step runs through its entry point (``steps.<name>.main``) in a throw-away
directory and MLflow store; the per-period figures and register's decision are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import SAMPLE

NEURAL = {"gru4rec": ("train_gru", "sample"), "sasrec": ("train_sasrec", "default")}
FIRST_DAYS_END = 1_396_656_000  # 2014-04-05 00:00 UTC: the sample's first four days end here


def step(name: str, argv: list[str], show: tuple[str, ...] = ()) -> list[str]:
    """Run entry point ``name``; its printed lines (those starting with ``show`` are echoed). Fails loudly."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = importlib.import_module(f"steps.{name}").main(argv)
    lines = out.getvalue().splitlines()
    if status != 0:
        sys.exit(f"{name} {' '.join(argv)} failed ({status}):\n{out.getvalue()[-2000:]}\n{err.getvalue()[-2000:]}")
    for line in lines:
        if line.startswith(show):
            print("  " + line)
    return lines


def train(data: str, models: list[str], epochs: int) -> None:
    """Train every model on the processed dataset ``data`` (baselines, or the neural ones of ``NEURAL``)."""
    for model in models:
        if model in NEURAL:
            entry, preset = NEURAL[model]
            step(entry, ["--data", data, "--preset", preset, "--epochs", str(epochs), "--params", "progress=false"],
                 ("train_",))
        else:
            step("train_baseline", ["--data", data, "--model", model], ("train_baseline",))


def loop(label: str, old: list[str], later: str, newer: list[str], models: list[str], epochs: int,
         read: list[str]) -> None:
    """Preprocess ``old`` (preprocess arguments), train, register, monitor ``later`` clicks ("": the built-in later
    period), preprocess ``newer``, retrain, register again; prints what each step decided."""
    print(f"\n== {label}")
    started = time.perf_counter()
    old_dir = step("preprocess", old)[-1].split(" wrote ")[1].split(":")[0]
    print(f"  trained on {old_dir}")
    train(old_dir, models, epochs)
    name = f"bench-{label.split()[0]}"
    step("register", ["--data", old_dir, "--name", name], ("register: registered",))
    monitor = ["--model-uri", f"models:/{name}@champion", "--progress", "false"]
    step("monitor", monitor + (["--clicks", later, *read] if later else []), ("monitor:",))
    new_dir = step("preprocess", newer)[-1].split(" wrote ")[1].split(":")[0]
    print(f"  retrained on {new_dir}")
    train(new_dir, models, epochs)
    step("register", ["--data", new_dir, "--name", name], ("register: registered", "register: kept"))
    print(f"  ({time.perf_counter() - started:.0f} s)")


def sample_windows(folder: Path) -> tuple[Path, Path, Path]:
    """The real sample as three prepared files: sessions starting in its first four days, the rest, and all."""
    import pandas as pd

    clicks = pd.concat([pd.read_csv(SAMPLE / f, sep="\t") for f in ("train_full.txt", "test.txt")])
    first = clicks.groupby("SessionId")["Time"].transform("min") < FIRST_DAYS_END
    paths = folder / "yc-first4.tsv", folder / "yc-last4.tsv", folder / "yc-all.tsv"
    for path, part in zip(paths, (clicks[first], clicks[~first], clicks), strict=True):
        part.to_csv(path, sep="\t", index=False)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clicks", type=int, default=100_000, help="size of the built-in data")
    p.add_argument("--models", default="pop,sr,vsknn", help="models trained each time (baselines, gru4rec, sasrec)")
    p.add_argument("--epochs", type=int, default=3, help="epoch cap of the neural models")
    p.add_argument("--no-sample", action="store_true", help="skip the real sample")
    a = p.parse_args()
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.environ["SEQREC_CHECKPOINTS"] = f"{tmp}/checkpoints"
        os.chdir(tmp)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        base = f"data/raw/synthetic-{a.clicks}-s0"
        loop(f"built-in data, {a.clicks:,} clicks", ["--synthetic-clicks", str(a.clicks)], "",
             ["--clicks", f"{base}/clicks.dat,{base}-later/clicks.dat", "--name", f"synthetic-{a.clicks}-s0-newer"],
             models, a.epochs, [])
        if not a.no_sample and (SAMPLE / "train_full.txt").exists():
            first, last, both = sample_windows(Path(tmp))
            support = ["--min-item-support", "1"]
            loop("yoochoose-100k sample", ["--clicks", str(first), *support], str(last),
                 ["--clicks", str(both), *support], models, a.epochs, [])


if __name__ == "__main__":
    main()
