import numpy as np
import pytest
import torch

from seqrec.data.dataset import SessionSplit
from seqrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from seqrec.optim import IndexedAdagradM


def split_of(sessions, starts=None):
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sessions])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    times = np.zeros(len(items))
    if starts is not None:
        times[offsets[:-1]] = starts
    return SessionSplit(items, offsets, times, np.arange(len(sessions)))


def gru(**kw):
    torch.manual_seed(0)
    cfg = GRU4RecConfig(**{"hidden": 8, "n_sample": 4, "sample_store": 40, **kw})
    return GRU4Rec(9, cfg, torch.ones(10))


def test_session_parallel_batches_follow_sessions_and_reset_only_new_rows():
    split = split_of([[1, 2, 3], [4, 5], [6, 7, 8, 9], [1, 1]], starts=[0, 1, 2, 3])
    steps = list(gru().batches(split, batch_size=2, seed=0, epoch=0))
    pairs = [(i.tolist(), t.tolist()) for i, t, _, _ in steps]
    # rows: session 0 and session 1; session 1 ends first, its row takes session 2, then session 3 ...
    assert pairs[0] == ([1, 4], [2, 5])
    assert pairs[1] == ([2, 6], [3, 7])
    assert steps[1][3].tolist() == [False, True]  # only the row that took a new session is reset
    assert pairs[2] == ([1, 7], [1, 8])  # session 0 ended: its row takes session 3 (time order)
    assert steps[2][3].tolist() == [True, False]
    assert pairs[3] == ([8], [9])  # no session left for the finished row: the batch shrinks
    assert steps[3][2].tolist() == [False, True]
    targets = sorted(t for _, ts in pairs for t in ts)
    assert targets == sorted([2, 3, 5, 7, 8, 9, 1])  # every click after the first, once, no padding


def test_sessions_are_ordered_by_first_click_or_shuffled():
    split = split_of([[1, 2], [3, 4], [5, 6]], starts=[30, 10, 20])
    first = next(iter(gru().batches(split, batch_size=3, seed=0, epoch=0)))
    assert first[0].tolist() == [3, 5, 1]
    shuffled = gru(session_order="shuffle")
    orders = {tuple(next(iter(shuffled.batches(split, 3, 0, e)))[0].tolist()) for e in range(6)}
    assert len(orders) > 1


def test_hidden_state_resets_per_row_and_is_detached():
    model = gru(dropout_hidden=0.0).train()
    split = split_of([[1, 2, 3], [4, 5], [6, 7, 8]], starts=[0, 1, 2])
    batches = iter(model.batches(split, batch_size=2, seed=0, epoch=0))
    model.loss(next(batches))
    before = model.state.clone()
    assert not model.state.requires_grad
    batch = next(batches)  # row 1 restarts with session 2
    inputs, _, _, reset = batch
    model.loss(batch)
    expected_row1 = model.step(inputs[1:], torch.zeros(1, 1, 8))
    torch.testing.assert_close(model.state[:, 1:], expected_row1.detach())
    expected_row0 = model.step(inputs[:1], before[:, :1])
    torch.testing.assert_close(model.state[:, :1], expected_row0.detach())


@pytest.mark.parametrize("kw", [{}, {"constrained_embedding": False, "embedding": 6},
                                {"constrained_embedding": False, "embedding": 0}, {"loss": "bprmax"},
                                {"layers": 2, "n_sample": 0}])
def test_variants_train_and_score_all_items(kw):
    model = gru(**kw).train()
    split = split_of([[1, 2, 3, 4], [5, 6, 7], [8, 9, 1]], starts=[0, 1, 2])
    opt = IndexedAdagradM(model.parameters(), lr=0.1)
    for batch in model.batches(split, batch_size=2, seed=0, epoch=0):
        loss = model.loss(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    scores = model.eval().score(torch.tensor([[0, 0, 1, 2], [0, 0, 0, 5]]))
    assert scores.shape == (2, 10) and torch.isinf(scores[:, 0]).all()
    # scoring a padded prefix equals running the GRU on the clicks alone
    alone = model.score(torch.tensor([[5]]))
    torch.testing.assert_close(scores[1:], alone)


def test_uniform_init_bounds():
    model = GRU4Rec(100, GRU4RecConfig(hidden=20, constrained_embedding=False, embedding=10))
    bound = np.sqrt(6 / (101 + 20))
    assert model.Wy.weight.abs().max() <= bound and model.Wy.weight.abs().max() > 0.8 * bound
    assert (model.By.weight == 0).all()


def test_indexed_adagrad_updates_only_touched_rows():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    before = emb.weight.detach().clone()
    opt = IndexedAdagradM(emb.parameters(), lr=0.1, momentum=0.5)
    emb(torch.tensor([1, 1, 3])).sum().backward()
    opt.step()
    changed = (emb.weight.detach() != before).any(1).tolist()
    assert changed == [False, True, False, True, False]
    # Adagrad: the first step moves each touched weight by lr * g / sqrt(g^2 + eps), about lr
    torch.testing.assert_close(before[3] - emb.weight.detach()[3], torch.full((2,), 0.1), atol=1e-4, rtol=0)
