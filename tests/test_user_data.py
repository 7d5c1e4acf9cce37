"""The user's data through the entry points: outputs never destroy what the project did not write, datasets are
identified by content, a reused step is checked before it is trusted, and ``main`` always says what
``register`` decided."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow

import steps.main
import steps.preprocess
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import digest_on_disk
from seqrec.tracking import TAG_CODE
from seqrec.version import code_version
from tests.helpers import own_store


def run_count() -> int:
    return len(mlflow.search_runs(search_all_experiments=True))


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def test_preprocess_refuses_a_directory_holding_the_users_files_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "DIR"
    (out / "sub").mkdir(parents=True)
    (out / "important.txt").write_text("mine")
    (out / "sub" / "a").write_text("also mine")
    before = run_count()
    assert steps.preprocess.main(["--synthetic-clicks", "3000", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(out) in error and "important.txt" in error and "sub" in error and "-P out" in error
    assert tree(out) == {"important.txt": "mine", "sub/a": "also mine"}
    assert run_count() == before and not (tmp_path / "data").exists()  # nothing generated, no run


def test_preprocess_replaces_its_own_output_and_fills_an_empty_directory_with_umask_permissions(tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    old = os.umask(0o027)
    try:
        assert steps.preprocess.main(["--synthetic-clicks", "3000", "--out", str(empty)]) == 0
        assert steps.preprocess.main(["--synthetic-clicks", "3000", "--out", str(empty),
                                      "--min-item-support", "1"]) == 0  # its own output: replaced
    finally:
        os.umask(old)
    assert ProcessedDataset.load(empty).stats["params"]["min_item_support"] == 1
    assert (empty.stat().st_mode & 0o777) == 0o750 and ((empty / "splits").stat().st_mode & 0o777) == 0o750
    assert ((tmp_path / "data" / "raw" / "synthetic-3000-s0").stat().st_mode & 0o777) == 0o750


def test_a_dot_file_names_its_dataset_and_never_the_processed_root(sample_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(sample_dir / "train_full.txt", tmp_path / ".neg.tsv")
    other = tmp_path / "data" / "processed" / "other"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("keep")
    assert steps.preprocess.main(["--clicks", ".neg.tsv", "--min-item-support", "1"]) == 0
    assert ProcessedDataset.load(tmp_path / "data" / "processed" / "neg").name == "neg"
    assert (other / "notes.txt").read_text() == "keep"
    for bad in ("../x", ".hidden", "a/b"):
        assert steps.preprocess.main(["--clicks", ".neg.tsv", "--name", bad]) == 2
        assert f"dataset name {bad!r} is not usable" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "data" / "processed").iterdir()) == ["neg", "other"]


def test_the_generated_data_is_checked_before_reuse_and_a_foreign_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert steps.preprocess.main(["--synthetic-clicks", "3000", "--out", "p"]) == 0
    raw = tmp_path / "data" / "raw" / "synthetic-3000-s0"
    original = (raw / "clicks.dat").read_bytes()
    (raw / "clicks.dat").write_bytes(original[: len(original) // 2])  # altered: generated again, not trusted
    assert steps.preprocess.main(["--synthetic-clicks", "3000", "--out", "p"]) == 0
    assert "altered generation" in capsys.readouterr().out and (raw / "clicks.dat").read_bytes() == original
    mine = tmp_path / "data" / "raw" / "mine"
    mine.mkdir()
    (mine / "clicks.dat").write_text("the user's own clicks")
    assert steps.preprocess.main(["--synthetic-clicks", "3000", "--name", "mine", "--out", "q"]) == 2
    assert "no generator.json" in capsys.readouterr().err
    assert (mine / "clicks.dat").read_text() == "the user's own clicks"


def test_the_dataset_digest_is_content_never_a_path(sample_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "a" / "clicks.tsv", tmp_path / "b" / "renamed.tsv"
    for path in (first, second):
        path.parent.mkdir()
        shutil.copy(sample_dir / "train_full.txt", path)
    digests = {}
    for key, argv in {"a": ["--clicks", str(first), "--out", "da"], "b": ["--clicks", str(second), "--out", "db"],
                      "support": ["--clicks", str(first), "--out", "dc", "--min-item-support", "2"]}.items():
        assert steps.preprocess.main(["--min-item-support", "1", *argv]) == 0
        digests[key] = ProcessedDataset.load(tmp_path / argv[3]).digest
    assert digests["a"] == digests["b"]  # the same bytes at two paths
    assert digests["support"] != digests["a"]  # other preprocessing parameters
    assert digest_on_disk(tmp_path / "da") == digests["a"]
    items = tmp_path / "da" / "splits" / "test" / "items.npy"
    items.write_bytes(items.read_bytes()[:-4] + b"\x01\x00\x00\x00")  # a changed click is another dataset
    assert digest_on_disk(tmp_path / "da") != digests["a"]


def test_the_buys_and_the_preprocessing_code_are_part_of_the_digest(generated, tmp_path, monkeypatch):
    import seqrec.data.preprocess as preprocess_module

    monkeypatch.chdir(tmp_path)
    clicks, buys = generated
    assert steps.preprocess.main(["--clicks", str(clicks), "--out", "without"]) == 0
    assert steps.preprocess.main(["--clicks", str(clicks), "--buys", str(buys), "--out", "with"]) == 0
    monkeypatch.setattr(preprocess_module, "preprocess_code_version", lambda: "another")
    assert steps.preprocess.main(["--clicks", str(clicks), "--buys", str(buys), "--out", "newer"]) == 0
    digests = {d: ProcessedDataset.load(tmp_path / d).digest for d in ("without", "with", "newer")}
    assert len(set(digests.values())) == 3


def children_of(parent_id: str) -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")


def test_main_checks_a_reused_dataset_and_rebuilds_one_rewritten_or_gone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--models", "pop,sr", "--synthetic-clicks", "20000"]
    with own_store(tmp_path):
        assert steps.main.main(argv) == 0
        data = tmp_path / "data" / "processed" / "synthetic-20000-s0"
        wanted = ProcessedDataset.load(data)
        # another preprocess rewrites the same default directory with other settings
        assert steps.preprocess.main(["--synthetic-clicks", "20000", "--min-item-support", "1"]) == 0
        assert ProcessedDataset.load(data).n_items != wanted.n_items
        capsys.readouterr()
        assert steps.main.main(argv) == 0
        out = capsys.readouterr().out
        assert "running preprocess again" in out and "no longer holds the dataset it wrote" in out
        assert ProcessedDataset.load(data).digest == wanted.digest  # main trained on its own settings' data
        parent = mlflow.last_active_run()
        trained = [r for r in children_of(parent.info.run_id) if r.data.tags["seqrec.step"].endswith("train_baseline")]
        assert len(trained) == 2 and {r.data.tags["seqrec.data_digest"] for r in trained} == {wanted.digest}
        shutil.rmtree(data)  # moved or deleted: rebuilt, not a failure
        assert steps.main.main(argv) == 0
        assert "is gone" in capsys.readouterr().out and ProcessedDataset.load(data).digest == wanted.digest


def test_main_finishes_and_says_that_a_champion_of_another_dataset_stays(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        assert steps.main.main(["--models", "pop,sr", "--synthetic-clicks", "12000"]) == 0
        assert "is now the champion" in capsys.readouterr().out
        assert steps.main.main(["--models", "pop,sr", "--synthetic-clicks", "12000", "--seed", "1"]) == 0
        out = capsys.readouterr().out
        assert "main: register: the champion was kept" in out and "models of different datasets are not compared" in out
        assert mlflow.last_active_run().info.status == "FINISHED"
        assert steps.main.main(["--models", "pop,sr", "--synthetic-clicks", "12000"]) == 0  # all reused
        assert "stays the champion" in capsys.readouterr().out


def test_training_runs_and_models_carry_the_code_version_and_register_prints_both(tmp_path, monkeypatch, capsys):
    import steps.register

    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        assert steps.main.main(["--models", "pop", "--synthetic-clicks", "12000"]) == 0
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`seqrec.step` = 'train_baseline'")
        assert runs and all(r.data.tags[TAG_CODE] == code_version() for r in runs)
        models = mlflow.search_logged_models(experiment_ids=[runs[0].info.experiment_id], output_format="list")
        assert models and all(m.tags[TAG_CODE] == code_version() for m in models)
        capsys.readouterr()
        assert steps.register.main([]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("register: candidate"))
        assert line.count(code_version()) == 2 and "champion version 1" in line


def test_the_code_version_names_the_commit_and_the_uncommitted_or_untracked_source(tmp_path, monkeypatch):
    import subprocess

    import seqrec.version as v

    package = tmp_path / "seqrec"
    package.mkdir()
    (package / "a.py").write_text("A = 1\n")
    monkeypatch.setattr(v, "ROOT", tmp_path)
    monkeypatch.setattr(v, "PACKAGE", package)
    outside = v.code_version.__wrapped__()
    assert "+src." in outside and "@" not in outside  # no git: a digest of every source file
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "a"]):
        subprocess.run([*git, *args], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout[:12]
    assert v.code_version.__wrapped__().endswith(f"@{commit}")  # clean
    (package / "b.py").write_text("B = 1\n")  # untracked
    untracked = v.code_version.__wrapped__()
    (package / "b.py").write_text("B = 2\n")
    changed = v.code_version.__wrapped__()
    assert untracked.startswith(f"{v.seqrec.__version__}@{commit}+") and changed != untracked
