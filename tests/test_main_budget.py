"""``main`` trains the neural models until early stopping, within its time budget: by default (``auto``) fixed
epoch caps on the built-in data, so that its results do not depend on the machine's speed, and no limit on the
user's data; a budget in seconds is shared by the neural runs."""

import importlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from seqrec.checkpoints import Checkpointer
from seqrec.data.dataset import ProcessedDataset
from seqrec.models.registry import build_model
from seqrec.train_config import split_overrides
from seqrec.trainer import Trainer
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


def test_main_shares_what_is_left_of_a_budget_in_seconds():
    left = 400.0
    share = selection_seconds(left, 2)
    assert share == pytest.approx((left - workflow_main.RESERVE_SECONDS) / 2 * workflow_main.SELECT_SHARE)
    assert selection_seconds(left, 1) == pytest.approx(2 * share)
    assert selection_seconds(-50.0, 3) == 1.0  # an overrun budget still trains one epoch per model


def test_the_auto_budget_caps_epochs_on_the_built_in_data_and_nothing_on_the_users():
    assert MainParams().time_budget == workflow_main.AUTO and MainParams().epochs == 0
    plan = neural_plan(MainParams())  # the built-in data: the presets and caps that fit make run's 10 minutes
    assert [m for m, _, _ in plan] == [m for m, _ in workflow_main.NEURAL]
    assert {m: (p, over["epochs"]) for m, p, over in plan} == workflow_main.BUILT_IN
    assert workflow_main.BUILT_IN == {"gru4rec": ("sample", 6), "sasrec": ("default", 10),
                                      "bert4rec": ("default", 12)}  # what they reached in 420 s on 2 cores
    for users in (MainParams(clicks="clicks.csv"), MainParams(data="data/processed/x"),  # the presets' maxima
                  MainParams(time_budget=420.0), MainParams(time_budget=0.0)):  # a budget given: no caps
        assert all("epochs" not in over for _, _, over in neural_plan(users)), users
        assert [(m, p) for m, p, _ in neural_plan(users)] == list(workflow_main.NEURAL)  # preset auto
    capped = neural_plan(MainParams(models="pop,sasrec", epochs=7))  # an explicit cap replaces the built-in one
    assert [(m, over["epochs"]) for m, _, over in capped] == [("sasrec", 7)]
    assert workflow_main.budget_seconds(MainParams()) == workflow_main.budget_seconds(MainParams(clicks="c")) == 0


def test_main_says_which_budget_applies_and_why():
    rule = workflow_main.budget_rule
    assert "built-in data" in rule(MainParams()) and "sasrec-default 10" in rule(MainParams())
    assert "rather than preset auto" in rule(MainParams())
    assert "machine's speed" in rule(MainParams())
    assert rule(MainParams(clicks="c")).startswith("none (time_budget=auto on your data)")
    assert "early stopping" in rule(MainParams(data="d"))
    assert rule(MainParams(time_budget=90.0)).startswith("90 s for the whole run")
    assert rule(MainParams(time_budget=0.0)).startswith("none (time_budget=0)")
    assert "epochs=3" in rule(MainParams(epochs=3))


@pytest.mark.parametrize(("budget", "message"), [(-5.0, "time_budget=-5.0 must be >= 0"),
                                                 ("soon", "time_budget='soon' must be auto or a number")])
def test_a_bad_budget_is_refused(budget, message):
    with pytest.raises(ValueError, match=f"main: {message}"):
        MainParams(time_budget=budget)


def test_the_entry_point_passes_the_budget_and_the_epoch_cap(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # steps/ runs from the checkout
    parse_args = importlib.import_module("steps.main").parse_args
    params = parse_args(["--time-budget", "90", "--epochs", "5", "--models", "sr"])
    assert (params.time_budget, params.epochs, params.models) == (90.0, 5, "sr")
    assert parse_args([]).time_budget == parse_args(["--time-budget", "auto"]).time_budget == MainParams().time_budget


def _limits(monkeypatch, params: MainParams, clock: list[float]) -> tuple[list[dict], list[dict]]:
    """What ``train_neural_models`` hands each neural run (its overrides) and its reuse key's payload, with
    the runs starting at the times of ``clock`` (main started at 0)."""
    handed, payloads = [], []
    ticks = iter(clock)
    monkeypatch.setattr(workflow_main, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    monkeypatch.setattr(workflow_main, "reuse_or_run",
                        lambda name, payload, execute: (payloads.append(payload) or execute(), False))
    monkeypatch.setattr(workflow_main, "run_neural",
                        lambda model, data, preset, over, nested, seeds: handed.append(over) or model)
    runs = workflow_main.train_neural_models(params, neural_plan(params), "d", {}, started=0.0)
    assert list(runs) == [f"{m}-{p}" for m, p, _ in neural_plan(params)]
    return handed, payloads


def test_a_neural_run_gets_its_share_when_it_starts(monkeypatch):
    """The limit each neural run gets shrinks with the time the runs before it took."""
    handed, payloads = _limits(monkeypatch, MainParams(time_budget=480.0), [100.0, 250.0, 400.0])
    limits = [over["max_seconds"] for over in handed]
    assert limits == pytest.approx([selection_seconds(380.0, 3), selection_seconds(230.0, 2),
                                    selection_seconds(80.0, 1)])
    assert limits[0] > limits[1] > limits[2]
    assert all(p["time_budget"] == 480.0 for p in payloads)


@pytest.mark.parametrize("params", [MainParams(), MainParams(clicks="clicks.csv")], ids=["built-in", "user"])
def test_the_auto_budget_sets_no_time_limit_whatever_the_clock_says(monkeypatch, params):
    handed, payloads = _limits(monkeypatch, params, [1e6, 2e6, 3e6])  # a very slow machine: the same runs
    assert all("max_seconds" not in over for over in handed)
    expected = [workflow_main.BUILT_IN[m][1] if params.built_in else None for m, _ in workflow_main.NEURAL]
    assert [over.get("epochs") for over in handed] == expected
    assert [p["overrides"].get("epochs") for p in payloads] == expected  # the cap is part of the reuse key
    assert all(p["time_budget"] == 0 for p in payloads)
