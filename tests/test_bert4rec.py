import pytest
import torch

from seqrec.models.bert4rec import BERT4Rec, BERT4RecConfig


def model(**kw):
    torch.manual_seed(0)
    cfg = BERT4RecConfig(max_len=8, hidden=16, layers=2, heads=2, dropout=0.0, emb_dropout=0.0, **kw)
    return BERT4Rec(30, cfg).eval()


def test_bidirectional_encoder_sees_the_future():
    m = model()
    inputs = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6]])
    changed = inputs.clone()
    changed[0, -1] = 9
    assert not torch.allclose(m.encode(inputs)[0, 3], m.encode(changed)[0, 3])


def test_a_prefix_is_scored_at_a_mask_appended_after_it():
    m = model()
    inputs = torch.tensor([[0, 0, 0, 0, 0, 4, 9, 2], [1, 2, 3, 4, 5, 6, 7, 8]])
    states = m.session_states(inputs)
    appended = torch.tensor([[0, 0, 0, 0, 4, 9, 2, m.mask_id], [2, 3, 4, 5, 6, 7, 8, m.mask_id]])
    torch.testing.assert_close(states, m.encode(appended)[:, -1])
    scores = m.score(inputs)
    assert scores.shape == (2, 31) and torch.isinf(scores[:, 0]).all()
    torch.testing.assert_close(scores[:, 1:], states @ m.item_emb.weight[1:31].T)


@pytest.mark.parametrize("norm_first", [True, False])
def test_states_at_masked_positions_are_those_of_the_whole_window(norm_first):
    """``encode(at=mask)`` skips the last block's projection and feed-forward net elsewhere, nothing more."""
    m = model(norm_first=norm_first)
    inputs = torch.tensor([[0, 0, 0, 0, 5, 31, 7, 31], [1, 2, 31, 4, 5, 6, 7, 8]])
    at = torch.zeros_like(inputs, dtype=torch.bool)
    at[0, [5, 7]], at[1, [0, 2, 7]] = True, True
    states = m.encode(inputs, at=at)
    assert states.shape == (5, 16)
    torch.testing.assert_close(states, m.encode(inputs)[at])


@pytest.mark.parametrize("training", [True, False])
def test_masked_item_loss_is_finite_with_padded_rows(training):
    m = model(mask_ratio=0.5).train(training)
    inputs = torch.tensor([[0, 0, 0, 5], [0, 0, 0, 0], [1, 2, 3, 4]])
    targets = torch.tensor([[0, 0, 0, 6], [0, 0, 0, 7], [2, 3, 4, 5]])
    value = m.loss((inputs, targets))
    assert torch.isfinite(value)


def test_its_config_holds_only_what_it_uses():
    names = set(BERT4RecConfig.__dataclass_fields__)
    assert {"mask_ratio", "train_on", "label_smoothing"} <= names
    assert not names & {"loss", "n_negatives", "item_mask", "causal"}


def test_every_training_row_masks_a_click_so_two_click_batches_have_a_finite_loss():
    m = model(mask_ratio=0.2).train()
    batch = (torch.tensor([[4]]), torch.tensor([[7]]))  # one row of two clicks: 4 then 7
    losses = []
    for seed in range(200):
        torch.manual_seed(seed)
        losses.append(m.loss(batch))
    assert all(torch.isfinite(loss) for loss in losses)


def test_rows_with_a_masked_click_keep_their_mask_and_the_random_stream_is_unchanged():
    m = model(mask_ratio=0.3).train()
    real = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]] * 50, dtype=torch.bool)
    torch.manual_seed(3)
    draws, last_draws = torch.rand(real.shape), torch.rand(len(real))
    after = torch.rand(1)
    old = (draws < 0.3) & real  # the rule before rows without a mask got one
    old[:, -1] |= last_draws < 0.3
    old &= real
    torch.manual_seed(3)
    masked = m._training_mask(real)
    assert torch.equal(torch.rand(1), after)  # no extra draws
    had = old.any(1)
    assert 0 < int(had.sum()) < len(real)
    assert torch.equal(masked[had], old[had])
    lowest = draws.masked_fill(~real, 2.0).argmin(1)
    assert (masked[~had].sum(1) == 1).all()
    assert torch.equal(masked[~had].float().argmax(1), lowest[~had])
    assert not (masked & ~real).any()
