import numpy as np
import pytest

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_buys, read_clicks
from seqrec.data.synthetic import SyntheticConfig, generate
from seqrec.evaluation import evaluate
from seqrec.models.baselines import make_baseline


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    """60,000 generated clicks: raw clicks, raw buys and the processed dataset."""
    clicks_path, buys_path = generate(tmp_path_factory.mktemp("raw60k"), SyntheticConfig(n_clicks=60_000, seed=3))
    clicks, buys = read_clicks(clicks_path), read_buys(buys_path)
    out = tmp_path_factory.mktemp("proc60k") / "synthetic"
    preprocess(clicks, out, PreprocessConfig(), "synthetic", {"path": str(clicks_path)}, buys=buys)
    return clicks, buys, ProcessedDataset.load(out)


def session_starts(session: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.concatenate([[True], session[1:] != session[:-1]]))


def test_generated_files_are_yoochoose_format_and_deterministic(generated, tmp_path):
    clicks_path, buys_path = generated
    clicks = read_clicks(clicks_path)  # raw format: parses with the strict reader
    assert len(clicks) == 20_000
    again, again_buys = generate(tmp_path, SyntheticConfig(n_clicks=20_000, seed=7))
    assert again.read_bytes() == clicks_path.read_bytes()
    assert again_buys.read_bytes() == buys_path.read_bytes()
    categories = set(clicks.categories)
    assert {"0", "S"} <= categories
    assert all(c in {"0", "S"} or (c.isdigit() and (1 <= int(c) <= 12 or 8 <= len(c) <= 10)) for c in categories)
    buys = read_buys(buys_path)
    assert set(buys.session) <= set(clicks.session)
    share = len(np.unique(buys.session)) / len(np.unique(clicks.session))
    assert 0.03 < share < 0.09
    assert np.all(buys.quantity >= 0) and np.all((buys.price == 0) == (buys.quantity == 0))


