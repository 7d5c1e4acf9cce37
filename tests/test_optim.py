import pytest
import torch

from seqrec.optim import IndexedAdagradM, LazyAdamW, clip_gradients, make_optimizer, sum_duplicate_rows
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


# -- IndexedAdagradM: the fast sparse update is bit for bit the plain formula ------------------------------

def reference_adagradm_step(params: list[torch.Tensor], states: list[dict], lr: float, momentum: float,
                            eps: float = 1e-6) -> None:
    """IndexedAdagradM's update as first written: coalesce, gather, ``acc += g^2``, step, scatter back."""
    with torch.no_grad():
        for p, state in zip(params, states, strict=True):
            if not state:
                state["acc"], state["mom"] = torch.zeros_like(p), torch.zeros_like(p)
            if p.grad.is_sparse:
                grad = p.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                acc = state["acc"][rows] + values.pow(2)
                state["acc"][rows] = acc
                step = values / (acc + eps).sqrt() * -lr
                if momentum > 0:
                    step = state["mom"][rows] * momentum + step
                    state["mom"][rows] = step
                p[rows] += step
            else:
                state["acc"] += p.grad.pow(2)
                denom = (state["acc"] + eps).sqrt()
                if momentum > 0:
                    state["mom"].mul_(momentum).addcdiv_(p.grad, denom, value=-lr)
                    p += state["mom"]
                else:
                    p.addcdiv_(p.grad, denom, value=-lr)


def embedding_gradient(n_rows: int, width: int, nnz: int, generator: torch.Generator,
                       transposed: bool = False) -> torch.Tensor:
    """An uncoalesced sparse gradient like an embedding lookup's: rows drawn by a skewed popularity (many
    rows repeated 3+ times, where the order of the sum matters), values of mixed magnitudes."""
    popularity = torch.arange(1, n_rows + 1, dtype=torch.float64) ** -1.0
    rows = torch.multinomial(popularity, nnz, replacement=True, generator=generator)
    scale = 10.0 ** torch.randint(-4, 2, (nnz, 1), generator=generator)
    values = torch.randn(nnz, width, generator=generator) * scale
    if transposed:  # the [nnz, 1] gradient of a width-1 lookup comes with strides (1, nnz)
        values = values.T.contiguous().T
    return torch.sparse_coo_tensor(rows[None], values, (n_rows, width), check_invariants=True)


@pytest.mark.parametrize(("width", "nnz", "dtype"), [(100, 2112, torch.float32), (1, 2080, torch.float32),
                                                     (7, 40_000, torch.float32), (16, 500, torch.float64)])
def test_sum_duplicate_rows_equals_coalesce_bit_for_bit(width, nnz, dtype):
    generator = torch.Generator().manual_seed(width)
    for transposed in ([False, True] if width == 1 else [False]):
        grad = embedding_gradient(300, width, nnz, generator, transposed).to(dtype)
        assert not grad.is_coalesced()
        expected = grad.coalesce()
        rows, values = sum_duplicate_rows(grad)
        assert torch.equal(rows, expected.indices()[0])
        assert torch.equal(values, expected.values())
        assert values.dtype == dtype
    rows, values = sum_duplicate_rows(expected)  # already coalesced: as it is
    assert torch.equal(rows, expected.indices()[0]) and torch.equal(values, expected.values())


@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_indexed_adagradm_equals_the_plain_formula_bit_for_bit(momentum):
    generator = torch.Generator().manual_seed(1)
    init = [torch.randn(500, 32, generator=generator), torch.randn(500, 1, generator=generator),
            torch.randn(40, 32, generator=generator), torch.randn(40, generator=generator)]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    opt = IndexedAdagradM(ours, lr=0.07, momentum=momentum)
    ref_states: list[dict] = [{} for _ in ref]
    for _ in range(30):
        grads = [embedding_gradient(500, 32, 1500, generator), embedding_gradient(500, 1, 1500, generator, True),
                 torch.randn(40, 32, generator=generator), torch.randn(40, generator=generator)]
        for p, q, grad in zip(ours, ref, grads, strict=True):
            p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        reference_adagradm_step(ref, ref_states, lr=0.07, momentum=momentum)
    for p, q, state, ref_state in zip(ours, ref, [opt.state[p] for p in ours], ref_states, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(state["acc"], ref_state["acc"])
        if momentum > 0:
            assert torch.equal(state["mom"], ref_state["mom"])
        else:
            assert "mom" not in state


@pytest.mark.parametrize("momentum", [0.0, 0.5])
@pytest.mark.parametrize("kw", [{}, {"constrained_embedding": False, "embedding": 8}])
def test_gru4rec_trains_bit_for_bit_as_with_the_plain_formula(kw, momentum):
    from seqrec.models.gru4rec import GRU4Rec, GRU4RecConfig

    def train(updater) -> GRU4Rec:
        """15 steps of a small GRU4Rec (tied or separate embeddings, dropout) on fixed random batches, each
        ending with the update that ``updater(model)`` returns."""
        torch.manual_seed(0)
        net = GRU4Rec(200, GRU4RecConfig(hidden=16, n_negatives=300, dropout=0.2, **kw)).train()
        update = updater(net)
        generator, carried = torch.Generator().manual_seed(2), None
        for _ in range(15):
            inputs, targets = torch.randint(1, 201, (2, 32), generator=generator)
            negatives = torch.randint(1, 201, (300,), generator=generator)
            batch = (inputs, targets, None, torch.zeros(32, dtype=torch.bool), lambda negatives=negatives: negatives)
            loss, carried = net.loss(batch, carried)
            net.zero_grad(set_to_none=True)
            loss.backward()
            assert net.Wy.weight.grad.is_sparse and not net.Wy.weight.grad.is_coalesced()
            update()
        return net

    ours = train(lambda net: IndexedAdagradM(net.parameters(), lr=0.1, momentum=momentum).step)
    states: list[dict] = [{} for _ in ours.parameters()]
    ref = train(lambda net: lambda: reference_adagradm_step(list(net.parameters()), states, lr=0.1, momentum=momentum))
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q), name
