import pytest
import torch

from seqrec.optim import LazyAdamW, clip_gradients, make_optimizer
from seqrec.train_config import TrainConfig


def test_lazy_adamw_matches_adamw_on_dense_gradients():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ours = LazyAdamW([a], lr=0.01, weight_decay=0.1)
    ref = torch.optim.AdamW([b], lr=0.01, weight_decay=0.1)
    for step in range(5):
        grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b)


def test_lazy_adamw_updates_only_the_rows_of_sparse_gradients():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(6, 3, sparse=True)
    dense = torch.nn.Parameter(emb.weight.detach().clone())
    before = emb.weight.detach().clone()
    opt = LazyAdamW(emb.parameters(), lr=0.1, weight_decay=0.5)
    emb(torch.tensor([1, 4, 4])).sum().backward()
    opt.step()
    changed = (emb.weight != before).any(1)
    assert changed.tolist() == [False, True, False, False, True, False]
    # the touched rows take exactly AdamW's first step
    ref = torch.optim.AdamW([dense], lr=0.1, weight_decay=0.5)
    dense.grad = emb.weight.grad.to_dense()
    ref.step()
    torch.testing.assert_close(emb.weight[[1, 4]], dense[[1, 4]])


def test_sparse_models_get_lazy_adamw_and_clipping_covers_sparse_gradients():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    head = torch.nn.Linear(4, 1)
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    assert isinstance(make_optimizer(model, TrainConfig()), LazyAdamW)
    assert isinstance(make_optimizer(head, TrainConfig()), torch.optim.AdamW)
    (head(emb(torch.tensor([1, 2, 2]))) * 100).sum().backward()
    norm = clip_gradients(model.parameters(), 1.0)
    assert norm > 1
    grads = torch.cat([emb.weight.grad.to_dense().flatten(), head.weight.grad.flatten(), head.bias.grad.flatten()])
    assert grads.norm().item() == pytest.approx(1.0, rel=1e-4)