def test_shape_resembles_yoochoose(generated):
    clicks = read_clicks(generated[0])
    _, lengths = np.unique(clicks.session, return_counts=True)
    assert 3.0 < lengths.mean() < 4.2
    assert np.percentile(lengths, 99) > 3 * np.median(lengths)  # heavy tail
    _, counts = np.unique(clicks.item, return_counts=True)
    top = np.sort(counts)[::-1]
    assert 0.45 < top[: len(top) // 10].sum() / top.sum() < 0.75  # long tail of item popularity, as in the sample
    days = (clicks.time.max() - clicks.time.min()) / 86_400
    assert days > 10
    hours = ((clicks.time // 3600) % 24).astype(int)
    by_hour = np.bincount(hours, minlength=24)
    assert by_hour[19] > 3 * by_hour[3]  # daily rhythm


def test_longer_sessions_on_request(tmp_path):
    """``length_log_mean`` lengthens the sessions (the long-session shape of benchmarks/bench_shapes.py)."""
    clicks = read_clicks(generate(tmp_path, SyntheticConfig(n_clicks=20_000, seed=7, length_log_mean=1.55))[0])
    _, lengths = np.unique(clicks.session, return_counts=True)
    assert 7.0 < lengths.mean() < 10.0 and len(clicks.session) == 20_000


def test_repeats_and_returns_occur_at_the_real_rates(larger):
    *_, data = larger
    from seqrec import eda

    summary, _ = eda.compute(data)
    # the real sample: 0.26 consecutive repeats, 0.27 repeat clicks, power-law slope -1.04, Gini 0.67
    assert 0.18 < summary["share_consecutive_repeats"] < 0.34
    assert 0.2 < summary["share_repeat_clicks"] < 0.35
    assert -1.25 < summary["power_law_exponent"] < -0.85
    assert 0.58 < summary["gini"] < 0.75
    split = data.split("train_full")
    items = split.items
    same = np.ones(len(items), dtype=bool)
    same[split.offsets[:-1]] = False  # positions whose predecessor is in the same session
    same2 = same & np.roll(same, 1)
    back = same2 & (items == np.roll(items, 2)) & (items != np.roll(items, 1))  # A B A
    assert back.sum() / same2.sum() > 0.02


def test_the_session_predicts_the_next_click_better_than_its_last_item(larger):
    """Intents shape every click: a session-kNN method beats first-order rules, which beat popularity."""
    *_, data = larger

    def valid_mrr(name: str) -> float:
        model = make_baseline(name).fit(data.split("train_tr"), data.n_items)
        return evaluate(model, data.split("valid"), data.n_items, popularity=data.popularity,
                        progress=False).metrics["mrr_at_20"]

    pop, sr, vstan = valid_mrr("pop"), valid_mrr("sr"), valid_mrr("vstan")
    assert vstan > sr * 1.02
    assert sr > 5 * pop


def test_new_items_appear_over_time(larger):
    clicks, *_ = larger
    last = clicks.time >= clicks.time.max() - 86_400
    seen = np.isin(clicks.item[last], clicks.item[~last])
    assert 0.005 < 1 - seen.mean() < 0.2  # the last day clicks items that no earlier day saw
    day = ((clicks.time - clicks.time.min()) // 86_400).astype(int)
    first_seen = np.full(clicks.item.max() + 1, day.max() + 1)
    np.minimum.at(first_seen, clicks.item, day)
    introduced = np.bincount(first_seen[np.unique(clicks.item)])
    assert introduced[1:].sum() > 0.15 * introduced.sum()  # not all items are there on the first day


def test_buys_depend_on_the_session_and_favour_its_repeated_late_items(larger):
    clicks, buys, _ = larger
    starts = session_starts(clicks.session)
    sessions, lengths = clicks.session[starts], np.diff(np.append(starts, len(clicks.session)))
    buyer = np.isin(sessions, buys.session)
    assert lengths[buyer].mean() > 1.4 * lengths[~buyer].mean()
    long, short = lengths >= 8, lengths <= 2
    assert buyer[long].mean() > 2.5 * buyer[short].mean()
    # bought items are mostly items the session clicked
    key = lambda s, i: s.astype(np.int64) * (1 << 32) + i.astype(np.int64)  # noqa: E731
    raw_items = clicks.raw_items.astype(np.int64)
    clicked = np.unique(key(clicks.session, raw_items))
    assert np.isin(key(buys.session, buys.item), clicked).mean() > 0.85
    # among the clicks of buying sessions, those of bought items are repeated and late more often
    rows = np.isin(clicks.session, buys.session)
    bought = np.isin(key(clicks.session, raw_items), key(buys.session, buys.item))[rows]
    ck = key(clicks.session, raw_items)[rows]
    _, inverse, counts = np.unique(ck, return_inverse=True, return_counts=True)
    repeated = counts[inverse] > 1
    assert repeated[bought].mean() > 1.3 * repeated[~bought].mean()
    ends = np.append(starts[1:], len(clicks.session)) - 1
    bought_pair = np.isin(key(clicks.session, raw_items), key(buys.session, buys.item))
    in_buyer = np.isin(clicks.session[starts], buys.session) & (lengths >= 3)
    assert bought_pair[ends[in_buyer]].mean() > 1.2 * bought_pair[starts[in_buyer]].mean()  # late over early


def test_generation_streams_in_chunks(tmp_path):
    cfg = SyntheticConfig(n_clicks=30_000, seed=1, chunk_sessions=1_000)
    clicks_path, buys_path = generate(tmp_path, cfg)
    clicks = read_clicks(clicks_path)
    assert len(clicks) == 30_000
    assert np.all(np.diff(clicks.session) >= 0)
    starts = clicks.time[session_starts(clicks.session)]
    assert np.all(np.diff(starts) >= -3600 * 24)  # chunks follow each other in time
    buys = read_buys(buys_path)
    assert set(buys.session) <= set(clicks.session)  # buys of every chunk name that chunk's sessions
    assert len(np.unique(buys.session)) > 0.03 * len(starts)
