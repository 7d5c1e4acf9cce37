"""``main`` trains the neural models until early stopping, within its time budget."""

import importlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from seqrec.data.dataset import ProcessedDataset
from seqrec.models.registry import build_model
from seqrec.trainer import Checkpointer, Trainer, split_overrides
from seqrec.workflow import main as workflow_main
from seqrec.workflow.main import MainParams, neural_plan, selection_seconds


def train(processed, tmp_path, **overrides):
    data = ProcessedDataset.load(processed)
    model_cfg, train_cfg, runtime = split_overrides("sasrec", "tiny", {"progress": False, **overrides})
    trainer = Trainer(lambda popularity: build_model("sasrec", data.n_items, model_cfg, popularity), data,
                      train_cfg, Checkpointer(tmp_path / "ck"), runtime=runtime)
    _, history, test = trainer.run()
    return history, test


def test_the_time_limit_ends_the_selection_then_the_refit_follows(processed, tmp_path, capsys):
    history, test = train(processed, tmp_path, epochs=4, patience=4, max_seconds=1e-3)
    assert len(history.select) == 1  # an epoch always runs; the limit is checked before the next one
    assert len(history.refit) == history.best_epoch == 1 and test is not None
    assert "time limit of 0 s is used up" in capsys.readouterr().out
    unlimited, _ = train(processed, tmp_path, epochs=3, patience=3)
    assert len(unlimited.select) == 3


def test_main_shares_what_is_left_of_the_budget_and_caps_no_epochs_by_default():
    assert MainParams().epochs == 0
    left = 400.0
    share = selection_seconds(left, 2)
    assert share == pytest.approx((left - workflow_main.RESERVE_SECONDS) / 2 * workflow_main.SELECT_SHARE)
    assert selection_seconds(left, 1) == pytest.approx(2 * share)
    assert selection_seconds(-50.0, 3) == 1.0  # an overrun budget still trains one epoch per model
    plan = neural_plan(MainParams())
    assert [(m, p) for m, p, _ in plan] == list(workflow_main.NEURAL)
    assert all("epochs" not in over for _, _, over in plan)  # the presets' maxima; early stopping decides
    capped = neural_plan(MainParams(models="pop,sasrec", epochs=7))
    assert [(m, over["epochs"]) for m, _, over in capped] == [("sasrec", 7)]


def test_the_entry_point_passes_the_budget_and_the_epoch_cap(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # steps/ runs from the checkout
    parse_args = importlib.import_module("steps.main").parse_args
    params = parse_args(["--time-budget", "90", "--epochs", "5", "--models", "sr"])
    assert (params.time_budget, params.epochs, params.models) == (90.0, 5, "sr")
    assert parse_args([]).time_budget == MainParams().time_budget


def test_a_neural_run_gets_its_share_when_it_starts(monkeypatch):
    """The limit each neural run gets shrinks with the time the runs before it took."""
    limits = []
    clock = iter([100.0, 250.0, 400.0])  # when each run starts; main started at 0
    monkeypatch.setattr(workflow_main, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(workflow_main, "reuse_or_run", lambda name, payload, execute: (execute(), False))
    monkeypatch.setattr(workflow_main, "run_neural",
                        lambda model, data, preset, over, nested, seeds: limits.append(over["max_seconds"]) or model)
    plan = neural_plan(MainParams())
    runs = workflow_main.train_neural_models(MainParams(time_budget=480.0), plan, "d", {}, started=0.0)
    assert list(runs) == [f"{m}-{p}" for m, p, _ in plan]
    assert limits == pytest.approx([selection_seconds(380.0, 3), selection_seconds(230.0, 2),
                                    selection_seconds(80.0, 1)])
    assert limits[0] > limits[1] > limits[2]
