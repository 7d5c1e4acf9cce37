import numpy as np

from seqrec.data.dataset import SessionSplit, gather_windows
from seqrec.data.loader import SequenceLoader, session_windows


def split_of(sessions):
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sessions])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    return SessionSplit(items, offsets, np.arange(len(items), dtype=float), np.arange(len(sessions)))


def test_gather_windows_left_pads_and_keeps_the_last_clicks():
    items = np.array([5, 6, 7, 8, 9])
    out = gather_windows(items, np.array([0, 0, 2]), np.array([2, 5, 3]), 3)
    assert out.tolist() == [[0, 5, 6], [7, 8, 9], [0, 0, 7]]


def test_every_click_after_the_first_is_a_target_exactly_once():
    sessions = [[1, 2], [3, 4, 5, 6, 7, 8, 9, 10], [2, 2, 2]]
    loader = SequenceLoader(split_of(sessions), max_len=3, batch_size=2, shuffle=True, seed=1, bucket=False)
    targets, pairs = [], set()
    for inputs, target in loader:
        assert inputs.shape[1] == 3
        mask = target > 0
        assert ((inputs > 0) == mask).all()  # inputs and targets share the padding
        targets += target[mask].tolist()
        pairs |= {tuple(row) for row in torch_rows(inputs, target)}
    assert sorted(targets) == sorted([2, 4, 5, 6, 7, 8, 9, 10, 2, 2])
    # the window ending at the last click keeps the full context, the earlier one what is left
    assert ((7, 8, 9), (8, 9, 10)) in pairs and ((4, 5, 6), (5, 6, 7)) in pairs
    assert ((0, 0, 3), (0, 0, 4)) in pairs


def torch_rows(inputs, target):
    return [(tuple(i), tuple(t)) for i, t in zip(inputs.tolist(), target.tolist(), strict=True)]


def test_windows_are_proportional_to_clicks_not_clicks_times_max_len():
    split = split_of([[1, 2, 3]] * 100)
    start, end = session_windows(split, 50)
    assert len(start) == 100
    assert (end - start).tolist() == [2] * 100


def test_shuffle_is_deterministic_per_seed_and_epoch():
    split = split_of([[i, i + 1] for i in range(1, 40)])
    a = [x.tolist() for x, _ in SequenceLoader(split, 4, 8, seed=3)]
    b = [x.tolist() for x, _ in SequenceLoader(split, 4, 8, seed=3)]
    loader = SequenceLoader(split, 4, 8, seed=3)
    loader.set_epoch(1)
    c = [x.tolist() for x, _ in loader]
    assert a == b and a != c


def test_bucketing_trims_padding_and_keeps_every_target():
    sessions = [[1, 2], [3, 4, 5, 6, 7, 8, 9, 10], [2, 2, 2], [5, 6]]
    plain = SequenceLoader(split_of(sessions), max_len=4, batch_size=2, seed=1, bucket=False)
    bucketed = SequenceLoader(split_of(sessions), max_len=4, batch_size=2, seed=1)
    widths, rows = [], set()
    for inputs, target in bucketed:
        widths.append(inputs.shape[1])
        assert (inputs[:, -1] > 0).all()  # right-aligned: every row ends with a real click
        rows |= {tuple(t[t > 0].tolist()) for t in target}
    assert sorted(widths) == [1, 3, 4]  # window lengths 1, 1 | 2, 3 | 4 in batches of two
    assert rows == {tuple(t[t > 0].tolist()) for _, tt in plain for t in tt}


def test_prefix_rows_hold_each_prefix_once_with_only_the_next_click_as_target():
    sessions = [[1, 2], [3, 4, 5, 6, 7], [2, 2, 2], [9]]
    loader = SequenceLoader(split_of(sessions), max_len=3, batch_size=3, seed=2, prefixes=True)
    rows = []
    for inputs, target in loader:
        assert (target[:, :-1] == 0).all() and (target[:, -1] > 0).all()
        rows += [(tuple(i[i > 0].tolist()), int(t[-1])) for i, t in zip(inputs, target, strict=True)]
    expected = [((1,), 2), ((3,), 4), ((3, 4), 5), ((3, 4, 5), 6), ((4, 5, 6), 7), ((2,), 2), ((2, 2), 2)]
    assert sorted(rows) == sorted(expected)
