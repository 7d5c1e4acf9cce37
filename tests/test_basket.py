"""Next-basket prediction: the buys join (no leakage), the challenge score, the models, /basket."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import T0
from test_serving import call, free_port, wait_until_up

from seqrec import eda
from seqrec.basket import features as feats
from seqrec.basket.metrics import BasketPredictions, challenge_score, evaluate_baskets, jaccard, ranking_metrics
from seqrec.data.buys import BasketLabels, join_buys
from seqrec.data.dataset import SPLITS, ProcessedDataset, SessionSplit
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import Buys, read_buys, read_clicks
from seqrec.workflow.basket import FOLDS, MODELS, load_pair, run_basket
from seqrec.workflow.register import run_register

DAY = 86_400.0

# Real yoochoose-buys.dat lines (SessionID,Timestamp,ItemID,Price,Quantity), zero price and quantity included
REAL_BUYS = """420374,2014-04-06T18:44:58.314Z,214537888,12462,1
420374,2014-04-06T18:44:58.325Z,214537850,10471,1
281626,2014-04-06T09:40:13.032Z,214535653,1883,1
489758,2014-04-06T06:48:46.426Z,214577561,0,0
"""


def test_reads_the_real_buys_format(tmp_path):
    path = tmp_path / "yoochoose-buys.dat"
    path.write_text(REAL_BUYS)
    buys = read_buys(path)
    assert buys.session.tolist() == [420374, 420374, 281626, 489758]
    assert buys.item.tolist() == [214537888, 214537850, 214535653, 214577561]
    assert buys.price.tolist() == [12462, 10471, 1883, 0] and buys.quantity.tolist() == [1, 1, 1, 0]
    assert buys.time[0] == pytest.approx(1396809898.314)


def _split(sessions: list[tuple[int, list[int], list[float]]]) -> SessionSplit:
    items = np.array([i for _, its, _ in sessions for i in its], dtype=np.int32)
    times = np.array([t for _, _, ts in sessions for t in ts])
    offsets = np.concatenate([[0], np.cumsum([len(its) for _, its, _ in sessions])]).astype(np.int64)
    return SessionSplit(items, offsets, times, np.array([s for s, _, _ in sessions], dtype=np.int64))


def test_join_keeps_each_splits_buys_before_its_cutoff():
    # raw items 100, 200, 300 are dense 1, 2, 3; test starts at day 3, valid at day 2
    train = _split([(7, [1, 2], [0.0, 10.0]), (5, [2, 3], [DAY, DAY + 5])])
    test = _split([(9, [3, 1], [3 * DAY, 3 * DAY + 9])])
    buys = Buys(session=np.array([5, 5, 7, 9, 9, 9, 4]), item=np.array([300, 300, 100, 100, 999, 100, 100]),
                time=np.array([DAY + 60, DAY + 70, 3 * DAY + 1, 3 * DAY + 99, 3 * DAY + 99, 3 * DAY + 120, 0.0]),
                price=np.zeros(7, np.int64), quantity=np.array([1, 2, 1, 1, 1, 3, 1]))
    labels = join_buys(buys, {"train_full": train, "test": test}, np.array([100, 200, 300]),
                       {"train_full": 3 * DAY})
    full = labels["train_full"]
    # session 7's buy is after the test start: a future buy, not a training label; session 4 has no clicks
    assert full.session.tolist() == [1] and full.item.tolist() == [3] and full.quantity.tolist() == [3]
    assert full.time.tolist() == [DAY + 60]
    t = labels["test"]
    assert t.session.tolist() == [0, 0] and t.raw_item.tolist() == ["100", "999"]
    assert t.item.tolist() == [1, 0] and t.quantity.tolist() == [4, 1]  # 999: outside the vocabulary
    # string ids in any order: matched by value
    shuffled = join_buys(buys, {"test": test}, np.array(["300", "100", "200"]), {})["test"]
    assert shuffled.item.tolist() == [2, 0] and shuffled.raw_item.tolist() == ["100", "999"]


def test_preprocess_joins_buys_without_touching_the_inputs(processed, generated, tmp_path):
    data = ProcessedDataset.load(processed)
    clicks, buys_file = generated
    without = tmp_path / "no-buys"
    preprocess(read_clicks(clicks), without, PreprocessConfig(), "synthetic", {"path": str(clicks)})
    plain = ProcessedDataset.load(without)
    raw = read_buys(buys_file)
    bounds = data.stats["boundaries"]
    cut = {"train_tr": bounds["valid_start"], "valid": bounds["test_start"], "train_full": bounds["test_start"]}
    for split in SPLITS:
        a, b = data.split(split), plain.split(split)
        assert np.array_equal(a.items, b.items) and np.array_equal(a.offsets, b.offsets)  # inputs: clicks only
        labels = BasketLabels.load(processed / "splits" / split)
        assert not (plain.path / "splits" / split / "buys.npz").exists()
        assert labels.time.max() < cut.get(split, np.inf)
        counts = data.stats["splits"][split]
        assert counts["buying_sessions"] == labels.buying(a.n_sessions).sum() > 0
        assert counts["bought_items"] == len(labels)
        # every label is a buy of the raw file by that session
        rows = set(zip(raw.session.tolist(), raw.item.astype(str).tolist(), strict=True))
        assert {(int(a.session_ids[s]), i) for s, i in zip(labels.session, labels.raw_item, strict=True)} <= rows


def test_preprocess_drops_buys_after_the_cutoff(tiny, tmp_path):
    # the hand-built split (conftest): train_tr = sessions 1, 2; valid = 7; test = 6; valid starts at
    # T0 + DAY + 110 and test at T0 + 2.5 DAY + 110
    buys = Buys(session=np.array([1, 2, 7, 6, 6]), item=np.array([2, 3, 2, 1, 4]),
                time=T0 + np.array([50.0, DAY + 200, 2.6 * DAY, 3.5 * DAY + 20, 3.5 * DAY + 30]),
                price=np.zeros(5, np.int64), quantity=np.ones(5, np.int64))
    out = tmp_path / "tiny"
    stats = preprocess(read_clicks(tiny), out, PreprocessConfig(min_item_support=2), "tiny", {"path": str(tiny)},
                       buys=buys)
    data = ProcessedDataset.load(out)
    bought = {}
    for split in SPLITS:
        labels = BasketLabels.load(out / "splits" / split)
        ids = data.split(split).session_ids
        bought[split] = sorted((int(ids[s]), r) for s, r in zip(labels.session, labels.raw_item, strict=True))
        assert stats["splits"][split]["buying_sessions"] == len({s for s, _ in bought[split]})
    assert bought["train_tr"] == [(1, "2")]  # session 2 bought after valid started
    assert bought["train_full"] == [(1, "2"), (2, "3")]
    assert bought["valid"] == []  # session 7 bought after test started
    assert bought["test"] == [(6, "1"), (6, "4")]
    summary, agg = eda.compute(data)
    assert summary["basket_buying_sessions"] == 3 and summary["share_bought_items_clicked"] == 1.0
    assert summary["median_seconds_last_click_to_buy"] == pytest.approx(27.5)  # 30, DAY + 80, 15, 25 s
    assert agg["conversion_by_length"][:2].tolist() == [1 / 3, 1.0]  # length 2: 6 of 5, 6, 7; 3: both 1, 2


def _labels(rows: list[tuple[int, int]]) -> BasketLabels:
    s = np.array([r[0] for r in rows], dtype=np.int64)
    i = np.array([r[1] for r in rows], dtype=np.int32)
    return BasketLabels(s, i, i.astype(str), np.ones(len(rows), np.int64), np.zeros(len(rows)))


def test_challenge_score_by_hand():
    # 4 sessions; 0 and 1 bought ({1, 2} and {3}); we predict 0 buys {1}, 1 buys {3, 4}, 2 buys {5}
    labels = _labels([(0, 1), (0, 2), (1, 3)])
    pred = BasketPredictions(np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 1, 1, 2]), np.array([1, 3, 4, 5]),
                             np.ones(4))
    chosen = np.ones(4, dtype=bool)
    jac = jaccard(pred, chosen, labels, n_items=5)
    assert jac.tolist() == [0.5, 0.5, 0.0, 0.0]
    bought = labels.buying(4)
    # |S_b|/|S| = 0.5: (0.5 + 0.5) + (0.5 + 0.5) - 0.5 = 1.5; max = 2 * (0.5 + 1) = 3
    assert challenge_score(np.array([True, True, True, False]), jac, bought) == pytest.approx(0.5)
    assert challenge_score(bought, np.array([1.0, 1.0, 0, 0]), bought) == pytest.approx(1.0)
    assert challenge_score(np.zeros(4, bool), jac, bought) == 0.0
    assert challenge_score(np.array([False, False, True, True]), jac, bought) == pytest.approx(-1 / 3)


def test_basket_ranking_by_hand():
    # session 0 clicked 4 (score .9) and 2 (.5), bought 2 and 3; items ranked after them: 1, 3, 5 (fallback)
    pred = BasketPredictions(np.array([1.0]), np.array([0, 0]), np.array([4, 2]), np.array([0.9, 0.5]))
    fallback = np.array([0, 1, 4, 2, 5, 3])  # global rank of ids 1..5: 1, 3, 5, 2, 4 in that order
    m = ranking_metrics(pred, _labels([(0, 2), (0, 3)]), fallback, ks=(2, 3, 4))
    # ranks: 2 -> 2, 3 -> 2 candidates + 2nd of the non-candidates (1, 3, 5) = 4
    assert m["basket_recall_at_2"] == 0.5 and m["basket_recall_at_3"] == 0.5 and m["basket_recall_at_4"] == 1.0
    ideal = 1 + 1 / np.log2(3)
    assert m["basket_ndcg_at_4"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)


def test_training_features_see_no_own_label(processed):
    data = ProcessedDataset.load(processed)
    tr, va = load_pair(data, "train_tr", "valid")
    split, labels, f = data.split("train_tr"), tr.labels, tr.features
    # drop the buys of the sessions of fold 0: the features of those sessions must not change
    fold0 = labels.session % FOLDS == 0
    assert fold0.any()
    kept = BasketLabels(*(getattr(labels, k)[~fold0] for k in ("session", "item", "raw_item", "quantity", "time")))
    stats = feats.item_stats(split.items, split.offsets, kept, data.n_items, tr.stats.category)
    g = feats.build(split.items, split.offsets, split.times, stats, kept, folds=FOLDS)
    rows = np.arange(f.n_sessions) % FOLDS == 0
    pairs = rows[f.candidates.session]
    assert np.array_equal(f.session[rows], g.session[rows], equal_nan=True)
    assert np.array_equal(f.pair[pairs], g.pair[pairs], equal_nan=True)
    assert not np.array_equal(f.label_buy[rows], g.label_buy[rows])  # the labels did change
    assert not np.array_equal(f.pair, g.pair, equal_nan=True)  # and other folds' features saw it
    assert va.features.label_buy.sum() == va.labels.buying(va.features.n_sessions).sum()


@pytest.fixture(scope="module")
def basket_runs(processed):
    runs = {}
    for model in MODELS:
        params = {"epochs": 2, "preset": "tiny", "threads": 1} if model in ("sasrec", "gru4rec") else {}
        if model == "gbdt":
            params = {"max_iter": 30, "threads": 1}
        runs[model] = run_basket(str(processed), model, params)
    return runs


def test_every_model_logs_the_protocol(basket_runs):
    client = mlflow.MlflowClient()
    for model, (run_id, test) in basket_runs.items():
        run = client.get_run(run_id)
        assert run.data.tags["seqrec.model"] == f"basket-{model}"
        for key in ("test_buy_auc", "test_buy_f1", "test_challenge_score", "test_basket_recall_at_10",
                    "test_basket_recall_at_20", "test_basket_ndcg_at_10", "test_basket_ndcg_at_20",
                    "best_val_challenge_score", "best_val_buy_auc"):
            assert key in run.data.metrics, (model, key)
        assert 0.0 <= test["test_buy_auc"] <= 1.0 and -1.0 <= test["test_challenge_score"] <= 1.0
        assert 0.0 < test["test_basket_recall_at_20"] <= 1.0
        logged = mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")
        assert len(logged) == 1 and logged[0].tags["seqrec.model"] == f"basket-{model}"
    assert basket_runs["clicked"][1]["test_buy_auc"] == 0.5  # a constant buy score
    history = client.get_metric_history(basket_runs["sasrec"][0], "val_challenge_score")
    assert [m.step for m in history] == [1, 2]


def test_pyfunc_predicts_baskets(basket_runs, processed):
    model = mlflow.pyfunc.load_model(f"runs:/{basket_runs['gbdt'][0]}/model")
    data = ProcessedDataset.load(processed)
    test = data.split("test")
    session = [str(data.raw_ids[i]) for i in test.items[test.offsets[0]:test.offsets[1]]]
    out = model.predict(pd.DataFrame({"session": [session, [], ["unknown"]], "k": [5, 5, 5]}))
    assert list(out.columns) == ["buy_probability", "items", "scores", "basket"]
    assert all(0.0 <= p <= 1.0 for p in out["buy_probability"])
    clicked = list(dict.fromkeys(session))
    assert set(out["items"][0][: min(5, len(clicked))]) <= set(clicked)  # clicked items come first
    assert out["items"][1] == out["items"][2] and out["basket"][1] == []


@pytest.fixture(scope="module")
def basket_server(basket_runs, processed):
    decided = run_register(str(processed), metric="best_val_challenge_score", name="seqrec-basket")
    score = {run_id: mlflow.get_run(run_id).data.metrics["best_val_challenge_score"]
             for run_id, _ in basket_runs.values()}
    assert score[decided["run_id"]] == max(score.values())  # registered by its validation score
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from seqrec.serving.api import main; main()",
                             "--model-uri", "models:/seqrec-basket@champion", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/health", proc)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_basket_endpoint(basket_server, processed):
    data = ProcessedDataset.load(processed)
    known = [str(data.raw_ids[i]) for i in (1, 2, 1)]
    status, body = call(basket_server + "/basket", {"session": known, "k": 4})
    assert status == 200 and set(body) == {"buy_probability", "items", "scores", "basket"}
    assert len(body["items"]) == 4 and set(body["items"][:2]) == {known[0], known[1]}
    assert 0.0 <= body["buy_probability"] <= 1.0 and body["scores"] == sorted(body["scores"], reverse=True)
    status, timed = call(basket_server + "/basket", {"session": known, "times": [0, 60, 400.5], "k": 4})
    assert status == 200 and len(timed["items"]) == 4
    status, batch = call(basket_server + "/basket", {"sessions": [known, []], "k": 3})
    assert status == 200 and len(batch["results"]) == 2 and batch["results"][1]["basket"] == []
    for payload, field in (({"session": known, "k": 0}, "k"), ({"session": "abc"}, "session"),
                           ({"session": known, "k": "5"}, "k"), ({"session": known, "times": [1]}, "times"),
                           ({"session": [1.5]}, "session"), ({"session": known, "extra": 1}, "extra"),
                           ({"session": [1] * 10_001}, "session")):
        status, body = call(basket_server + "/basket", payload)
        assert status == 422 and field in str(body["detail"]), (payload, body)
    status, body = call(basket_server + "/basket", raw=b"{not json")
    assert status == 422
    status, _ = call(basket_server + "/health")
    assert status == 200


def test_scores_with_thresholds_from_valid(processed):
    data = ProcessedDataset.load(processed)
    tr, va = load_pair(data, "train_tr", "valid")
    from seqrec.basket.metrics import choose_thresholds
    from seqrec.basket.models import CountBaseline

    pred = CountBaseline().fit(tr.features).predict(va.features)
    th = choose_thresholds(pred, va.labels, data.n_items)
    best = evaluate_baskets(pred, va.labels, th, tr.stats.fallback_ranks())["challenge_score"]
    for shift in (-2, 2):  # the chosen buy threshold is at least as good on valid as its neighbours
        other = type(th)(th.item, th.buy + shift, th.buy_f1)
        assert evaluate_baskets(pred, va.labels, other, tr.stats.fallback_ranks())["challenge_score"] <= best + 1e-12
