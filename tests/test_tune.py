"""Tuning inside MLflow (Optuna studies, trials as nested runs, pruning, resuming), results over seeds, the
paired significance test, and popularity counted per phase (no valid click in selection)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import torch
import yaml

from seqrec import tuning
from seqrec.checkpoints import Checkpointer
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_clicks
from seqrec.data.synthetic import SyntheticConfig, generate
from seqrec.models import presets, registry
from seqrec.models.meanemb import MeanEmb
from seqrec.significance import compare_ranks, paired_bootstrap
from seqrec.train_config import TrainConfig, split_overrides
from seqrec.trainer import Trainer
from seqrec.workflow import tune as tune_workflow
from seqrec.workflow.main import best_against_runner_up, comparison_markdown, comparison_rows
from seqrec.workflow.tune import TuneParams, run_tune

ROOT = Path(__file__).resolve().parents[1]
FAST = {"threads": 1, "progress": False, "eval_batch_size": 256}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A 6,000-click generated dataset: trials of a tiny model take a fraction of a second per epoch."""
    root = tmp_path_factory.mktemp("tune-data")
    clicks, _ = generate(root / "raw", SyntheticConfig(n_clicks=6000, seed=3))
    preprocess(read_clicks(clicks), root / "small", PreprocessConfig(), "small", {"path": str(clicks)})
    return root / "small"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Studies, checkpoints and tuned presets in a throw-away folder."""
    root = tmp_path_factory.mktemp("tune-env")
    patch = pytest.MonkeyPatch()
    patch.setattr(tuning, "STUDY_ROOT", root / "studies")
    patch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", root / "checkpoints")
    patch.setattr(presets, "TUNED_FILE", root / "tuned_presets.json")
    yield root
    patch.undo()
    presets.PRESETS["meanemb"].pop("tuned-test", None)


def _children(parent_id: str) -> list:
    exp = mlflow.get_experiment_by_name("seqrec")
    return mlflow.MlflowClient().search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")


@pytest.fixture(scope="module")
def tuned(small, env):
    """A 3-trial MeanEmb study capped at 3 epochs: two good learning rates, then a hopeless one (enqueued, so
    the test does not depend on the sampler); the final run with 2 seeds; the setting written as a preset."""
    data = ProcessedDataset.load(small)
    identity = {"model": "meanemb", "preset": "tiny", "data_digest": data.digest, "metric": "val_mrr_at_20"}
    study = tuning.open_study("meanemb-s", identity)
    for lr in (1e-2, 2e-2, 1e-9):
        study.enqueue_trial({"lr": lr, "hidden": 16})
    params = TuneParams("meanemb", str(small), "tiny", epochs=3, trials=3, study="meanemb-s", seeds=2,
                        space="lr=loguniform:1e-9:1e-1,hidden=choice:16:32", params=dict(FAST),
                        write_preset="tuned-test")
    return run_tune(params)


def test_a_three_trial_study_logs_nested_trials_best_params_plots_and_table(tuned):
    client = mlflow.MlflowClient()
    parent = client.get_run(tuned["run_id"])
    assert parent.data.tags["seqrec.step"] == "tune" and parent.data.tags["seqrec.study"] == "meanemb-s"
    children = _children(tuned["run_id"])
    trials = sorted((r for r in children if r.data.tags["seqrec.step"] == "tune_trial"),
                    key=lambda r: int(r.data.tags["seqrec.trial"]))
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
    for trial in trials:  # selection only: per-epoch valid curves and best_val_*, never a test metric
        assert not any(k.startswith("test_") for k in trial.data.metrics)
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_mrr_at_20")][0] == 1
        assert trial.data.params["hidden"] == "16"
    assert "best_val_mrr_at_20" in trials[0].data.metrics and "best_val_mrr_at_20" in trials[1].data.metrics
    assert tuned["best"]["lr"] in (1e-2, 2e-2)
    assert float(parent.data.params["best.lr"]) == tuned["best"]["lr"]
    assert parent.data.metrics["trials_total"] == 3
    artifacts = {a.path for a in client.list_artifacts(tuned["run_id"])}
    assert {"trials.json", "best_params.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(tuned["run_id"], "plots")}
    assert plots == {"plots/optimization_history.png", "plots/param_importances.png"}
    table = mlflow.load_table("trials.json", run_ids=[tuned["run_id"]])
    assert sorted(table["trial"]) == [0, 1, 2] and set(table["run_id"]) == {r.info.run_id for r in trials}
    final = [r for r in children if r.data.tags["seqrec.step"] == "train_meanemb"]
    assert len(final) == 1 and final[0].info.run_id == tuned["final_run_id"]


def test_the_hopeless_trial_is_pruned_and_its_run_says_so(tuned):
    trials = {int(r.data.tags["seqrec.trial"]): r for r in _children(tuned["run_id"]) if "seqrec.trial" in r.data.tags}
    assert [trials[i].data.tags["seqrec.trial_state"] for i in range(3)] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert tuned["trials"]["trials_pruned"] == 1 and tuned["trials"]["trials_complete"] == 2
    history = mlflow.MlflowClient().get_metric_history(trials[2].info.run_id, "val_mrr_at_20")
    assert [m.step for m in history] == [1]  # stopped after its first epoch


def test_the_pruning_callback_prunes_a_trial_below_the_median():
    study = optuna.create_study(direction="maximize", pruner=tuning.make_pruner(startup_trials=2, warmup_epochs=1))
    for value in (0.30, 0.32):
        trial = study.ask()
        for epoch in (1, 2):
            trial.report(value, epoch)
        study.tell(trial, value)
    good, bad = study.ask(), study.ask()
    tuning.pruning_callback(good, "val_mrr_at_20")("select", 1, {"val_mrr_at_20": 0.35})
    tuning.pruning_callback(bad, "val_mrr_at_20")("refit", 1, {"refit_train_loss": 9.0})  # refit: not reported
    with pytest.raises(optuna.TrialPruned):
        tuning.pruning_callback(bad, "val_mrr_at_20")("select", 1, {"val_mrr_at_20": 0.01})


def test_the_final_run_with_two_seeds_logs_each_seed_their_mean_std_and_ranks(tuned, small):
    run = mlflow.get_run(tuned["final_run_id"])
    m = run.data.metrics
    seeds = [m["test_recall_at_20_seed1"], m["test_recall_at_20_seed2"]]
    assert m["test_recall_at_20_mean"] == pytest.approx(np.mean(seeds))
    assert m["test_recall_at_20_std"] == pytest.approx(np.std(seeds, ddof=1))
    assert m["test_recall_at_20"] == pytest.approx(m["test_recall_at_20_mean"])  # plain name = the mean
    assert {"best_val_mrr_at_20_mean", "best_val_mrr_at_20_std", "train_seconds_std"} <= set(m)
    assert run.data.params["seeds"] == "2"
    path = mlflow.artifacts.download_artifacts(run_id=tuned["final_run_id"], artifact_path="test_ranks.npy")
    ranks = np.load(path)
    test = ProcessedDataset.load(small).split("test")
    assert ranks.dtype == np.int32 and ranks.shape == (2, test.n_predictions)
    assert (ranks >= 1).all()
    assert np.mean(ranks[0] <= 20) == pytest.approx(seeds[0])  # the ranks are the metrics' own
    # the second seed logs its curves under suffixed names, the first under the protocol's
    assert "val_mrr_at_20_seed2" in m and "val_mrr_at_20" in m


def test_the_best_setting_is_written_as_a_preset_that_trains_like_any(tuned, env):
    stored = json.loads((env / "tuned_presets.json").read_text())["meanemb"]["tuned-test"]
    assert stored["train"]["lr"] == tuned["best"]["lr"] and stored["model"]["hidden"] == 16
    assert stored["train"]["epochs"] == 3  # the study's epoch cap is part of the setting it chose (tiny: 2)
    assert "threads" not in stored["train"]  # runtime switches are no part of a preset
    model_cfg, train_cfg, _ = split_overrides("meanemb", "tuned-test", {})
    assert model_cfg.hidden == 16 and train_cfg.lr == tuned["best"]["lr"]
    with pytest.raises(ValueError, match="built-in preset"):
        tuning.save_preset("meanemb", "tiny", "tiny", {"lr": 0.1})


def test_a_study_continued_later_adds_trials_and_the_counts_add_up(tuned, small, env):
    again = run_tune(TuneParams("meanemb", str(small), "tiny", epochs=1, trials=1, study="meanemb-s",
                                space="lr=loguniform:1e-9:1e-1,hidden=choice:16:32", params=dict(FAST)))
    assert again["trials"]["trials_total"] == 4 and again["trials"]["trials_added"] == 1
    assert len([r for r in _children(again["run_id"]) if "seqrec.trial" in r.data.tags]) == 1
    with pytest.raises(ValueError, match="was made for"):  # a study never mixes models
        run_tune(TuneParams("sr", str(small), trials=1, study="meanemb-s"))


def test_an_interrupted_study_resumes_where_it_stopped(small, env, monkeypatch):
    calls = {"n": 0}
    suggest = tuning.suggest

    def interrupted(trial, space):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the second trial
        return suggest(trial, space)

    monkeypatch.setattr(tune_workflow.tuning, "suggest", interrupted)
    params = TuneParams("sr", str(small), trials=3, study="sr-killed", seeds=2)
    with pytest.raises(KeyboardInterrupt):
        run_tune(params)
    monkeypatch.setattr(tune_workflow.tuning, "suggest", suggest)
    resumed = run_tune(TuneParams("sr", str(small), trials=2, study="sr-killed", seeds=2))
    states = [t.state for t in optuna.load_study(study_name="sr-killed",
                                                 storage=f"sqlite:///{tuning.study_path('sr-killed')}").trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and states.count(optuna.trial.TrialState.FAIL) == 1
    assert resumed["trials"]["trials_total"] == 4 and resumed["trials"]["trials_added"] == 2
    final = mlflow.get_run(resumed["final_run_id"]).data.metrics  # baselines: deterministic, std 0
    assert final["test_recall_at_20_std"] == 0.0 and final["test_recall_at_20_mean"] == final["test_recall_at_20"]


def test_parallel_trials_each_log_their_own_nested_run(small, env):
    out = run_tune(TuneParams("meanemb", str(small), "tiny", epochs=2, trials=4, jobs=2, study="meanemb-jobs",
                              space="lr=loguniform:1e-3:1e-1,hidden=choice:16:32", params=dict(FAST)))
    assert out["trials"]["trials_added"] == 4 and out["trials"]["trials_fail"] == 0
    trials = [r for r in _children(out["run_id"]) if "seqrec.trial" in r.data.tags]
    assert sorted(int(r.data.tags["seqrec.trial"]) for r in trials) == [0, 1, 2, 3]
    client = mlflow.MlflowClient()
    study = optuna.load_study(study_name="meanemb-jobs", storage=f"sqlite:///{tuning.study_path('meanemb-jobs')}")
    proposed = {t.params["lr"] for t in study.trials}
    for run in trials:  # each thread's curves landed in its own trial's run
        history = client.get_metric_history(run.info.run_id, "val_mrr_at_20")
        assert [m.step for m in history] in ([1], [1, 2])
        assert float(run.data.params["lr"]) in proposed


def test_search_spaces_parse_override_and_refuse_bad_text():
    space = tuning.search_space("sasrec", "lr=loguniform:1e-4:1e-2,hidden=choice:64:128,layers=int:1:2",
                                fixed={"dropout": 0.3})
    assert space["lr"] == tuning.Dimension("loguniform", (1e-4, 1e-2))
    assert space["hidden"].values == (64, 128) and space["layers"] == tuning.Dimension("int", (1, 2))
    assert "dropout" not in space and "emb_dropout" in space  # fixed leaves the space, defaults stay
    for bad, why in (("lr=normal:0:1", "unknown kind"), ("lr=loguniform:0:1", "LOW > 0"),
                     ("layers=int:1.5:3", "two int bounds"), ("lr", "not name=kind"), ("x=choice", "at least one")):
        with pytest.raises(ValueError, match=why):
            tuning.parse_space(bad)
    with pytest.raises(ValueError, match="nothing to search"):
        tuning.search_space("pop")
    with pytest.raises(ValueError, match="unknown parameter"):  # refused before a study is opened
        run_tune(TuneParams("meanemb", "unused", "tiny", space="widht=choice:1:2"))


def test_significance_of_identical_and_of_clearly_better_ranks():
    rng = np.random.default_rng(0)
    ranks = rng.integers(1, 60, size=2000)
    same = compare_ranks(ranks, ranks.copy(), resamples=500)
    assert [r.p_value for r in same] == [1.0, 1.0] and all(r.difference == 0 for r in same)
    better = np.maximum(1, ranks // 3)
    results = {r.metric: r for r in compare_ranks(better, ranks, resamples=500)}
    assert results["mrr_at_20"].difference > 0 and results["mrr_at_20"].p_value < 0.01
    assert results["recall_at_20"].p_value < 0.01
    noise = rng.integers(1, 60, size=2000)  # two unrelated draws of the same model: no evidence
    assert paired_bootstrap(1.0 / ranks, 1.0 / noise, resamples=500) > 0.01
    two_seeds = np.stack([better, better])  # seeds are averaged per prediction first
    assert compare_ranks(two_seeds, ranks, resamples=200)[0].mean_a == pytest.approx(results["mrr_at_20"].mean_a)
    with pytest.raises(ValueError, match="different test splits"):
        compare_ranks(ranks, ranks[:10])


def test_main_compares_with_mean_std_and_tests_the_best_against_the_runner_up(tuned, small, env):
    baseline = run_tune(TuneParams("sr", str(small), trials=1, study="sr-compare"))
    rows = comparison_rows([tuned["final_run_id"], baseline["final_run_id"]])
    significance = best_against_runner_up(rows, resamples=300)
    assert significance is not None and significance["predictions"] > 0
    assert {r["metric"] for r in significance["results"]} == {"mrr_at_20", "recall_at_20"}
    assert all(0 < r["p_value"] <= 1 for r in significance["results"])
    table = comparison_markdown(rows, None, significance)
    meanemb_row = next(line for line in table.splitlines() if line.startswith("| meanemb"))
    sr_row = next(line for line in table.splitlines() if line.startswith("| sr"))
    assert "±" in meanemb_row and "±" not in sr_row  # two seeds against one
    assert "paired bootstrap" in table and "p = " in table


def test_selection_popularity_ignores_valid_and_the_refit_counts_train_full(tiny, tmp_path):
    preprocess(read_clicks(tiny), tmp_path / "d", PreprocessConfig(min_item_support=2), "tiny", {"path": str(tiny)})
    data = ProcessedDataset.load(tmp_path / "d")
    seen = []

    def build(popularity: torch.Tensor) -> MeanEmb:
        seen.append(popularity.clone())
        return registry.build_model("meanemb", data.n_items, {"hidden": 8}, popularity)

    Trainer(build, data, TrainConfig(epochs=1, patience=1, batch_size=4), Checkpointer(tmp_path / "ck"),
            runtime=split_overrides("meanemb", "tiny", FAST)[2]).run()
    # item 4 is clicked in train_tr never, in a valid-day session once: selection must not know it
    assert seen[0].tolist() == [0, 2, 2, 2, 0]
    assert seen[1].tolist() == [0, 3, 3, 3, 1] == data.popularity.tolist()  # what serving ranks empty sessions by


def test_mlproject_has_tune_and_seeds_on_every_training_entry_point():
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    tune = entry_points["tune"]
    assert {"model", "data", "preset", "epochs", "trials", "timeout", "study", "seeds"} <= set(tune["parameters"])
    assert "steps.tune" in tune["command"]
    for name in ("train_baseline", "train_gru", "train_sasrec", "train_bert4rec"):
        assert entry_points[name]["parameters"]["seeds"]["default"] == 1
        assert "--seeds {seeds}" in entry_points[name]["command"]
    assert not (ROOT / "benchmarks" / "tune.py").exists()


def test_a_setting_tuned_from_preset_auto_is_written_as_auto_sized_it_for_the_study_data(env):
    """``tune -P preset=auto -P write_preset=NAME``: the preset written is auto's choice for that dataset (not the
    model's ``default``) with the study's best values on top."""
    from seqrec.models.auto_preset import DataShape
    from seqrec.train_config import auto_choice

    shape = DataShape(items=900, clicks=6_000, sessions=1_500, p99_length=15)  # small: auto narrows SASRec
    try:
        tuning.save_preset("sasrec", "tuned-auto-test", "auto", {"lr": 0.004, "threads": 1}, shape)
        stored = json.loads((env / "tuned_presets.json").read_text())["sasrec"]["tuned-auto-test"]
        choice = auto_choice("sasrec", shape)
        assert stored["model"]["hidden"] == choice.model_fields["hidden"] == 64
        assert stored["train"]["batch_size"] == choice.train_fields["batch_size"] and stored["train"]["lr"] == 0.004
        assert "threads" not in stored["train"]
    finally:
        presets.PRESETS["sasrec"].pop("tuned-auto-test", None)


def test_a_study_with_fuse_scores_each_trial_fused_and_its_final_run_is_fused(small, env):
    out = run_tune(TuneParams("meanemb", str(small), "tiny", epochs=2, trials=1, study="meanemb-fused",
                              space="lr=loguniform:1e-2:2e-2", params={**FAST, "fuse": "vstan"}))
    (trial,) = [r for r in _children(out["run_id"]) if "seqrec.trial" in r.data.tags]
    network_best = max(m.value for m in mlflow.MlflowClient().get_metric_history(trial.info.run_id, "val_mrr_at_20"))
    # the trial's value is the fused model's valid MRR@20, where share 0 (the network alone) is one choice
    assert out["best_value"] >= network_best
    final = mlflow.get_run(out["final_run_id"])
    assert final.data.tags["seqrec.fused"] == "vstan" and "fusion_weight" in final.data.metrics
    # the final run repeats the trial's selection (same seed and settings): the same fused valid figure
    assert out["best_value"] == pytest.approx(final.data.metrics["best_val_mrr_at_20"], abs=1e-12)
    assert out["best_value"] > network_best  # V-STAN's share lifts this under-trained network on valid
