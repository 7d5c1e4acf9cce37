"""benchmarks/bench_shapes.py: the best of each family chosen on valid, means over seeds, the verdict per shape."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports benchmarks/_common.py
    try:
        spec = importlib.util.spec_from_file_location("bench_shapes", ROOT / "benchmarks" / "bench_shapes.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _seeds(metric_values: dict[str, list[float]]) -> dict:
    cell = {"seeds": len(next(iter(metric_values.values())))}
    for metric, values in metric_values.items():
        cell[metric] = sum(values) / len(values)
        cell.update({f"{metric}_seed{i}": v for i, v in enumerate(values)})
    return cell


def test_the_best_of_each_family_is_chosen_on_valid_and_compared_on_test(bench):
    cells = {
        "vstan": {"best_val_mrr_at_20": 0.36, "test_recall_at_20": 0.70, "test_mrr_at_20": 0.37, "seeds": 1},
        "stan": {"best_val_mrr_at_20": 0.35, "test_recall_at_20": 0.90, "test_mrr_at_20": 0.50, "seeds": 1},
        "sasrec": _seeds({"best_val_mrr_at_20": [0.37, 0.39, 0.38], "test_recall_at_20": [0.71, 0.72, 0.73],
                          "test_mrr_at_20": [0.36, 0.36, 0.36]}),
        "gru4rec": _seeds({"best_val_mrr_at_20": [0.30], "test_recall_at_20": [0.99], "test_mrr_at_20": [0.99]}),
    }
    assert bench.best(cells, bench.KNN) == "vstan"  # not stan, better on test only
    assert bench.best(cells, bench.SEQUENCE) == "sasrec"
    assert bench.mean_std(cells["sasrec"], "best_val_mrr_at_20") == pytest.approx((0.38, 0.01))
    stats = {"items": 900, "train_clicks": 15_000, "mean_length": 3.9}
    row = bench.table({"s": {"stats": stats, "cells": cells}}).splitlines()[-1]
    assert "| vstan | 0.3600 | 0.7000 | 0.3700 | sasrec (3 seed(s)) | 0.3800 ± 0.0100 | 0.7200 ± 0.0100 |" in row
    assert row.endswith("| - | - | - | - | sasrec: yes, no |")  # no fused cell; Recall@20 0.72 >= 0.70, MRR@20 < 0.37


def test_a_fused_cell_is_its_own_family_and_the_verdict_takes_the_better_neural_one_on_valid(bench):
    cells = {
        "vstan": {"best_val_mrr_at_20": 0.36, "test_recall_at_20": 0.70, "test_mrr_at_20": 0.37, "seeds": 1},
        "gru4rec": _seeds({"best_val_mrr_at_20": [0.37, 0.37], "test_recall_at_20": [0.69, 0.69],
                           "test_mrr_at_20": [0.38, 0.38]}),
        "gru4rec+vstan": _seeds({"best_val_mrr_at_20": [0.39, 0.39], "test_recall_at_20": [0.72, 0.72],
                                 "test_mrr_at_20": [0.36, 0.36]}),
    }
    assert bench.fused(cells) == ("gru4rec+vstan",)
    assert bench.best(cells, bench.SEQUENCE) == "gru4rec"
    stats = {"items": 900, "train_clicks": 15_000, "mean_length": 3.9}
    row = bench.table({"s": {"stats": stats, "cells": cells}}).splitlines()[-1]
    assert "| gru4rec (2 seed(s)) | 0.3700 | 0.6900 | 0.3800 | gru4rec+vstan (2 seed(s)) | 0.3900 |" in row
    assert row.endswith("| gru4rec+vstan: yes, no |")  # chosen by valid, not by its better test MRR@20


def test_a_fused_cell_trains_the_network_with_fuse(bench, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr("seqrec.workflow.neural.run_neural",
                        lambda model, data, preset, overrides, seeds: seen.append((model, preset, overrides)) or
                        ("run", {}))
    monkeypatch.setattr("mlflow.MlflowClient.get_run", lambda self, run_id: type(
        "Run", (), {"data": type("Data", (), {"metrics": {"test_recall_at_20": 0.5}})})())
    cell = bench.run_cell(tmp_path, "sasrec+stan", seeds=3)
    assert seen == [("sasrec", "auto", {"progress": False, "fuse": "stan"})] and cell["test_recall_at_20"] == 0.5


def test_every_shape_is_named_and_an_unknown_one_is_refused(bench, monkeypatch, capsys):
    assert {"yoochoose-sample", "yoochoose-10%", "yoochoose-30%", "built-in-20k", "built-in-100k", "built-in-1m",
            "long-sessions", "large-catalogue"} == set(bench.SHAPES)
    monkeypatch.setattr(sys, "argv", ["bench_shapes.py", "--shapes", "nope"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "unknown shape(s) ['nope']" in capsys.readouterr().err
