"""benchmarks/seed_summary.py: one-seed runs trained side by side, summarised as an N-seed run would be."""

import importlib.util
from pathlib import Path

import mlflow
import pytest

from seqrec import tracking

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("best_val_mrr_at_20", "test_recall_at_10", "test_mrr_at_10", "test_recall_at_20", "test_mrr_at_20")


def seed_summary():
    spec = importlib.util.spec_from_file_location("seed_summary", ROOT / "benchmarks" / "seed_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_seed_run(seed: int, value: float, preset: str, hidden: int = 64) -> None:
    mlflow.set_experiment(tracking.EXPERIMENT)
    tags = {tracking.TAG_MODEL: "bert4rec", tracking.TAG_PRESET: preset, tracking.TAG_DATASET: "summary-data"}
    with mlflow.start_run(tags=tags):
        mlflow.log_params({"seeds": 1, "train.seed": seed, "train.threads": 1 + seed, "model.hidden": hidden,
                           "params": f"seed={seed}"})
        mlflow.log_metrics(dict.fromkeys(METRICS, value))


def test_prints_each_seed_and_the_mean_and_sample_std_of_the_newest_runs(capsys):
    one_seed_run(0, 0.9, "summary")  # replaced by the newer run of seed 0
    for seed, value in enumerate((0.1, 0.2, 0.3)):
        one_seed_run(seed, value, "summary")
    assert seed_summary().main(["--model", "bert4rec", "--preset", "summary", "--dataset", "summary-data"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and lines[2].startswith("| 0 |") and "0.1000" in lines[2] and "0.9000" not in lines[2]
    assert lines[-1].startswith("| mean ± std |") and lines[-1].count("0.2000 ± 0.1000") == len(METRICS)


def test_refuses_runs_whose_settings_differ_in_more_than_the_seed():
    one_seed_run(0, 0.1, "differ")
    one_seed_run(1, 0.2, "differ", hidden=128)
    with pytest.raises(SystemExit, match="model.hidden"):
        seed_summary().main(["--model", "bert4rec", "--preset", "differ", "--dataset", "summary-data",
                             "--seeds", "0,1"])


def test_names_the_seed_without_a_finished_run():
    one_seed_run(0, 0.1, "missing")
    with pytest.raises(SystemExit, match="seed=5"):
        seed_summary().main(["--model", "bert4rec", "--preset", "missing", "--dataset", "summary-data",
                             "--seeds", "0,5"])
