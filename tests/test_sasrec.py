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


@pytest.mark.parametrize(("repeat_bonus", "sessions"), [
    (False, [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16], [3, 3, 3]]),
    (True, [[1, 2, 1, 4, 2], [6, 7], [8, 9, 10, 8, 9, 12, 13, 9, 16], [3, 3, 3]]),  # repeats: the bonus matters
])
def test_prefix_rows_and_session_rows_give_the_same_loss_without_dropout(repeat_bonus, sessions):
    from tests.test_loader import split_of

    # sessions of at most max_len + 1 clicks: one window each (a longer session's later windows
    # would see less history for their first targets than the prefix rows do)
    split = split_of(sessions)
    losses = {}
    for rows in ("sessions", "prefixes"):
        m = _with_repeats(train_on=rows) if repeat_bonus else model(train_on=rows)
        (batch,) = list(make_loader(m.loader_spec(), split, 100, seed=0, epoch=0, train=True))
        losses[rows] = m.loss(batch)
    torch.testing.assert_close(losses["prefixes"], losses["sessions"])


def _with_repeats(**kw):
    """A model whose bonus after 0, 1, 2, ... clicks is 8, 7, 6, ... (in score units: dot-product scores)."""
    m = model(repeat_bonus=True, **kw)
    with torch.no_grad():
        m.repeat.copy_(torch.arange(8, 0, -1.0))
    return m


def test_repeat_bonus_adds_the_bonus_of_each_items_latest_click_to_its_score():
    m = _with_repeats()
    inputs = torch.tensor([[0, 0, 0, 3, 5, 3, 7, 3], [0, 0, 0, 0, 0, 0, 0, 9], [0] * 7 + [31]])  # 31: [MASK]
    with torch.no_grad():
        scores = m.score(inputs)
        plain = model().score(inputs)  # the same weights without the bonus
    expected = torch.zeros(3, 31)
    expected[0, [3, 7, 5]] = torch.tensor([8.0, 7.0, 5.0])  # 3 clicked last, 7 one click before, 5 three before
    expected[1, 9] = 8.0
    torch.testing.assert_close(scores[:, 1:] - plain[:, 1:], expected[:, 1:])
    # any ids, repeated ones too, score as in the whole rows (the evaluator asks for each row's target this way)
    items = torch.tensor([7, 3, 3, 9, 1, 30, 5])
    with torch.no_grad():
        some = m.score_items(m.session_states(inputs), items)
    torch.testing.assert_close(some, scores[:, items])
    assert m.state_features(m.session_states(inputs)).shape == (3, 16)


def test_repeat_bonus_is_in_cosine_units_with_normalized_scores():
    m = _with_repeats(normalize=True, logit_scale=10.0)
    inputs = torch.tensor([[0, 0, 0, 0, 0, 0, 4, 2]])
    with torch.no_grad():
        gain = m.score(inputs) - model(normalize=True, logit_scale=10.0).score(inputs)
    torch.testing.assert_close(gain[0, [2, 4, 6]], torch.tensor([80.0, 70.0, 0.0]))


def test_items_ranked_in_chunks_rank_as_in_whole_rows_with_repeat_bonus(monkeypatch):
    from seqrec import evaluation
    from tests.test_loader import split_of

    m = _with_repeats()

    class WholeRows:
        def score(self, inputs):
            return m.score(inputs)

    split = split_of([[1, 2, 1, 4, 2], [5, 6, 5, 5], [8, 9, 10, 11, 12, 8, 9], [3, 3, 3]])
    monkeypatch.setattr(evaluation, "SCORE_BUDGET", 8)  # several item chunks per batch
    chunked = evaluation.evaluate(m, split, n_items=30, max_len=8, progress=False)
    whole = evaluation.evaluate(WholeRows(), split, n_items=30, max_len=8, progress=False)
    assert chunked.ranks.tolist() == whole.ranks.tolist()
    assert chunked.ranks.min() == 1  # the bonus decides: repeats rank first


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_repeat_bonus_learns_from_the_loss(loss):
    m = model(repeat_bonus=True, train_on="prefixes", loss=loss, n_negatives=16).train()
    # every target is the item clicked one click before the last ([MASK], 31, is no item and gets no bonus)
    inputs = torch.tensor([[0, 0, 0, 0, 5, 6], [0, 0, 0, 1, 2, 3], [0, 0, 4, 31, 7, 8]])
    targets = torch.tensor([[0, 0, 0, 0, 0, 5], [0, 0, 0, 0, 0, 2], [0, 0, 0, 0, 0, 7]])
    m.loss((inputs, targets)).backward()
    grad = m.repeat.grad
    assert torch.isfinite(grad).all() and grad[1] < 0  # up for the item one click before the end
    if loss == "full":  # every last click is a wrong answer (a sampled softmax sees it if sampled only)
        assert grad[0] > 0
    assert (grad[4:] == 0).all()  # no prefix has an item four or more clicks before its end


def test_repeat_bonus_refuses_a_catalogue_whose_ids_a_state_cannot_hold():
    from seqrec.configs import RangeError
    from seqrec.models.sasrec import EXACT_FLOAT_IDS

    with pytest.raises(RangeError, match="repeat_bonus needs fewer than"):
        SASRec(EXACT_FLOAT_IDS, SASRecConfig(max_len=4, hidden=8, heads=2, repeat_bonus=True))


def test_train_with_repeat_bonus_saves_a_model_that_scores_the_run_s_test_figures(processed, tmp_path, monkeypatch):
    """``steps.train.main --params repeat_bonus=true``: the learned bonuses are logged as the model's weights, and the
    saved model, reloaded, ranks test as the run did."""
    from pathlib import Path

    import mlflow

    import steps.train
    from seqrec.data.dataset import ProcessedDataset
    from seqrec.evaluation import evaluate
    from seqrec.serving.artifacts import load_recommender
    from tests.helpers import own_store

    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        argv = ["--model", "sasrec", "--data", str(processed), "--preset", "tiny", "--epochs", "2",
                "--params", "repeat_bonus=true,progress=false"]
        assert steps.train.main(argv) == 0
        (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
        assert run.data.params["model.repeat_bonus"] == "True"
        folder = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model")
        scorer = load_recommender(Path(folder) / "artifacts" / "recommender").scorer
    assert scorer.config.repeat_bonus and scorer.repeat.abs().sum() > 0  # trained away from its zero start
    data = ProcessedDataset.load(processed)
    again = evaluate(scorer, data.split("test"), data.n_items, 50, progress=False)
    assert again.metrics["recall_at_20"] == pytest.approx(run.data.metrics["test_recall_at_20"], abs=1e-9)
    assert again.metrics["mrr_at_20"] == pytest.approx(run.data.metrics["test_mrr_at_20"], abs=1e-9)


def test_a_basket_head_reads_the_encoder_s_output_not_the_clicks_its_state_carries():
    from seqrec.basket.neural import BasketNet, BasketNetConfig

    encoder = _with_repeats()
    net = BasketNet(encoder, n_session_features=2, n_pair_features=3, config=BasketNetConfig())
    assert net.buy_head[0].in_features == 16 + 2  # hidden + session features
    inputs = torch.tensor([[0, 0, 0, 0, 0, 3, 5, 3], [0, 0, 0, 0, 0, 0, 1, 2]])
    buy, item = net(inputs, torch.zeros(2, 2), torch.tensor([0, 0, 1]), torch.tensor([3, 5, 2]), torch.zeros(3, 3))
    assert buy.shape == (2,) and item.shape == (3,) and torch.isfinite(item).all()
