"""The ``monitor`` step: replay later clicks through a model per period (as the service sees them, ranked by the one
evaluator), drift figures, the verdict, and the run it leaves in MLflow, through the entry point."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.readers import Clicks
from seqrec.models.baselines import make_baseline
from seqrec.monitoring import (
    PeriodResult,
    Thresholds,
    click_log,
    parse_period,
    popularity_shift,
    replay,
    verdict,
)
from seqrec.serving.recommender import Recommender

DAY = 86_400
T0 = 1_400_025_600  # a UTC midnight


def entry(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    status = importlib.import_module(f"steps.{name}").main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def runs_of(step: str) -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`seqrec.step` = '{step}'", order_by=["attributes.start_time DESC"])


@pytest.mark.parametrize("text,seconds", [("1d", DAY), ("12h", 43_200), ("30m", 1_800), ("3600s", 3_600),
                                          ("3600", 3_600), ("1w", 7 * DAY), ("0.5d", DAY / 2)])
def test_periods_parse(text, seconds):
    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "-1d", "2x", "d", "1 day"])
def test_bad_periods_are_refused(text):
    with pytest.raises(ValueError, match="period must be a positive duration"):
        parse_period(text)


def test_popularity_shift_is_a_base_2_js_divergence_with_one_bin_for_unknown_items():
    training = np.array([0, 5, 3, 2])
    assert popularity_shift(training, np.repeat([1, 2, 3], [5, 3, 2])) == pytest.approx(0.0)
    assert popularity_shift(training, np.zeros(7, dtype=np.int64)) == pytest.approx(1.0)  # only unknown items
    # two unknown items as one bin: the same value as with a bin of their own each
    p = np.array([0.5, 0.3, 0.2, 0.0, 0.0])
    q = np.array([0.2, 0.2, 0.2, 0.3, 0.1])
    m = (p + q) / 2

    def kl(a):
        return sum(x * np.log2(x / y) for x, y in zip(a, m, strict=True) if x > 0)

    period = np.repeat([1, 2, 3, 0], [2, 2, 2, 4])  # 40 % on unknown items
    assert popularity_shift(training, period) == pytest.approx((kl(p) + kl(q)) / 2)


@pytest.fixture(scope="module")
def recommender(processed) -> Recommender:
    """Sequential rules fitted on the generated dataset's training clicks, wrapped as the service wraps it."""
    data = ProcessedDataset.load(processed)
    model = make_baseline("sr").fit(data.split("train_full"), data.n_items)
    return Recommender(model, data.raw_ids, data.popularity, max_len=5)


def later_clicks(recommender: Recommender, seed: int = 0) -> tuple[Clicks, list[list[tuple[str, float]]]]:
    """Random sessions over two days: mostly known items (popular ones more often), some unknown ones."""
    rng = np.random.default_rng(seed)
    known = recommender.raw_ids[1:].astype(str)
    weights = recommender.popularity[1:] / recommender.popularity[1:].sum()
    sessions = []
    for _ in range(80):
        start = T0 + rng.uniform(0, 2 * DAY)
        length = int(rng.integers(1, 10))
        raw = [str(rng.choice(known, p=weights)) if rng.random() > 0.2 else f"9{rng.integers(10**6)}"
               for _ in range(length)]
        sessions.append([(item, start + 30.0 * i) for i, item in enumerate(raw)])
    rows = [(s, item, t) for s, clicks in enumerate(sessions) for item, t in clicks]
    order = rng.permutation(len(rows))  # any file order
    session, items, times = (np.array(col) for col in zip(*[rows[i] for i in order], strict=True))
    item_ids, codes = np.unique(items.astype(np.int64), return_inverse=True)
    return Clicks(session=session.astype(np.int64), item=codes.astype(np.int32), time=times.astype(np.float64),
                  item_ids=item_ids), sessions


def served_ranks(recommender: Recommender, session: list[str]) -> list[int]:
    """The conservative rank of each next click of ``session``, one request at a time, as the service encodes it;
    a target the model does not know is a miss (rank n_items + 1)."""
    ranks = []
    for i in range(1, len(session)):
        if session[i] not in recommender.index:
            ranks.append(recommender.n_items + 1)
            continue
        ids = recommender.encode(session[:i])
        row = torch.zeros((1, recommender.max_len), dtype=torch.long)
        if ids:
            row[0, -len(ids):] = torch.tensor(ids)
        scores = recommender.score(row)[0]
        target = scores[recommender.index[session[i]]]
        ranks.append(int((scores[1:] >= target).sum()))
    return ranks


