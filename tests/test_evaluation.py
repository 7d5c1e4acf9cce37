import numpy as np
import pytest
import torch

from seqrec.data.dataset import SessionSplit
from seqrec.evaluation import evaluate, ranks_of_targets
from seqrec.models.base import SequenceModel
from seqrec.workflow.plots import plot_by_length


def split_of(sessions):
    items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sessions])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    return SessionSplit(items, offsets, np.zeros(len(items)), np.arange(len(sessions)))


class TableScorer:
    """Scores each prefix by a fixed row chosen by its last item; records the inputs it saw."""

    def __init__(self, table):
        self.table = torch.tensor(table, dtype=torch.float32)
        self.seen = []

    def score(self, inputs):
        self.seen.append(inputs.clone())
        return self.table[inputs[:, -1]]


def test_ranks_count_ties_against_the_model_and_skip_padding():
    scores = torch.tensor([[99.0, 1.0, 3.0, 3.0, 2.0], [99.0, 5.0, 4.0, 3.0, 2.0], [0.0, 1.0, 1.0, 1.0, 1.0]])
    rank, tied = ranks_of_targets(scores, torch.tensor([2, 1, 4]))
    assert rank.tolist() == [2, 1, 4]  # item 2 ties with item 3: rank 2; padding's 99 is ignored
    assert tied.tolist() == [True, False, True]


def test_nan_target_ranks_last():
    rank, _ = ranks_of_targets(torch.tensor([[0.0, float("nan"), 1.0, 2.0]]), torch.tensor([1]))
    assert rank.tolist() == [3]


def test_a_nan_score_on_another_item_counts_against_the_target():
    scores = torch.tensor([[99.0, 1.0, float("nan"), 0.5, float("nan")], [0.0, 1.0, 2.0, float("nan"), 0.5]])
    rank, tied = ranks_of_targets(scores, torch.tensor([1, 2]))
    assert rank.tolist() == [3, 2] and tied.tolist() == [False, False]


def test_a_model_emitting_nan_is_punished_not_rewarded():
    table = np.full((4, 4), np.nan)
    table[1, 2] = table[2, 3] = 1.0  # only the true next item gets a number
    m = evaluate(TableScorer(table), split_of([[1, 2, 3]]), n_items=3, progress=False).metrics
    assert m["mrr_at_20"] == pytest.approx(1 / 3) and m["recall_at_20"] == 1.0


def test_metrics_from_hand_computed_ranks():
    # catalogue of 12 items; the row for last item 1 ranks items 12, 11, ..., 1
    table = np.zeros((13, 13))
    table[1, 1:] = np.arange(1, 13)
    table[2, 1:] = 1.0  # everything ties: the target ranks 12th
    split = split_of([[1, 12], [1, 3], [2, 5]])
    result = evaluate(TableScorer(table), split, n_items=12, progress=False)
    # ranks: target 12 after 1 -> 1; target 3 after 1 -> 10; target 5 after 2 -> 12 (all tied)
    m = result.metrics
    assert m["predictions"] == 3 and m["tied_predictions"] == 1
    assert m["recall_at_10"] == pytest.approx(2 / 3)
    assert m["recall_at_20"] == pytest.approx(1.0)
    assert m["mrr_at_10"] == pytest.approx((1 + 1 / 10) / 3)
    assert m["mrr_at_20"] == pytest.approx((1 + 1 / 10 + 1 / 12) / 3)
    assert m["ndcg_at_10"] == pytest.approx((1 + 1 / np.log2(11)) / 3)
    assert result.by_length["1"]["predictions"] == 3


def test_one_item_catalogue():
    result = evaluate(TableScorer(np.zeros((2, 2))), split_of([[1, 1, 1]]), n_items=1, progress=False)
    assert result.metrics["recall_at_10"] == 1.0 and result.metrics["mrr_at_20"] == 1.0
    assert result.metrics["coverage_at_20"] == 1.0


def test_prefixes_are_truncated_to_max_len_and_batched():
    scorer = TableScorer(np.ones((10, 10)))
    split = split_of([[1, 2, 3, 4, 5, 6, 7]])
    result = evaluate(scorer, split, n_items=9, max_len=3, batch_size=4, progress=False)
    inputs = torch.cat(scorer.seen).tolist()
    assert len(scorer.seen) == 2  # 6 predictions in batches of 4
    assert inputs == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6]]
    assert set(result.by_length) == {"1", "2", "3", "4", "5-9"}
    assert result.by_length["5-9"]["predictions"] == 2


def test_coverage_popularity_and_plot(tmp_path):
    table = np.zeros((5, 5))
    table[:, 4] = 1.0  # always recommends item 4 first
    result = evaluate(TableScorer(table), split_of([[1, 2, 3]]), n_items=4,
                      popularity=np.array([0, 1, 2, 3, 4]), progress=False)
    assert result.metrics["coverage_at_20"] == 1.0  # top-20 of 4 items holds them all
    assert 0 < result.metrics["popularity_percentile_at_20"] <= 100
    png = plot_by_length(result, tmp_path / "by_length.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert set(result.prefixed("test")) >= {"test_recall_at_20", "test_mrr_at_10"}


class FactorScorer:
    """Scores = state . item vector with small integer factors (exact arithmetic, many ties).

    Has the sequence-model scoring interface (``session_states`` + ``score_items``), so it is ranked in item
    chunks, and records the chunk shapes.
    """

    def __init__(self, n_items, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.item_vectors = torch.randint(-2, 3, (n_items + 1, 3), generator=g).float()
        self.states_of = torch.randint(-2, 3, (n_items + 1, 3), generator=g).float()
        self.shapes = []

    def session_states(self, inputs):
        return self.states_of[inputs[:, -1]]

    def score_items(self, states, items):
        self.shapes.append((len(states), len(items)))
        return states @ self.item_vectors[items].T

    def score(self, inputs):
        scores = self.session_states(inputs) @ self.item_vectors.T
        scores[:, 0] = -torch.inf
        return scores


SequenceModel.register(FactorScorer)  # ranked in item chunks like a neural model


class WholeRows:
    """The same scores through the plain ``score`` interface only."""

    def __init__(self, scorer):
        self.scorer = scorer

    def score(self, inputs):
        return self.scorer.score(inputs)


def test_item_chunks_rank_exactly_like_whole_rows_with_bounded_memory(monkeypatch):
    import seqrec.evaluation as evaluation

    n_items = 50
    rng = np.random.default_rng(1)
    split = split_of([rng.integers(1, n_items + 1, size=rng.integers(2, 8)).tolist() for _ in range(40)])
    scorer = FactorScorer(n_items)
    whole = evaluate(WholeRows(scorer), split, n_items, batch_size=16, progress=False)
    monkeypatch.setattr(evaluation, "SCORE_BUDGET", 16 * 7)  # 7 items per chunk for a batch of 16
    chunked = evaluate(scorer, split, n_items, batch_size=16, popularity=None, progress=False)
    assert chunked.metrics == whole.metrics
    assert whole.metrics["tied_predictions"] > 0  # the comparison covers ties
    chunks = [shape for shape in scorer.shapes if shape[1] != shape[0]]  # minus the target-score calls
    assert len(chunks) > len(split.items) // 16 and max(b * c for b, c in chunks) <= 16 * 7
