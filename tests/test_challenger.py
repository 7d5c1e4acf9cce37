"""Champion and challenger across time, through ``register``'s entry point: a model of a newer window of the same
catalogue is compared with the champion on the recent test split (paired bootstrap) and becomes the champion when
clearly better, the challenger otherwise; datasets with little item overlap are refused; force swaps."""

from __future__ import annotations

import importlib
from pathlib import Path

import mlflow
import pytest

from seqrec.data.synthetic import LaterConfig, SyntheticConfig, generate
from seqrec.workflow.register import RegisterError, run_register

BASE = SyntheticConfig(n_clicks=12_000, seed=31)


def entry(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    status = importlib.import_module(f"steps.{name}").main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def train(data: Path, model: str, capsys) -> str:
    status, out, err = entry("train_baseline", ["--data", str(data), "--model", model], capsys)
    assert status == 0, err
    return out.split(" run ")[1].split(":")[0]


def register_runs() -> int:
    return len(mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`seqrec.step` = 'register'"))


@pytest.fixture(scope="module")
def windows(tmp_path_factory) -> dict[str, Path]:
    """Processed datasets: ``old`` (the base period), ``newer`` (base and later period), ``recent`` (the most recent
    half of the training sessions of ``newer``: another newer window of the same catalogue) and ``other`` (another
    catalogue)."""
    import steps.preprocess

    root = tmp_path_factory.mktemp("windows")
    base, _ = generate(root / "raw-base", BASE)
    later, _ = generate(root / "raw-later", LaterConfig.after(BASE))
    other, _ = generate(root / "raw-other", SyntheticConfig(n_clicks=12_000, seed=32))
    inputs = {"old": [str(base)], "newer": [f"{base},{later}"], "recent": [f"{base},{later}", "--fraction", "2"],
              "other": [str(other)]}
    for name, (clicks, *extra) in inputs.items():
        assert steps.preprocess.main(["--clicks", clicks, "--name", name, "--out", str(root / name), *extra]) == 0
    return {name: root / name for name in inputs}


def test_a_clearly_better_model_of_newer_data_becomes_the_champion(windows, capsys):
    name = "challenge-win"
    old_pop = train(windows["old"], "pop", capsys)
    assert entry("register", ["--data", str(windows["old"]), "--name", name], capsys)[0] == 0
    newer_sr = train(windows["newer"], "sr", capsys)
    status, out, err = entry("register", ["--data", str(windows["newer"]), "--name", name], capsys)
    assert status == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"register: registered {name} version 2 (run {newer_sr}") and "p = " in line
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.run_id == newer_sr and champion.tags["challenge.decision"] == "champion"
    assert float(champion.tags["challenge.p_value"]) < 0.05 and float(champion.tags["challenge.difference"]) > 0
    assert champion.tags["challenge.test_data"] == "newer" and champion.tags["challenge.champion_version"] == "1"
    assert "becomes the champion" in champion.description and "p = " in champion.description
    run = mlflow.search_runs(search_all_experiments=True, output_format="list", max_results=1,
                             filter_string="tags.`seqrec.step` = 'register'",
                             order_by=["attributes.start_time DESC"])[0]
    assert run.data.tags["seqrec.register.decision"] == "champion"
    assert run.data.metrics["challenge_p_mrr_at_20"] < 0.05 and run.data.metrics["challenge_item_overlap"] >= 0.5
    # the older dataset's model, registered now, is judged on the newest test split (the champion's) and loses
    decision = run_register(str(windows["old"]), name=name)
    assert decision["decision"] == "challenger" and decision["challenger"]["run_id"] == old_pop
    assert decision["comparison"]["test_data"] == "newer" and not decision["comparison"]["candidate_wins"]


def test_a_newer_model_not_clearly_better_is_the_challenger_little_overlap_is_refused_force_swaps(windows, capsys):
    name = "challenge-keep"
    old_sr = train(windows["old"], "sr", capsys)
    assert entry("register", ["--data", str(windows["old"]), "--name", name], capsys)[0] == 0
    recent_pop = train(windows["recent"], "pop", capsys)
    status, out, err = entry("register", ["--data", str(windows["recent"]), "--name", name], capsys)
    assert status == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"register: kept {name} version 1 (run {old_sr}) as @champion") and "@challenger" in line
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias(name, "champion").run_id == old_sr
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert challenger.run_id == recent_pop and challenger.tags["challenge.decision"] == "challenger"
    assert float(challenger.tags["challenge.difference"]) < 0 and "the champion stays" in challenger.description
    # asked again: the decision on the version stands, no new comparison, no new run
    runs = register_runs()
    decision = run_register(str(windows["recent"]), name=name)
    assert decision["decision"] == "challenger" and not decision["changed"] and decision["run_id"] == old_sr
    assert decision["challenger"]["run_id"] == recent_pop and register_runs() == runs
    # another catalogue shares too few items to be compared
    train(windows["other"], "pop", capsys)
    status, _, err = entry("register", ["--data", str(windows["other"]), "--name", name], capsys)
    assert status == 2 and "models of different datasets are not compared" in err and "of the champion's items" in err
    assert client.get_model_version_by_alias(name, "champion").run_id == old_sr
    with pytest.raises(RegisterError, match=r"only \d+% of the champion's items .*\(at least 50% needed"):
        run_register(str(windows["other"]), name=name)
    status, out, err = entry("register", ["--data", str(windows["other"]), "--name", name, "--force", "true"], capsys)
    assert status == 0 and out.strip().splitlines()[-1].startswith(f"register: registered {name} version 3"), err
    with pytest.raises(mlflow.exceptions.MlflowException):  # a new champion ends the challenge
        client.get_model_version_by_alias(name, "challenger")


@pytest.mark.parametrize("argv,message", [(["--alpha", "0"], "alpha=0.0 must be in (0, 1)"),
                                          (["--min-overlap", "1.5"], "min_overlap=1.5 must be in [0, 1]")])
def test_bad_comparison_settings_fail_in_one_line(argv, message, capsys):
    status, _, err = entry("register", argv, capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
