import numpy as np
import pytest
import torch

from seqrec.data.dataset import SessionSplit
from seqrec.data.session_parallel import NegativeSampler, SessionParallelBatches, session_order
from seqrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from seqrec.optim import IndexedAdagradM
from seqrec.trainer import make_loader


def split_of(sessions, starts=None):
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sessions])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    times = np.zeros(len(items))
    if starts is not None:
        times[offsets[:-1]] = starts
    return SessionSplit(items, offsets, times, np.arange(len(sessions)))


def gru(**kw):
    torch.manual_seed(0)
    cfg = GRU4RecConfig(**{"hidden": 8, "n_negatives": 4, "sample_store": 40, **kw})
    return GRU4Rec(9, cfg, torch.ones(10))


def batches(model, split, batch_size, epoch=0, train=True):
    """The loader the training loop builds for ``model``."""
    return make_loader(model.loader_spec(), split, batch_size, seed=0, epoch=epoch, train=train,
                       popularity=torch.ones(10))


def test_session_parallel_batches_follow_sessions_and_reset_only_new_rows():
    split = split_of([[1, 2, 3], [4, 5], [6, 7, 8, 9], [1, 1]], starts=[0, 1, 2, 3])
    steps = list(SessionParallelBatches(split, 2, session_order(split, shuffle=False, seed=0, epoch=0)))
    pairs = [(b.inputs.tolist(), b.targets.tolist()) for b in steps]
    # rows: session 0 and session 1; session 1 ends first, its row takes session 2, then session 3 ...
    assert pairs[0] == ([1, 4], [2, 5])
    assert pairs[1] == ([2, 6], [3, 7])
    assert steps[1].reset.tolist() == [False, True]  # only the row that took a new session is reset
    assert pairs[2] == ([1, 7], [1, 8])  # session 0 ended: its row takes session 3 (time order)
    assert steps[2].reset.tolist() == [True, False]
    assert pairs[3] == ([8], [9])  # no session left for the finished row: the batch shrinks
    assert steps[3].keep.tolist() == [False, True]
    targets = sorted(t for _, ts in pairs for t in ts)
    assert targets == sorted([2, 3, 5, 7, 8, 9, 1])  # every click after the first, once, no padding
    assert all(b.negatives is None for b in steps)  # no sampler: no shared negatives


def test_sessions_are_ordered_by_first_click_or_shuffled():
    split = split_of([[1, 2], [3, 4], [5, 6]], starts=[30, 10, 20])
    first = next(iter(batches(gru(), split, 3)))
    assert first.inputs.tolist() == [3, 5, 1]
    shuffled = gru(session_order="shuffle")
    orders = {tuple(next(iter(batches(shuffled, split, 3, epoch=e))).inputs.tolist()) for e in range(6)}
    assert len(orders) > 1
    assert next(iter(batches(shuffled, split, 3, train=False))).inputs.tolist() == [3, 5, 1]


def test_negatives_come_from_a_store_redrawn_when_spent():
    torch.manual_seed(0)
    sampler = NegativeSampler(torch.tensor([0.0, 1.0, 0.0, 5.0]), n_negatives=4, alpha=1.0, store_size=8)
    draws = [sampler.draw() for _ in range(5)]  # a store of 2 rounds: redrawn twice
    assert all(d.shape == (4,) and set(d.tolist()) <= {1, 3} for d in draws)
    assert sum((d == 3).sum().item() for d in draws) > 10  # popularity ** alpha: item 3 five times as likely


def test_the_loop_carries_the_hidden_state_which_resets_per_row_and_is_detached():
    model = gru(dropout=0.0).train()
    split = split_of([[1, 2, 3], [4, 5], [6, 7, 8]], starts=[0, 1, 2])
    steps = iter(batches(model, split, 2))
    _, state = model.loss(next(steps), None)
    assert not state.requires_grad
    batch = next(steps)  # row 1 restarts with session 2
    _, after = model.loss(batch, state)
    expected_row1 = model.step(batch.inputs[1:], torch.zeros(1, 1, 8))
    torch.testing.assert_close(after[:, 1:], expected_row1.detach())
    expected_row0 = model.step(batch.inputs[:1], state[:, :1])
    torch.testing.assert_close(after[:, :1], expected_row0.detach())


@pytest.mark.parametrize("kw", [{}, {"constrained_embedding": False, "embedding": 6},
                                {"constrained_embedding": False, "embedding": 0}, {"loss": "bprmax"},
                                {"layers": 2, "n_negatives": 0}])
def test_variants_train_and_score_all_items(kw):
    model = gru(**kw).train()
    split = split_of([[1, 2, 3, 4], [5, 6, 7], [8, 9, 1]], starts=[0, 1, 2])
    opt = IndexedAdagradM(model.parameters(), lr=0.1)
    state = None
    for batch in batches(model, split, 2):
        loss, state = model.loss(batch, state)
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
