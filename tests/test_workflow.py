from pathlib import Path

import mlflow
import pytest

from seqrec.data.dataset import ProcessedDataset
from seqrec.workflow.baseline import run_baseline
from seqrec.workflow.evaluate import run_evaluate
from seqrec.workflow.main import MainParams, run_main
from seqrec.workflow.register import RegisterError, run_register


@pytest.fixture(scope="module")
def experiment_runs(processed):
    """Two baseline runs in the experiment (SR validates far better than POP)."""
    return {name: run_baseline(str(processed), name)[0] for name in ("pop", "sr")}


def make_dataset(tmp_path_factory, seed: int):
    """A small generated dataset of its own seed: its own item vocabulary and data digest."""
    from seqrec.data.preprocess import PreprocessConfig, preprocess
    from seqrec.data.readers import read_clicks
    from seqrec.data.synthetic import SyntheticConfig, generate

    clicks, _ = generate(tmp_path_factory.mktemp(f"raw-{seed}"), SyntheticConfig(n_clicks=12_000, seed=seed))
    out = tmp_path_factory.mktemp(f"proc-{seed}") / f"generated-{seed}"
    preprocess(read_clicks(clicks), out, PreprocessConfig(), f"generated-{seed}", {"path": str(clicks)})
    return out


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory, 11)


def best_metric_on(data_dir, metric="best_val_mrr_at_20") -> float:
    """The highest ``metric`` among the finished training runs on ``data_dir``'s dataset."""
    digest = ProcessedDataset.load(data_dir).digest
    runs = mlflow.search_runs(experiment_names=["seqrec"], output_format="list",
                              filter_string=f"tags.`seqrec.data_digest` = '{digest}' and "
                                            "tags.`seqrec.step` LIKE 'train_%' and attributes.status = 'FINISHED'")
    return max(r.data.metrics[metric] for r in runs if metric in r.data.metrics)  # basket runs have none


def champion_metric(name, metric="best_val_mrr_at_20") -> float:
    champion = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    return mlflow.get_run(champion.run_id).data.metrics[metric]


def test_training_runs_log_a_logged_model_with_linked_metrics_and_inputs(experiment_runs, processed):
    run = mlflow.get_run(experiment_runs["sr"])
    model_id = run.outputs.model_outputs[0].model_id
    model = mlflow.MlflowClient().get_logged_model(model_id)
    assert model.source_run_id == run.info.run_id and model.name == "model"
    linked = {m.key for m in model.metrics}
    assert {"best_val_mrr_at_20", "best_val_recall_at_20", "best_val_mrr_at_10", "best_val_recall_at_10",
            "test_recall_at_20", "test_mrr_at_20"} <= linked
    assert model.tags["seqrec.model"] == "sr"
    assert model.tags["seqrec.data_digest"] == run.data.tags["seqrec.data_digest"]
    assert run.data.metrics["best_val_mrr_at_20"] == run.data.metrics["val_mrr_at_20"]  # one fit, one selection
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"train_tr", "valid", "train_full", "test"}
    found = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                        filter_string="tags.`seqrec.model` = 'sr'")
    assert model_id in {m.model_id for m in found}


def test_register_picks_the_best_validation_model_of_the_dataset_and_is_idempotent(experiment_runs, processed):
    decision = run_register(str(processed), name="seqrec-test")
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("seqrec-test", "champion")
    assert decision["changed"] and champion.run_id == decision["run_id"]
    assert champion_metric("seqrec-test") == best_metric_on(processed)
    assert champion.source == f"models:/{decision['model_id']}"
    assert champion.tags["selection_metric"] == "best_val_mrr_at_20"
    assert "best_val_mrr_at_20" in champion.description and champion.tags["seqrec.model"] in champion.description
    again = run_register(str(processed), name="seqrec-test")
    assert not again["changed"] and again["version"] == champion.version
    assert len(client.search_model_versions("name='seqrec-test'")) == 1
    with pytest.raises(ValueError, match="validation metric"):
        run_register(str(processed), "test_recall_at_20", name="seqrec-test")


def test_register_never_mixes_datasets_and_moves_the_alias_to_a_better_model(tmp_path_factory):
    name = "seqrec-two-datasets"
    data_a, data_b = make_dataset(tmp_path_factory, 21), make_dataset(tmp_path_factory, 22)
    client = mlflow.MlflowClient()
    b_sr = run_baseline(str(data_b), "sr")[0]
    run_register(str(data_b), name=name)
    assert client.get_model_version_by_alias(name, "champion").run_id == b_sr
    a_pop = run_baseline(str(data_a), "pop")[0]  # the newest training run is now on dataset A
    with pytest.raises(RegisterError, match="not compared"):
        run_register("", name=name)  # default dataset: the newest run's (A); the champion is B's
    assert client.get_model_version_by_alias(name, "champion").run_id == b_sr
    forced = run_register(str(data_a), name=name, force=True)
    champion = client.get_model_version_by_alias(name, "champion")
    assert forced["changed"] and champion.run_id == a_pop
    assert champion.tags["seqrec.data_digest"] == ProcessedDataset.load(data_a).digest
    a_sr = run_baseline(str(data_a), "sr")[0]  # a better model of A appears later
    metric = {r: mlflow.get_run(r).data.metrics["best_val_mrr_at_20"] for r in (a_pop, a_sr, b_sr)}
    assert metric[a_sr] > metric[a_pop]
    decision = run_register(str(data_a), name=name)
    assert decision["changed"] and client.get_model_version_by_alias(name, "champion").run_id == a_sr
    assert decision["best_val_mrr_at_20"] == pytest.approx(metric[a_sr])
    assert not run_register(str(data_a), name=name)["changed"]


