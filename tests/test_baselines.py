import dataclasses
import math

import numpy as np
import pytest
import torch

from seqrec.data.dataset import ProcessedDataset, SessionSplit
from seqrec.evaluation import evaluate
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.models.baselines.sknn import SessionKNN, SKNNConfig


def split_of(sessions, times=None):
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sessions])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    t = np.arange(len(items), dtype=float) if times is None else np.asarray(times, dtype=float)
    return SessionSplit(items, offsets, t, np.arange(len(sessions)))


def padded(*prefixes, width=5):
    out = np.zeros((len(prefixes), width), dtype=np.int64)
    for row, p in enumerate(prefixes):
        out[row, width - len(p):] = p
    return out


@pytest.fixture(scope="module")
def fitted(processed):
    """Every baseline fitted on the generated data's train_tr split, and some test prefixes to score."""
    data = ProcessedDataset.load(processed)
    train, test = data.split("train_tr"), data.split("test")
    prefixes = [test.items[a:a + n].tolist() for a, n in zip(test.offsets[:30], [1, 2, 3, 5, 8] * 6, strict=True)]
    models = {name: make_baseline(name).fit(train, data.n_items) for name in BASELINES}
    return models, padded(*prefixes, width=8)


@pytest.mark.parametrize("name", BASELINES)
def test_state_dict_round_trips_through_npz_without_pickle(name, fitted, tmp_path):
    model = fitted[0][name]
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for v in state.values())
    assert int(state["n_items"]) == model.n_items
    np.savez(tmp_path / "state.npz", **state)
    with np.load(tmp_path / "state.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == sorted(state)
        rebuilt = make_baseline(name, **dataclasses.asdict(model.config)).load_state_dict(saved)
    inputs = np.concatenate([fitted[1], np.zeros((1, fitted[1].shape[1]), dtype=np.int64)])
    np.testing.assert_array_equal(rebuilt.score_numpy(inputs), model.score_numpy(inputs))
    assert rebuilt.n_parameters == model.n_parameters


def test_state_dict_stores_sparse_matrices_as_csr_parts(fitted):
    model = fitted[0]["sr"]
    state = model.state_dict()
    assert sorted(state) == ["matrix.data", "matrix.indices", "matrix.indptr", "matrix.shape", "n_items"]
    assert state["matrix.shape"].tolist() == [model.n_items + 1] * 2
    assert {"session_items.indptr", "item_sessions.data", "session_end"} <= set(fitted[0]["vstan"].state_dict())


@pytest.mark.parametrize(("name", "key"), [("pop", "popularity"), ("sr", "matrix.indptr"), ("vstan", "n_items")])
def test_load_state_dict_names_a_missing_key(name, key, fitted):
    state = fitted[0][name].state_dict()
    del state[key]
    with pytest.raises(ValueError, match=rf"'{name}'.*'{key}'"):
        make_baseline(name).load_state_dict(state)


@pytest.mark.parametrize("name", BASELINES)
def test_rows_of_only_padding_score_zeros_or_popularity(name, fitted):
    model, prefixes = fitted[0][name], fitted[1]
    width = prefixes.shape[1]
    mixed = np.zeros((2 * len(prefixes) + 1, width), dtype=np.int64)
    mixed[1::2] = prefixes  # empty rows first, last and between the others
    for batch in (np.zeros((4, width), dtype=np.int64), np.zeros((1, width), dtype=np.int64), mixed):
        scores = model.score_numpy(batch)
        assert scores.shape == (len(batch), model.n_items + 1)
        empty = scores[(batch == 0).all(1)]
        if name in ("pop", "spop"):  # popularity, scaled
            np.testing.assert_allclose(empty / empty.max(1, keepdims=True),
                                       np.broadcast_to(model.popularity / model.popularity.max(), empty.shape))
        else:
            assert not empty.any()
    np.testing.assert_array_equal(model.score_numpy(mixed)[1::2], model.score_numpy(prefixes))
    assert model.score(torch.zeros((2, width), dtype=torch.long)).shape == (2, model.n_items + 1)


def test_pop_and_spop():
    split = split_of([[1, 2, 2], [2, 3]])
    pop = make_baseline("pop").fit(split, 4)
    assert pop.score_numpy(padded([1]))[0].tolist() == [0, 1, 3, 1, 0]
    spop = make_baseline("spop").fit(split, 4)
    scores = spop.score_numpy(padded([3, 1, 1]))[0]
    assert np.argsort(-scores[1:])[:3].tolist() == [0, 2, 1]  # item 1 (twice), item 3, then popular item 2


def test_sequential_rules_weights_by_distance_within_steps():
    split = split_of([[1, 2, 3, 4]])
    sr = make_baseline("sr", steps=2).fit(split, 4)
    m = sr.matrix.toarray()
    assert m[1, 2] == 1.0 and m[1, 3] == 0.5 and m[1, 4] == 0.0  # 4 is 3 steps after 1
    assert m[2, 1] == 0.0  # rules are directed
    assert sr.score_numpy(padded([4, 2]))[0].tolist() == [0, 0, 0, 1.0, 0.5]


def test_rules_keep_only_the_strongest_per_item():
    split = split_of([[1, 2], [1, 2], [1, 3], [1, 4], [1, 4], [1, 4]])
    sr = make_baseline("sr", pruning=2).fit(split, 4)
    assert sr.matrix[1].toarray().tolist() == [[0, 0, 2.0, 0, 3.0]]


def test_association_rules_are_symmetric_counts():
    ar = make_baseline("ar").fit(split_of([[1, 2, 3], [3, 1]]), 3)
    m = ar.matrix.toarray()
    assert m[1, 3] == m[3, 1] == 2 and m[1, 2] == m[2, 1] == 1 and m[2, 3] == 1


def test_item_knn_similarity():
    ar = make_baseline("itemknn", lmbd=0.0, alpha=0.5).fit(split_of([[1, 2], [1, 2], [1, 3]]), 3)
    m = ar.matrix.toarray()
    assert m[1, 2] == pytest.approx(2 / math.sqrt(3 * 2))
    assert m[1, 1] == 0


def naive_knn(sessions, times, prefix, cfg: SKNNConfig):
    """A direct transcription of the per-prefix algorithm, for small data (no sampling, no top-k)."""
    length = len(prefix)
    pos_w = {}
    for pos, item in enumerate(prefix, start=1):
        pos_w[item] = {"none": 1.0, "quadratic": (pos / length) ** 2,
                       "exp": math.exp((pos - length) / cfg.spw) if cfg.spw else 1.0}[cfg.position_weight]
    current = set(prefix)
    n_sessions = len(sessions)
    idf = {}
    for s in sessions:
        for i in set(s):
            idf[i] = idf.get(i, 0) + 1
    idf = {i: math.log(n_sessions / c) for i, c in idf.items()}
    t_ref = max(t[-1] for t in times)
    scores = {}
    for s, t in zip(sessions, times, strict=True):
        shared = current & set(s)
        if not shared:
            continue
        if cfg.similarity == "vec":
            sim = sum(pos_w[i] for i in shared) / len(pos_w)
        elif cfg.similarity == "cosine":
            norm = math.sqrt(sum(w * w for w in pos_w.values())) * math.sqrt(len(set(s)))
            sim = sum(pos_w[i] for i in shared) / norm
        else:
            sim = len(shared) / len(current | set(s))
        if cfg.snh_days:
            sim *= math.exp(-(t_ref - t[-1]) / (cfg.snh_days * 86400))
        step = next(i for i, item in enumerate(reversed(prefix), start=1) if item in s)
        decay = {"none": 1.0, "quadratic": 1 / step**2, "div": 1 / step}[cfg.score_decay]
        if cfg.ipw:
            decay *= math.exp((length - step + 1 - length) / cfg.ipw)
        last_pos = {item: p for p, item in enumerate(s, start=1)}
        star = max(p for p, item in enumerate(s, start=1) if item in current)
        for item in set(s):
            v = sim * decay
            if cfg.inh:
                v *= math.exp(-abs(last_pos[item] - star) / cfg.inh)
            if cfg.idf:
                v *= 1 + idf[item] * cfg.idf
            scores[item] = scores.get(item, 0.0) + v
    return scores


@pytest.mark.parametrize("variant", ["sknn", "vsknn", "stan", "vstan"])
def test_session_knn_matches_a_direct_transcription(variant, processed):
    data = ProcessedDataset.load(processed)
    train = data.split("train_tr")
    sessions = [train.items[a:b].tolist() for a, b in zip(train.offsets[:-1], train.offsets[1:], strict=True)]
    times = [train.times[a:b].tolist() for a, b in zip(train.offsets[:-1], train.offsets[1:], strict=True)]
    model = SessionKNN.variant(variant, k=10**6, sample_size=10**6, spw=0.5 if variant == "stan" else
                               SessionKNN.variant(variant).config.spw).fit(train, data.n_items)
    test = data.split("test")
    prefixes = [test.items[a:a + n].tolist() for a, n in zip(test.offsets[:20], [1, 2, 3, 4] * 5, strict=True)]
    width = max(len(p) for p in prefixes)
    got = model.score_numpy(padded(*prefixes, width=width))
    for row, prefix in enumerate(prefixes):
        want = naive_knn(sessions, times, prefix, model.config)
        expected = np.zeros(data.n_items + 1)
        expected[list(want)] = list(want.values())
        np.testing.assert_allclose(got[row], expected, rtol=1e-9, atol=1e-12)


def test_neighbours_are_limited_to_k_most_similar_and_sample_most_recent():
    split = split_of([[1, 2], [1, 3], [1, 4, 6], [5, 6]], times=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    model = SessionKNN(SKNNConfig(k=1, sample_size=2, similarity="jaccard", position_weight="none",
                                  score_decay="none")).fit(split, 6)
    # candidates for [1]: sessions 0, 1, 2; the 2 most recent are 1 and 2 (session 0 is not sampled);
    # Jaccard 1/2 for session 1 beats 1/3 for session 2, and k=1 keeps only session 1
    assert model.score_numpy(padded([1]))[0].tolist() == [0, 0.5, 0, 0.5, 0, 0, 0]


def test_faithful_to_published_numbers_on_the_sample(sample_dir, tmp_path):
    from seqrec.data.preprocess import PreprocessConfig, preprocess
    from seqrec.data.readers import read_clicks

    both = tmp_path / "all.tsv"
    full = (sample_dir / "train_full.txt").read_text().splitlines()
    test = (sample_dir / "test.txt").read_text().splitlines()[1:]
    both.write_text("\n".join(full + test) + "\n")
    preprocess(read_clicks(both), tmp_path / "p", PreprocessConfig(min_item_support=1), "sample", {})
    data = ProcessedDataset.load(tmp_path / "p")
    published = {"sr": (0.6177, 0.347), "vsknn": (0.6668, 0.369)}
    for name, (recall, mrr) in published.items():
        model = make_baseline(name).fit(data.split("train_full"), data.n_items)
        m = evaluate(model, data.split("test"), data.n_items, progress=False).metrics
        assert m["predictions"] == 10_152
        assert abs(m["recall_at_20"] - recall) <= 0.01, (name, m["recall_at_20"])
        assert abs(m["mrr_at_20"] - mrr) <= 0.01, (name, m["mrr_at_20"])


@pytest.mark.parametrize(("name", "params", "message"), [
    ("vsknn", {"k": 2.5}, r"vsknn: k=2\.5 \(float\) is not an int"),
    ("sr", {"steps": True}, r"sr: steps=True \(bool\) is not an int"),
    ("itemknn", {"alpha": "x"}, r"itemknn: alpha='x' \(str\) is not a float \(or an int\)"),
    ("stan", {"similarity": 1}, r"stan: similarity=1 \(int\) is not a str"),
    ("ar", {"prunning": 5}, r"unknown parameter\(s\) \['prunning'\] for baseline ar; expected fields of ARConfig"),
])
def test_overrides_are_checked_against_the_config_fields(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_baseline(name, **params)


def test_an_int_is_accepted_for_a_float_field():
    assert make_baseline("itemknn", lmbd=3).config.lmbd == 3
    assert make_baseline("vstan", snh_days=7, k=50).config.k == 50
