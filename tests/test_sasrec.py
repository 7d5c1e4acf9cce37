import numpy as np
import pytest
import torch

from seqrec.models.sasrec import SASRec, SASRecConfig
from seqrec.trainer import make_loader


def model(device="cpu", **kw):
    torch.manual_seed(0)
    cfg = SASRecConfig(max_len=8, hidden=16, layers=2, heads=2, dropout=0.0, emb_dropout=0.0, **kw)
    return SASRec(30, cfg).to(device).eval()


def random_batch(rng, rows=6, width=8, n_items=30):
    lengths = rng.integers(1, width + 1, size=rows)
    out = np.zeros((rows, width), dtype=np.int64)
    for r, n in enumerate(lengths):
        out[r, width - n:] = rng.integers(1, n_items + 1, size=n)
    return torch.from_numpy(out), lengths


def test_output_at_t_ignores_later_inputs_and_padding(device):
    m = model(device)
    rng = np.random.default_rng(0)
    for _ in range(20):
        inputs, lengths = random_batch(rng)
        inputs = inputs.to(device)
        states = m.encode(inputs)
        for r, n in enumerate(lengths):
            t = int(rng.integers(8 - n, 8))  # a real position
            changed = inputs.clone()
            changed[r, t + 1:] = torch.from_numpy(rng.integers(1, 31, size=7 - t)).to(device)  # everything after t
            torch.testing.assert_close(m.encode(changed)[r, t], states[r, t])
            # more padding on the left (the same clicks further right would move positions, so pad in place)
            trimmed = inputs[r:r + 1, 8 - n:]
            torch.testing.assert_close(m.encode(trimmed)[0, -1], states[r, -1])


def test_output_after_each_click_equals_the_output_for_that_prefix_alone(device):
    # positions count from the session's start: training on every position = training on every prefix
    m = model(device)
    session = torch.tensor([[0, 0, 4, 9, 2, 7, 7, 1]], device=device)
    states = m.encode(session)
    for t in range(2, 8):
        prefix = torch.zeros_like(session)
        prefix[0, 8 - (t - 1):] = session[0, 2 : t + 1]
        torch.testing.assert_close(m.encode(prefix)[0, -1], states[0, t])


@pytest.mark.parametrize("norm_first", [True, False])
def test_last_position_only_equals_the_last_column_of_the_full_encoding(device, norm_first):
    rng = np.random.default_rng(1)
    m = model(device, norm_first=norm_first)
    for _ in range(5):
        inputs, _ = random_batch(rng)
        inputs = inputs.to(device)
        torch.testing.assert_close(m.encode(inputs, last_only=True)[:, 0], m.encode(inputs)[:, -1])


def test_score_matches_encode_and_never_ranks_padding(device):
    m = model(device)
    inputs, _ = random_batch(np.random.default_rng(1))
    inputs = inputs.to(device)
    scores = m.score(inputs)
    assert scores.shape == (6, 31)
    assert torch.isinf(scores[:, 0]).all()
    states = m.encode(inputs)[:, -1]
    torch.testing.assert_close(scores[:, 1:], (states @ m.item_emb.weight[1:31].T).float())
    items = torch.tensor([3, 1, 30], device=device)
    torch.testing.assert_close(m.score_items(m.session_states(inputs), items), scores[:, [3, 1, 30]])


def test_normalized_scores_are_scaled_cosines():
    m = model(normalize=True, logit_scale=10.0)
    inputs, _ = random_batch(np.random.default_rng(2))
    scores = m.score(inputs)[:, 1:]
    states = torch.nn.functional.normalize(m.encode(inputs)[:, -1], dim=-1)
    items = torch.nn.functional.normalize(m.item_emb.weight[1:31], dim=-1)
    torch.testing.assert_close(scores, 10.0 * states @ items.T)
    assert scores.abs().max() <= 10.0 + 1e-5


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_loss_is_finite_for_one_click_prefixes_and_padded_rows(loss, device):
    m = model(device, loss=loss, n_negatives=16).train()
    inputs = torch.tensor([[0, 0, 0, 5], [0, 0, 0, 0], [1, 2, 3, 4]], device=device)
    targets = torch.tensor([[0, 0, 0, 6], [0, 0, 0, 0], [2, 3, 4, 5]], device=device)
    value = m.loss((inputs, targets))
    assert torch.isfinite(value)
    value.backward()
    grads = [p.grad.to_dense() if p.grad.is_sparse else p.grad for p in m.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    # a sampled softmax touches only the embedding rows of the batch's items and negatives
    assert m.item_emb.weight.grad.is_sparse == (loss == "sampled")


def test_prefix_rows_and_session_rows_give_the_same_loss_without_dropout():
    from tests.test_loader import split_of

    # sessions of at most max_len + 1 clicks: one window each (a longer session's later windows
    # would see less history for their first targets than the prefix rows do)
    split = split_of([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16], [3, 3, 3]])
    losses = {}
    for rows in ("sessions", "prefixes"):
        m = model(train_on=rows)
        (batch,) = list(make_loader(m.loader_spec(), split, 100, seed=0, epoch=0, train=True))
        losses[rows] = m.loss(batch)
    torch.testing.assert_close(losses["prefixes"], losses["sessions"])
