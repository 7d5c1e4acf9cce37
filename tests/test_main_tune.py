"""``main -P tune=N``: each sequence model gets an N-trial study on valid (the ``tune`` step, nested under
``main``) whose best setting is trained and tested as the model's run in the comparison; a second call reuses it."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

import steps.main
import steps.preprocess
from tests.helpers import own_store


def runs_by_step() -> dict[str, list]:
    """Every run of the store by its ``seqrec.step`` tag."""
    out: dict[str, list] = {}
    for run in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        out.setdefault(run.data.tags.get("seqrec.step", ""), []).append(run)
    return out


@pytest.fixture
def ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ready"
    assert steps.preprocess.main(["--synthetic-clicks", "8000", "--seed", "5", "--out", str(out)]) == 0
    return out


def test_main_tunes_each_sequence_model_before_its_final_run(ready, tmp_path, capsys):
    argv = ["--data", str(ready), "--models", "meanemb", "--epochs", "1", "--tune", "2"]
    with own_store(tmp_path):
        assert steps.main.main(argv) == 0
        steps_run = runs_by_step()
        (tune,) = steps_run["tune"]
        (final,) = steps_run["train_meanemb"]
        trials = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list",
                                                filter_string=f"tags.mlflow.parentRunId = '{tune.info.run_id}'")
                  if r.info.run_id != final.info.run_id]
        assert len(trials) == 2
        assert all("test_mrr_at_20" not in t.data.metrics for t in trials)  # trials never see test
        assert tune.data.tags["seqrec.final_run_id"] == final.info.run_id
        assert {k: final.data.params[k] for k in ("model.hidden", "train.lr")} == {
            "model.hidden": tune.data.params["best.hidden"], "train.lr": tune.data.params["best.lr"]}
        main_run = max(steps_run["main"], key=lambda r: r.info.start_time)
        assert main_run.data.params["tune"] == "2"
        table = Path(mlflow.MlflowClient().download_artifacts(main_run.info.run_id, "comparison.md")).read_text()
        assert "| meanemb" in table

        capsys.readouterr()
        assert steps.main.main(argv) == 0  # the same call again: the study and its final run are reused
        assert "main: reusing tune_meanemb:auto" in capsys.readouterr().out
        again = runs_by_step()
        assert len(again["tune"]) == 1 and len(again["train_meanemb"]) == 1


def test_tune_must_be_a_count(capsys):
    assert steps.main.main(["--tune", "-1"]) == 2
    assert "tune=-1 must be >= 0" in capsys.readouterr().err
