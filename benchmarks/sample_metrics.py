"""Every model's test metrics on the real sample, through the MLflow entry points, in a throw-away store.

    python benchmarks/sample_metrics.py [--epochs 2] [--models pop,sr,sasrec,...] [--out metrics.json]

Preprocesses ``../shared/data/yoochoose-100k`` (or ``SEQREC_SAMPLE``) with ``mlflow run . -e
preprocess``, trains every baseline with ``train_baseline`` and GRU4Rec, SASRec and BERT4Rec with their
``sample`` presets capped at ``--epochs`` epochs (fixed seeds), and prints a table of test Recall@20,
MRR@20 and the selection metric ``best_val_mrr_at_20``, four decimals. Two runs of the same code give
the same table; a refactoring that claims no change of behaviour must too (``--out`` keeps the
figures as JSON for a diff).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("SEQREC_SAMPLE", ROOT.parent / "shared" / "data" / "yoochoose-100k"))
BASELINES = ("pop", "spop", "itemknn", "ar", "sr", "sknn", "vsknn", "stan", "vstan")
NEURAL = {"gru4rec": "train_gru", "sasrec": "train_sasrec", "bert4rec": "train_bert4rec"}
METRICS = ("best_val_mrr_at_20", "test_recall_at_20", "test_mrr_at_20")


def mlflow_run(entry: str, params: dict, env: dict) -> None:
    cli = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    args = [cli, "run", str(ROOT), "-e", entry, "--env-manager", "local", "--experiment-name", "seqrec"]
    for key, value in params.items():
        args += ["-P", f"{key}={value}"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{entry} {params} failed:\n{proc.stderr[-3000:]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2, help="epoch cap of the neural models")
    p.add_argument("--models", default=",".join((*BASELINES, *NEURAL)))
    p.add_argument("--out", default="", help="write the figures as JSON here")
    a = p.parse_args()
    if not (SAMPLE / "train_full.txt").exists():
        print(f"the real sample is not at {SAMPLE}", file=sys.stderr)
        return 2
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
               "SEQREC_CHECKPOINTS": str(Path(tmp) / "checkpoints"),
               "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
        data = Path(tmp) / "yoochoose-100k"
        mlflow_run("preprocess", {"clicks": f"{SAMPLE / 'train_full.txt'},{SAMPLE / 'test.txt'}",
                                  "min_item_support": 1, "name": "yoochoose-100k", "out": data}, env)
        for model in a.models.split(","):
            started = time.perf_counter()
            if model in NEURAL:
                mlflow_run(NEURAL[model], {"data": data, "preset": "sample", "epochs": a.epochs}, env)
            else:
                mlflow_run("train_baseline", {"data": data, "model": model}, env)
            mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
            run = mlflow.search_runs(experiment_names=["seqrec"], output_format="list", max_results=1,
                                     filter_string=f"tags.`seqrec.model` = '{model}'")[0]
            results[model] = {k: round(run.data.metrics[k], 4) for k in METRICS}
            print(f"{model:9s} " + "  ".join(f"{k} {v:.4f}" for k, v in results[model].items()) +
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
