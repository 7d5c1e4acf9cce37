import pytest
import torch

from seqrec.models.bert4rec import BERT4Rec, BERT4RecConfig


def model(**kw):
    torch.manual_seed(0)
    cfg = BERT4RecConfig(max_len=8, hidden=16, blocks=2, heads=2, dropout=0.0, emb_dropout=0.0, **kw)
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