def test_replay_ranks_every_position_as_the_service_would_and_counts_unknown_items(recommender):
    clicks, sessions = later_clicks(recommender)
    results = replay(recommender, click_log(clicks, recommender), DAY, progress=False)
    assert [r.index for r in results] == [0, 1] and results[1].start == T0 + DAY
    for r in results:
        mine = [s for s in sessions if int((s[0][1] - T0) // DAY) == r.index]
        ranks = np.array([x for s in mine for x in served_ranks(recommender, [i for i, _ in s])])
        items = [i for s in mine for i, _ in s]
        unknown = [i not in recommender.index for i in items]
        hit = ranks <= 20
        assert r.metrics["predictions"] == len(ranks) and r.metrics["sessions"] == len(mine)
        assert r.metrics["recall_at_20"] == pytest.approx(hit.mean())
        assert r.metrics["mrr_at_20"] == pytest.approx(np.where(hit, 1 / ranks, 0).mean())
        assert r.metrics["unknown_click_share"] == pytest.approx(np.mean(unknown))
        assert r.metrics["unknown_session_share"] == pytest.approx(
            np.mean([any(i not in recommender.index for i, _ in s) for s in mine]))
        assert 0 < r.metrics["recall_at_20"] < 1 and r.metrics["unknown_target_predictions"] > 0


def test_the_verdict_judges_the_last_period_with_enough_predictions():
    def period(index, mrr, unknown, predictions=500):
        return PeriodResult(index, 0.0, {"mrr_at_20": mrr, "unknown_click_share": unknown, "popularity_shift": 0.3,
                                         "predictions": predictions})

    thresholds = Thresholds()
    assert verdict([period(0, 0.30, 0.05), period(1, 0.28, 0.1)], 0.3, thresholds) == ("ok", [])
    decision, reasons = verdict([period(0, 0.30, 0.05), period(1, 0.25, 0.1)], 0.3, thresholds)
    assert decision == "retrain" and "MRR@20 0.2500 < 0.9 x" in reasons[0]
    decision, reasons = verdict([period(0, 0.30, 0.25)], 0.3, thresholds)
    assert decision == "retrain" and "25.0% of the clicks" in reasons[0]
    # a last period of a few sessions is not judged: the one before it is
    assert verdict([period(0, 0.30, 0.05), period(1, 0.0, 0.9, predictions=10)], 0.3, thresholds)[0] == "ok"
    assert verdict([period(0, 0.30, 0.05)], 0.3, Thresholds(max_popularity_shift=0.2))[0] == "retrain"
    with pytest.raises(ValueError, match="max_unknown_share=1.5"):
        Thresholds(max_unknown_share=1.5)


@pytest.fixture(scope="module")
def built_in(tmp_path_factory) -> Path:
    """A directory holding a small built-in dataset (data/raw, data/processed) with an sr champion."""
    import steps.preprocess
    import steps.register
    import steps.train_baseline

    root = tmp_path_factory.mktemp("monitor")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert steps.preprocess.main(["--synthetic-clicks", "12000", "--seed", "2"]) == 0
        assert steps.train_baseline.main(["--data", "data/processed/synthetic-12000-s2", "--model", "sr"]) == 0
        assert steps.register.main(["--data", "data/processed/synthetic-12000-s2", "--name", "monitor-test"]) == 0
    return root


def test_monitor_replays_the_built_in_later_period_and_logs_periods_plot_verdict_and_inputs(built_in, monkeypatch,
                                                                                           capsys):
    monkeypatch.chdir(built_in)
    status, out, err = entry("monitor", ["--model-uri", "models:/monitor-test@champion", "--progress", "false"], capsys)
    assert status == 0, err
    assert out.count("monitor: period ") == 4 and "verdict retrain" in out.splitlines()[-1]
    later = built_in / "data" / "raw" / "synthetic-12000-s2-later"
    assert {"clicks.dat", "buys.dat", "generator.json"} <= {p.name for p in later.iterdir()}
    run = mlflow.get_run(runs_of("monitor")[0].info.run_id)  # with its model inputs
    assert run.info.status == "FINISHED" and run.data.tags["seqrec.monitor.verdict"] == "retrain"
    client = mlflow.MlflowClient()
    for metric in ("monitor_recall_at_20", "monitor_mrr_at_20", "monitor_unknown_click_share",
                   "monitor_unknown_session_share", "monitor_popularity_shift"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == [0, 1, 2, 3] and all(0 <= m.value <= 1 for m in history)
    champion = client.get_model_version_by_alias("monitor-test", "champion")
    assert [m.model_id for m in run.inputs.model_inputs] == [champion.source.split("/")[-1]]
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "synthetic-12000-s2-later" and dataset.tags[0].value == "monitor"
    assert "plots/monitor.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    periods = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                                  artifact_path="monitor.json")).read_text())
    assert [p["period"] for p in periods] == [0, 1, 2, 3]
    # the same clicks given as a file, in halves of days, with thresholds that the model meets
    clicks = str(later / "clicks.dat")
    argv = ["--model-uri", "models:/monitor-test@champion", "--clicks", clicks, "--period", "12h", "--min-mrr-ratio",
            "0.1", "--max-unknown-share", "0.9", "--progress", "false"]
    status, out, err = entry("monitor", argv, capsys)
    assert status == 0, err
    run = runs_of("monitor")[0]
    assert run.data.tags["seqrec.monitor.verdict"] == "ok" and run.data.params["period"] == "12h"
    assert len(client.get_metric_history(run.info.run_id, "monitor_mrr_at_20")) == 8


@pytest.mark.parametrize("argv,message", [
    (["--period", "2x"], "period must be a positive duration"),
    (["--min-mrr-ratio", "-1"], "min_mrr_ratio=-1.0 must be >= 0"),
    (["--max-unknown-share", "2"], "max_unknown_share=2.0 must be in [0, 1]"),
    (["--columns", "session=a"], "columns must name the item, time column(s)"),
    (["--model-uri", "models:/no-such-model@champion"], "no-such-model"),
    (["--clicks", "no/such/file.dat"], "no/such/file.dat"),
])
def test_bad_parameters_fail_in_one_line_before_any_run(built_in, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(built_in)
    before = len(runs_of("monitor"))
    status, out, err = entry("monitor", ["--model-uri", "models:/monitor-test@champion", *argv], capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert err.startswith("monitor: error: ") and len(runs_of("monitor")) == before


def test_without_clicks_a_model_of_other_data_is_told_to_give_them(processed, monkeypatch, tmp_path, capsys):
    from seqrec.workflow.baseline import run_baseline

    run_id = run_baseline(str(processed), "pop")[0]
    monkeypatch.chdir(tmp_path)
    status, _, err = entry("monitor", ["--model-uri", f"runs:/{run_id}/model"], capsys)
    assert status == 2 and "give clicks=PATH" in err and "'synthetic'" in err
