"""Mean ± std over seeds of one-seed training runs of the same setting, as ``-P seeds=N`` would log them.

    python benchmarks/seed_summary.py --model bert4rec --preset sample --dataset yoochoose-100k [--seeds 0,1,2]

``-P seeds=N`` trains its seeds one after another in one run. On a machine with spare cores the same
seeds can train side by side as one-seed runs (``-P params=seed=K,threads=1``, K = 0..N-1, which are
exactly the seeds of an N-seed run); this prints, for the newest finished one-seed run of each seed
(model, preset and dataset as given, in the ``seqrec`` experiment of ``MLFLOW_TRACKING_URI``), its
validation MRR@20, test metrics and wall time, then their means ± sample standard deviations. Runs whose
settings differ in anything but the seed are refused.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

import mlflow

from seqrec import tracking
from seqrec.train_config import RuntimeConfig
from seqrec.workflow.report import spread

METRICS = ("best_val_mrr_at_20", "test_recall_at_10", "test_mrr_at_10", "test_recall_at_20", "test_mrr_at_20")
# logged as ``train.*`` but not what makes a run what it is: the runtime switches, and the seed that differs
NOT_SETTINGS = {"train.seed", *(f"train.{f.name}" for f in fields(RuntimeConfig))}


def newest_run(experiment_id: str, model: str, preset: str, dataset: str, seed: int) -> mlflow.entities.Run:
    """The newest finished one-seed run of that model, preset, dataset and seed."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        f"tags.`{tracking.TAG_MODEL}` = '{model}' and tags.`{tracking.TAG_PRESET}` = '{preset}' and "
        f"tags.`{tracking.TAG_DATASET}` = '{dataset}' and params.`train.seed` = '{seed}' and "
        "params.seeds = '1' and attributes.status = 'FINISHED'",
        max_results=1, order_by=["attributes.start_time DESC"])
    if not runs:
        sys.exit(f"no finished one-seed run of {model} preset={preset} dataset={dataset} seed={seed}")
    return runs[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--preset", required=True)
    p.add_argument("--dataset", required=True, help="the processed dataset's name (tag seqrec.dataset)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    args = p.parse_args(argv)
    experiment = mlflow.get_experiment_by_name(tracking.EXPERIMENT)
    if experiment is None:
        sys.exit(f"no experiment {tracking.EXPERIMENT!r} in {mlflow.get_tracking_uri()}")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [newest_run(experiment.experiment_id, args.model, args.preset, args.dataset, s) for s in seeds]
    settings = [{k: v for k, v in r.data.params.items()
                 if k.startswith(("model.", "train.")) and k not in NOT_SETTINGS} for r in runs]
    for seed, run, setting in zip(seeds, runs, settings, strict=True):
        differ = sorted(k for k in set(setting) | set(settings[0]) if setting.get(k) != settings[0].get(k))
        if differ:
            sys.exit(f"run {run.info.run_id} (seed {seed}) differs from seed {seeds[0]}'s in {', '.join(differ)}")
    per_seed = []
    print("| seed | run | " + " | ".join(METRICS) + " | wall min |")
    print("|---" * (len(METRICS) + 3) + "|")
    for seed, run in zip(seeds, runs, strict=True):
        metrics = {k: run.data.metrics[k] for k in METRICS}
        metrics["wall_minutes"] = (run.info.end_time - run.info.start_time) / 60_000
        per_seed.append(metrics)
        print(f"| {seed} | {run.info.run_id} | " + " | ".join(f"{metrics[k]:.4f}" for k in METRICS)
              + f" | {metrics['wall_minutes']:.1f} |")
    summary = spread(per_seed)
    cells = [f"{summary[k]:.4f} ± {summary.get(f'{k}_std', 0.0):.4f}" for k in METRICS]
    print("| mean ± std | | " + " | ".join(cells) + f" | {summary['wall_minutes']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
