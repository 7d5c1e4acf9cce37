import numpy as np

from seqrec.data.readers import read_buys, read_clicks
from seqrec.data.synthetic import SyntheticConfig, generate


def test_generated_files_are_yoochoose_format_and_deterministic(generated, tmp_path):
    clicks_path, buys_path = generated
    clicks = read_clicks(clicks_path)  # raw format: parses with the strict reader
    assert len(clicks) == 20_000
    again, _ = generate(tmp_path, SyntheticConfig(n_clicks=20_000, seed=7))
    assert again.read_bytes() == clicks_path.read_bytes()
    categories = set(clicks.categories)
    assert {"0", "S"} <= categories
    assert all(c in {"0", "S"} or (c.isdigit() and (1 <= int(c) <= 12 or 8 <= len(c) <= 10)) for c in categories)
    buys = read_buys(buys_path)
    assert set(buys.session) <= set(clicks.session)
    share = len(np.unique(buys.session)) / len(np.unique(clicks.session))
    assert 0.01 < share < 0.1


def test_shape_resembles_yoochoose(generated):
    clicks = read_clicks(generated[0])
    _, lengths = np.unique(clicks.session, return_counts=True)
    assert 3.0 < lengths.mean() < 4.2
    assert np.percentile(lengths, 99) > 3 * np.median(lengths)  # heavy tail
    _, counts = np.unique(clicks.item, return_counts=True)
    top = np.sort(counts)[::-1]
    assert top[: len(top) // 10].sum() / top.sum() > 0.35  # long tail of item popularity
    days = (clicks.time.max() - clicks.time.min()) / 86_400
    assert days > 10
    hours = ((clicks.time // 3600) % 24).astype(int)
    by_hour = np.bincount(hours, minlength=24)
    assert by_hour[19] > 3 * by_hour[3]  # daily rhythm


def test_next_click_is_predictable_beyond_popularity(generated):
    clicks = read_clicks(generated[0])
    same = clicks.session[1:] == clicks.session[:-1]
    prev, nxt = clicks.item[:-1][same], clicks.item[1:][same]
    pairs, counts = np.unique(np.stack([prev, nxt]), axis=1, return_counts=True)
    # most frequent successor of each item, as a predictor of the next click
    order = np.lexsort((-counts, pairs[0]))
    first = np.concatenate([[True], np.diff(pairs[0][order]) != 0])
    best = dict(zip(pairs[0][order][first], pairs[1][order][first], strict=True))
    markov_hit = np.mean([best[p] == n for p, n in zip(prev, nxt, strict=True)])
    items, item_counts = np.unique(clicks.item, return_counts=True)
    pop_hit = np.mean(nxt == items[np.argmax(item_counts)])
    assert markov_hit > 0.25 and markov_hit > 5 * pop_hit


def test_generation_streams_in_chunks(tmp_path):
    cfg = SyntheticConfig(n_clicks=30_000, seed=1, chunk_sessions=1_000)
    clicks_path, _ = generate(tmp_path, cfg)
    clicks = read_clicks(clicks_path)
    assert len(clicks) == 30_000
    assert np.all(np.diff(clicks.session) >= 0)
    starts = clicks.time[np.concatenate([[True], np.diff(clicks.session) != 0])]
    assert np.all(np.diff(starts) >= -3600 * 24)  # chunks follow each other in time
