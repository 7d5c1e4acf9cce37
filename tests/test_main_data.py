"""``main`` on the user's data, through its entry point: a click file of any format with every preprocess setting
(each of them part of the preprocess step's reuse key), or a processed dataset (checked, no preprocess step);
and it says at the start which time budget applies."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest

import steps.main
import steps.preprocess
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.synthetic import SyntheticConfig
from seqrec.data.writers import write_generated
from tests.helpers import own_store

POP_SR = ["--models", "pop,sr"]


def run_count() -> int:
    return len(mlflow.search_runs(search_all_experiments=True))


def children() -> dict[str, list]:
    """The child runs of the last ``main`` run by step."""
    parent = mlflow.last_active_run()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.data.tags["seqrec.step"], []).append(run)
    return out


def refused(argv: list[str], capsys) -> str:
    """The one line ``main`` says when it refuses ``argv`` (exit status 2)."""
    capsys.readouterr()
    assert steps.main.main(argv) == 2
    said = capsys.readouterr().err.strip()
    assert said.count("\n") == 0 and said.startswith("main: error: "), said
    return said


@pytest.fixture
def ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A processed dataset written by the preprocess entry point (the working directory: ``tmp_path``)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ready"
    assert steps.preprocess.main(["--synthetic-clicks", "12000", "--seed", "13", "--out", str(out)]) == 0
    return out


def test_main_on_a_diginetica_file_as_published(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    clicks = write_generated("diginetica", tmp_path / "train-item-views.csv", SyntheticConfig(n_clicks=12_000, seed=11))
    with own_store(tmp_path):
        assert steps.main.main(["--clicks", str(clicks), "--format", "diginetica", *POP_SR]) == 0
        out = capsys.readouterr().out
        assert "main: time budget: none (time_budget=auto on your data)" in out.splitlines()[0]
        parent = mlflow.last_active_run()
        steps_run = children()
        data = ProcessedDataset.load(tmp_path / "data" / "processed" / "train-item-views")
    assert parent.data.params["format"] == "diginetica" and parent.data.params["time_budget"] == "auto"
    assert parent.data.tags["seqrec.data_digest"] == data.digest
    assert steps_run["preprocess"][0].data.params["format"] == "diginetica"
    trained = {r.data.tags["seqrec.model"]: r for r in steps_run["train_baseline"]}
    assert set(trained) == {"pop", "sr"} and {r.data.tags["seqrec.data_digest"] for r in trained.values()} == {
        data.digest}
    assert trained["sr"].data.metrics["test_recall_at_20"] > trained["pop"].data.metrics["test_recall_at_20"]


def test_main_reads_a_generic_csv_by_its_columns_and_reuses_preprocess_only_for_the_same_settings(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_generated("csv", tmp_path / "log.csv", SyntheticConfig(n_clicks=12_000, seed=12))
    lines = path.read_text().splitlines(keepends=True)
    assert lines[0] == "session_id,item_id,timestamp,event\n"
    path.write_text("visit,product,when,kind\n" + "".join(lines[1:]))  # the user's own column names
    argv = ["--clicks", str(path), "--format", "csv", "--columns", "session=visit,item=product,time=when,event=kind",
            *POP_SR]
    processed = tmp_path / "data" / "processed" / "log"
    with own_store(tmp_path):
        assert steps.main.main(argv) == 0
        every_event = ProcessedDataset.load(processed)
        assert steps.main.main(argv) == 0
        assert "main: reusing preprocess" in capsys.readouterr().out
        assert steps.main.main([*argv, "--events", "click"]) == 0  # a read option: another dataset
        out = capsys.readouterr().out
        assert "main: reusing preprocess" not in out
        preprocess_run = children()["preprocess"][0]
    clicks_only = ProcessedDataset.load(processed)
    assert preprocess_run.data.params["events"] == "click"
    assert clicks_only.digest != every_event.digest
    assert clicks_only.stats["raw"]["clicks"] < every_event.stats["raw"]["clicks"]  # the carts were left out


def test_main_on_a_processed_dataset_runs_no_preprocess_step(ready, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    digest = ProcessedDataset.load(ready).digest
    capsys.readouterr()
    with own_store(tmp_path):
        assert steps.main.main(["--data", str(ready), "--models", "pop,sr,sasrec", "--epochs", "1"]) == 0
        out = capsys.readouterr().out
        steps_run = children()
        parent = mlflow.last_active_run()
    assert "main: time budget: none (time_budget=auto on your data)" in out
    assert f"main: using the processed dataset {ready}: no preprocess step" in out
    assert "preprocess" not in steps_run and {"eda", "train_baseline", "train_sasrec", "register"} <= set(steps_run)
    assert parent.data.tags["seqrec.data_digest"] == digest
    sasrec = steps_run["train_sasrec"][0]
    assert sasrec.data.tags["seqrec.data_digest"] == digest and "test_mrr_at_20" in sasrec.data.metrics
    assert not (tmp_path / "data" / "processed").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--clicks", "clicks.csv"], "give either data (a processed dataset) or clicks (a click file to preprocess), "
                                 "not both"),
    (["--min-item-support", "3", "--format", "csv"], "the preprocess setting(s) min_item_support=3, format=csv do "
                                                     "not apply to it"),
], ids=["clicks", "preprocess settings"])
def test_data_with_clicks_or_preprocess_settings_is_refused_in_one_line(argv, message, tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        said = refused(["--data", str(tmp_path / "ready"), *argv, *POP_SR], capsys)
        assert message in said
        assert run_count() == 0
    assert list(tmp_path.iterdir()) == [tmp_path / "own.db"]


def test_a_changed_or_unreadable_processed_dataset_is_refused_before_any_run(ready, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    changed = tmp_path / "changed"
    shutil.copytree(ready, changed)
    items = changed / "splits" / "test" / "items.npy"
    array = np.load(items)
    np.save(items, np.roll(array, 1))  # the same item ids, in another order: only the content digest tells
    incomplete = tmp_path / "incomplete"
    shutil.copytree(ready, incomplete)
    (incomplete / "splits" / "valid" / "offsets.npy").unlink()
    with own_store(tmp_path):
        said = refused(["--data", str(changed), *POP_SR], capsys)
        assert f"{changed} does not hold the dataset its stats.json names" in said
        assert "run preprocess again" in said
        assert f"{incomplete} cannot be read back" in refused(["--data", str(incomplete), *POP_SR], capsys)
        assert "not a processed dataset" in refused(["--data", str(tmp_path / "nothing"), *POP_SR], capsys)
        assert run_count() == 0


def test_main_on_the_built_in_data_says_its_epochs_are_capped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        assert steps.main.main(["--models", "pop", "--synthetic-clicks", "12000"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("main: time budget: auto on the built-in data: at most gru4rec-sample 6, "
                            "sasrec-default 10, bert4rec-default 12 selection epochs instead of a time limit")