def test_evaluate_logs_test_metrics_linked_to_the_model(experiment_runs, processed):
    run_id = experiment_runs["sr"]
    eval_id, metrics = run_evaluate(str(processed), f"runs:/{run_id}/model")
    run = mlflow.get_run(eval_id)
    assert run.data.tags["seqrec.evaluated_run_id"] == run_id
    trained = mlflow.get_run(run_id).data.metrics
    assert metrics["test_recall_at_20"] == pytest.approx(trained["test_recall_at_20"])
    assert run.data.metrics["test_predictions"] == trained["test_predictions"]
    assert metrics["known_test_clicks_share"] == 1.0
    assert {i.tags[0].value for i in run.inputs.dataset_inputs} == {"test"}


@pytest.mark.parametrize("form", ["alias", "version", "latest", "model_id"])
def test_evaluate_resolves_every_model_uri(experiment_runs, processed, form):
    decision = run_register(str(processed), name="seqrec-test")
    uri = {"alias": "models:/seqrec-test@champion", "version": f"models:/seqrec-test/{decision['version']}",
           "latest": "models:/seqrec-test/latest", "model_id": f"models:/{decision['model_id']}"}[form]
    eval_id, metrics = run_evaluate(str(processed), uri)
    assert mlflow.get_run(eval_id).data.tags["seqrec.evaluated_run_id"] == decision["run_id"]
    assert 0 < metrics["test_recall_at_20"] <= 1


@pytest.mark.parametrize("model", ["vstan", "sr", "pop"])
def test_evaluate_on_data_the_model_does_not_know_reports_coverage_instead_of_crashing(
        processed, other_dataset, model, capsys):
    run_id = run_baseline(str(processed), model)[0]
    _, metrics = run_evaluate(str(other_dataset), f"runs:/{run_id}/model")
    assert 0 <= metrics["known_test_clicks_share"] < 0.5
    assert 0 <= metrics["test_recall_at_20"] <= 1
    assert "WARNING" in capsys.readouterr().err


def test_main_refuses_a_bad_neural_override_before_any_step_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = mlflow.search_runs(search_all_experiments=True)
    params = MainParams(synthetic_clicks=15_000, models="pop,sasrec", neural_overrides={"dropout": "x"})
    with pytest.raises(ValueError, match=r"sasrec: dropout='x' \(str\) is not a float"):
        run_main(params)
    assert len(mlflow.search_runs(search_all_experiments=True)) == len(before)


def test_main_runs_nested_steps_compares_and_reuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQREC_CHECKPOINTS", str(tmp_path / "ck"))
    params = MainParams(synthetic_clicks=15_000, seed=3, epochs=1, models="pop,sr,sasrec",
                        neural_overrides={"hidden": 16, "layers": 1, "progress": False})
    first = run_main(params)
    parent = mlflow.last_active_run()
    assert parent.data.tags["seqrec.step"] == "main"
    children = mlflow.search_runs(experiment_names=["seqrec"],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    steps = set(children["tags.seqrec.step"])
    assert {"preprocess", "eda", "train_baseline", "train_sasrec"} <= steps
    rows = {r["model"]: r for r in first["comparison"]}
    assert set(rows) == {"pop", "sr", "sasrec"}
    assert rows["sr"]["test_recall_at_20"] > rows["pop"]["test_recall_at_20"]  # sequence beats popularity
    # the champion is the best model of this dataset by the selection metric
    best = max(r["best_val_mrr_at_20"] for r in first["comparison"])
    assert first["register"]["best_val_mrr_at_20"] == pytest.approx(best)
    assert parent.data.metrics["best_val_mrr_at_20"] == pytest.approx(best)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"comparison.md", "comparison.png", "comparison.json"} <= artifacts
    models = mlflow.search_logged_models(experiment_ids=[parent.info.experiment_id], output_format="list",
                                         filter_string=f"source_run_id IN {tuple(r['run_id'] for r in rows.values())}")
    assert len(models) == 3 and all({"best_val_mrr_at_20", "test_mrr_at_20"} <= {m.key for m in lm.metrics}
                                    for lm in models)
    experiment = mlflow.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    second = run_main(params)
    assert second["runs"] == first["runs"]  # every step reused
    parent2 = mlflow.last_active_run()
    pointers = mlflow.search_runs(experiment_names=["seqrec"], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{parent2.info.run_id}'")
    reused = {p.data.tags.get("seqrec.reused_run_id") for p in pointers}
    assert set(first["runs"].values()) <= reused


def test_main_with_seeds_shows_mean_and_spread_and_tests_the_best_against_the_runner_up(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQREC_CHECKPOINTS", str(tmp_path / "ck"))
    params = MainParams(synthetic_clicks=15_000, seed=4, epochs=1, models="pop,sasrec", seeds=2,
                        neural_overrides={"hidden": 16, "layers": 1, "progress": False})
    result = run_main(params)
    rows = {r["model"]: r for r in result["comparison"]}
    assert rows["sasrec"]["seeds"] == 2 and rows["sasrec"]["test_mrr_at_20_std"] > 0  # two seeds differ
    assert rows["pop"]["test_mrr_at_20_std"] == 0  # deterministic
    parent = mlflow.last_active_run()
    table = Path(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="comparison.md",
                                                     dst_path=str(tmp_path))).read_text()
    sasrec_line = next(line for line in table.splitlines() if line.startswith("| sasrec"))
    assert " ± " in sasrec_line and "| 2 |" in sasrec_line
    assert "paired bootstrap" in table and "p = " in table
    assert "significance_p_mrr_at_20" in parent.data.metrics
