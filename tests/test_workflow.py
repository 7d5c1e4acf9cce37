import mlflow
import pytest

from seqrec.workflow.baseline import run_baseline
from seqrec.workflow.evaluate import run_evaluate
from seqrec.workflow.main import MainParams, run_main
from seqrec.workflow.register import run_register


@pytest.fixture(scope="module")
def experiment_runs(processed):
    """Two baseline runs in the experiment (SR validates far better than POP)."""
    return {name: run_baseline(str(processed), name)[0] for name in ("pop", "sr")}


def test_evaluate_logs_test_metrics_linked_to_the_model_run(experiment_runs, processed):
    run_id = experiment_runs["sr"]
    eval_id, metrics = run_evaluate(str(processed), f"runs:/{run_id}/model")
    run = mlflow.get_run(eval_id)
    assert run.data.tags["seqrec.evaluated_run_id"] == run_id
    trained = mlflow.get_run(run_id).data.metrics
    assert metrics["test_recall_at_20"] == pytest.approx(trained["test_recall_at_20"])
    assert run.data.metrics["test_predictions"] == trained["test_predictions"]


def test_register_picks_the_best_validation_run_and_is_idempotent(experiment_runs):
    decision = run_register("val_recall_at_20", name="seqrec-test")
    runs = {rid: mlflow.get_run(rid).data.metrics["val_recall_at_20"] for rid in experiment_runs.values()}
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("seqrec-test", "champion")
    assert decision["changed"] and champion.run_id == decision["run_id"]
    assert runs.get(champion.run_id, max(runs.values())) >= max(runs.values())
    assert champion.tags["selection_metric"] == "val_recall_at_20"
    assert "val_recall_at_20" in champion.description
    again = run_register("val_recall_at_20", name="seqrec-test")
    assert not again["changed"] and again["version"] == champion.version
    assert len(client.search_model_versions("name='seqrec-test'")) == 1
    with pytest.raises(ValueError, match="validation metric"):
        run_register("test_recall_at_20", name="seqrec-test")


def test_evaluate_a_registered_model(experiment_runs, processed):
    run_register("val_recall_at_20", name="seqrec-test")
    eval_id, metrics = run_evaluate(str(processed), "models:/seqrec-test@champion")
    champion = mlflow.MlflowClient().get_model_version_by_alias("seqrec-test", "champion")
    assert mlflow.get_run(eval_id).data.tags["seqrec.evaluated_run_id"] == champion.run_id
    assert 0 < metrics["test_recall_at_20"] <= 1


def test_main_runs_nested_steps_compares_and_reuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQREC_CHECKPOINTS", str(tmp_path / "ck"))
    params = MainParams(synthetic_clicks=15_000, seed=3, epochs=1, models="pop,sr,sasrec",
                        neural_overrides={"hidden": 16, "blocks": 1, "progress": False})
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
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"comparison.md", "comparison.png"} <= artifacts
    second = run_main(params)
    assert second["runs"] == first["runs"]  # every step reused
