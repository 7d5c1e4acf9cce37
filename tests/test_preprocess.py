import json

import numpy as np
import pytest

from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import DataFormatError, read_clicks


def run(path, out, **kw):
    return preprocess(read_clicks(path), out, PreprocessConfig(min_item_support=2, **kw), "tiny", {"path": str(path)})


def test_protocol_split_on_a_hand_built_dataset(tiny, tmp_path):
    stats = run(tiny, tmp_path / "out")
    assert stats["n_items"] == 4
    expected = {"train_full": (10, 4), "train_tr": (6, 2), "valid": (2, 1), "test": (2, 1)}
    for split, (clicks, sessions) in expected.items():
        assert (stats["splits"][split]["clicks"], stats["splits"][split]["sessions"]) == (clicks, sessions), split
        assert stats["splits"][split]["predictions"] == clicks - sessions
    data = ProcessedDataset.load(tmp_path / "out")
    test = data.split("test")
    assert test.items.tolist() == [4, 1] and test.session_ids.tolist() == [6]
    full = data.split("train_full")
    assert full.session_ids.tolist() == [1, 2, 5, 7]  # ordered by start time
    assert full.items.tolist() == [1, 2, 3, 2, 3, 1, 1, 4, 2, 3]
    assert full.offsets.tolist() == [0, 3, 6, 8, 10]
    assert data.split("valid").items.tolist() == [2, 3]
    mapping = json.loads((tmp_path / "out" / "item_mapping.json").read_text())
    assert mapping == {"1": "1", "2": "2", "3": "3", "4": "4"}
    assert data.popularity.tolist() == [0, 3, 3, 3, 1]


def test_sessions_are_sorted_by_time_whatever_the_file_order(tiny, tmp_path):
    lines = tiny.read_text().splitlines()
    shuffled = [lines[0]] + list(np.random.default_rng(0).permutation(lines[1:]))
    path = tmp_path / "shuffled.tsv"
    path.write_text("\n".join(shuffled) + "\n")
    run(path, tmp_path / "a")
    run(tiny, tmp_path / "b")
    for split in ("train_full", "test"):
        a = ProcessedDataset.load(tmp_path / "a").split(split)
        b = ProcessedDataset.load(tmp_path / "b").split(split)
        assert a.items.tolist() == b.items.tolist()


def test_no_test_sessions_is_an_error_and_writes_nothing(tiny, tmp_path):
    out = tmp_path / "out"
    run(tiny, out)
    before = (out / "stats.json").read_text()
    with pytest.raises(DataFormatError, match="no train_tr sessions|no test sessions|no training sessions"):
        run(tiny, out, test_days=10)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (out / "stats.json").read_text() == before  # the earlier dataset stands


def test_fraction_keeps_the_most_recent_training_sessions(generated, tmp_path):
    clicks = read_clicks(generated[0])
    full = preprocess(clicks, tmp_path / "f1", PreprocessConfig(), "g", {})
    quarter = preprocess(clicks, tmp_path / "f4", PreprocessConfig(fraction=4), "g", {})
    n_full = full["splits"]["train_full"]["sessions"]
    assert quarter["splits"]["train_full"]["sessions"] == n_full // 4
    recent = ProcessedDataset.load(tmp_path / "f4").split("train_full")
    everything = ProcessedDataset.load(tmp_path / "f1").split("train_full")
    assert recent.times.min() >= np.sort(everything.times[everything.offsets[:-1]])[n_full - n_full // 4 - 1]
    assert quarter["splits"]["test"]["clicks"] <= full["splits"]["test"]["clicks"]


def test_reproduces_the_published_sample_split(sample_dir, tmp_path):
    both = tmp_path / "all.tsv"
    full = (sample_dir / "train_full.txt").read_text().splitlines()
    test = (sample_dir / "test.txt").read_text().splitlines()[1:]
    both.write_text("\n".join(full + test) + "\n")
    stats = preprocess(read_clicks(both), tmp_path / "out", PreprocessConfig(min_item_support=1), "s", {})
    assert stats["n_items"] == 2933
    s = stats["splits"]
    assert (s["train_full"]["clicks"], s["train_full"]["sessions"]) == (70_278, 17_794)
    assert (s["test"]["clicks"], s["test"]["sessions"], s["test"]["predictions"]) == (13_568, 3_416, 10_152)
    assert (s["train_tr"]["clicks"], s["train_tr"]["sessions"]) == (53_254, 13_629)
    assert (s["valid"]["clicks"], s["valid"]["sessions"], s["valid"]["predictions"]) == (16_539, 4_084, 12_455)


def test_test_period_with_only_unseen_items_is_an_error(tmp_path):
    path = tmp_path / "unseen.tsv"
    rows = [(1, 1, 0), (1, 2, 10), (2, 2, 100), (2, 1, 110), (3, 1, 86_400 * 2), (3, 2, 86_400 * 2 + 5),
            (4, 7, 86_400 * 4), (4, 8, 86_400 * 4 + 5)]  # the last day holds only items never seen before
    path.write_text("SessionId\tItemId\tTime\n" + "".join(f"{s}\t{i}\t{1e9 + t}\n" for s, i, t in rows))
    with pytest.raises(DataFormatError, match="no test sessions"):
        preprocess(read_clicks(path), tmp_path / "out", PreprocessConfig(min_item_support=1), "u", {})
    assert not (tmp_path / "out").exists()
