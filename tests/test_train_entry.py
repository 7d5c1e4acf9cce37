"""The ``train`` entry point and the model registry as the one list of sequence models: ``train`` trains any model
of the registry by name, ``main`` and ``tune`` find theirs there, and ``train_gru``, ``train_sasrec`` and
``train_bert4rec`` are ``train`` with one model."""

from __future__ import annotations

import mlflow
import pytest
from test_user_data import own_store

import steps.main
import steps.train
import steps.train_bert4rec
import steps.train_gru
import steps.train_sasrec
from seqrec import tuning
from seqrec.models import presets, registry
from seqrec.train_config import split_overrides
from seqrec.workflow import main as workflow_main

METRICS = {"test_recall_at_20": 0.5, "test_mrr_at_20": 0.25}
ALIASES = {"train_gru": "gru4rec", "train_sasrec": "sasrec", "train_bert4rec": "bert4rec"}


def _runs(step: str) -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`seqrec.step` = '{step}'", order_by=["attributes.start_time DESC"])


def test_train_trains_the_example_model_by_name(processed, tmp_path, monkeypatch, capsys):
    """MeanEmb, the example of adding a model as one file, trains through ``train`` like the built-in ones."""
    monkeypatch.chdir(tmp_path)  # its checkpoints
    with own_store(tmp_path):
        argv = ["--model", "meanemb", "--data", str(processed), "--preset", "tiny", "--epochs", "1",
                "--params", "progress=false"]
        assert steps.train.main(argv) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1].startswith("train_meanemb: run ")
        (run,) = _runs("train_meanemb")
        assert run.info.status == "FINISHED" and run.outputs.model_outputs
        assert run.data.tags["seqrec.model"] == "meanemb" and run.data.tags["seqrec.preset"] == "tiny"
        assert run.data.metrics["test_recall_at_20"] > 0


def test_train_without_a_preset_uses_the_models_own(processed, tmp_path, monkeypatch, capsys):
    """``--preset`` empty or left out: the model's own preset, the one its ``train_<model>`` block defaults to."""
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr("seqrec.workflow.neural.run_neural",
                        lambda model, data, preset, *a, **k: seen.append((model, preset)) or ("r", METRICS))
    assert steps.train.main(["--model", "gru4rec", "--data", str(processed), "--preset", ""]) == 0
    assert steps.train.main(["--model", "sasrec", "--data", str(processed)]) == 0
    assert steps.train_gru.main(["--data", str(processed)]) == 0
    assert seen == [("gru4rec", "auto"), ("sasrec", "auto"), ("gru4rec", "auto")]
    assert "train_gru4rec: run r" in capsys.readouterr().out  # the step is train_<model>, whichever entry point


@pytest.mark.parametrize("argv,said", [
    ([], "the following arguments are required: --model"),
    (["--model", "nope", "--data", "x"], "argument --model: invalid choice: 'nope'"),
])
def test_train_refuses_a_missing_or_unknown_model(argv, said, capsys):
    with pytest.raises(SystemExit) as exc:
        steps.train.main(argv)
    assert exc.value.code == 2 and said in capsys.readouterr().err


def test_a_one_model_entry_point_trains_its_model_only(capsys):
    with pytest.raises(SystemExit):
        steps.train_gru.main(["--model", "sasrec", "--data", "x"])
    assert "invalid choice: 'sasrec'" in capsys.readouterr().err


@pytest.mark.parametrize("step,model", sorted(ALIASES.items()))
def test_a_one_model_entry_point_is_train_with_that_model(step, model):
    """The same options and defaults; its own preset default is the model's."""
    def options(parser) -> dict:
        return {a.dest: (a.default, a.required) for a in parser._actions if a.dest not in ("help", "model", "preset")}

    assert options(steps.train.build_parser(model)) == options(steps.train.build_parser())
    assert steps.train.build_parser(model).get_default("preset") == registry.default_preset(model)


def test_main_trains_a_sequence_model_left_out_of_all(tmp_path, monkeypatch, capsys):
    """``main -P models=meanemb``: any model of the registry, with its own preset, though ``all`` leaves it out."""
    assert "meanemb" not in dict(workflow_main.NEURAL)
    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        argv = ["--models", "pop,meanemb", "--synthetic-clicks", "12000", "--epochs", "1"]
        assert steps.main.main(argv) == 0
        capsys.readouterr()
        (run,) = _runs("train_meanemb")
        assert run.info.status == "FINISHED" and run.data.metrics["test_recall_at_20"] > 0
        assert run.data.tags["seqrec.preset"] == registry.default_preset("meanemb")
        assert {r.data.tags["seqrec.model"] for r in _runs("train_baseline")} == {"pop"}
        assert not _runs("train_sasrec")


def test_main_compares_the_registrys_models_in_their_order_with_their_presets():
    """GRU4Rec, SASRec and BERT4Rec with ``preset=auto``; the README's results depend on the built-in data's presets
    and epoch caps: GRU4Rec ``sample``, SASRec and BERT4Rec ``default``."""
    assert workflow_main.NEURAL == registry.main_models() == (
        ("gru4rec", "auto"), ("sasrec", "auto"), ("bert4rec", "auto"))
    assert set(workflow_main.BUILT_IN) == {m for m, _ in workflow_main.NEURAL}
    plan = workflow_main.neural_plan(workflow_main.MainParams(models="meanemb,sasrec,pop"))
    assert [(m, p) for m, p, _ in plan] == [("sasrec", "default"), ("meanemb", "auto")]
    plan = workflow_main.neural_plan(workflow_main.MainParams(models="meanemb,sasrec,pop", data="d"))
    assert [(m, p) for m, p, _ in plan] == [("sasrec", "auto"), ("meanemb", "auto")]
    with pytest.raises(ValueError, match="unknown model"):
        workflow_main.neural_plan(workflow_main.MainParams(models="nope"))


@pytest.mark.parametrize("model", sorted(registry.MODELS))
def test_every_sequence_model_has_its_presets_and_a_search_space_it_accepts(model):
    """Each preset ``PRESET_FOR`` names exists; the space ``tune`` searches (the model file's ``search_space``,
    found through the registry) names settings the model takes, each value of its type."""
    for role, name in presets.PRESET_FOR.get(model, {}).items():
        assert name in registry.preset_names(model), f"{model}: the {role} preset {name!r} is not a preset"
    space = tuning.search_space(model)
    assert space and tuning.default_space(model) == registry.search_space(model)
    split_overrides(model, registry.default_preset(model), {k: d.example() for k, d in space.items()})


def test_preset_for_names_only_models_of_the_registry():
    assert set(presets.PRESET_FOR) <= set(registry.MODELS)
