"""The serving Recommender: bounded memory, the same answers as a plain full-row ranking, and its API."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from seqrec.models.base import SequenceModel
from seqrec.models.baselines import make_baseline
from seqrec.models.sasrec import SASRec, SASRecConfig
from seqrec.serving import recommender as rec
from seqrec.serving.recommender import MAX_K, Recommender, RequestError


def raw_ids(n_items: int) -> np.ndarray:
    return np.array(["<pad>", *(f"item{i}" for i in range(1, n_items + 1))], dtype=object)


def popularity(n_items: int, seed: int = 0) -> np.ndarray:
    """Click counts with many ties (few distinct values), padding 0."""
    counts = np.random.default_rng(seed).integers(0, 50, size=n_items + 1).astype(np.float64)
    counts[0] = 0.0
    return counts


def pop_recommender(n_items: int, max_len: int = 5) -> Recommender:
    pop = make_baseline("pop")
    pop.popularity, pop.n_items = popularity(n_items), n_items
    return Recommender(pop, raw_ids(n_items), pop.popularity, max_len)


class TiedScorer:
    """A chunked scorer with many exact ties: item i scores (i * last item) mod 5."""

    device = torch.device("cpu")

    def __init__(self, n_items: int):
        self.n_items = n_items

    def session_states(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs[:, -1:].float()

    def score_items(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (states * items[None, :].float()) % 5

    def score(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.score_items(self.session_states(inputs), torch.arange(self.n_items + 1))


SequenceModel.register(TiedScorer)  # ranked in item chunks like a neural model


def reference(recommender: Recommender, sessions: list[list], ks: list[int]) -> list[tuple[list[str], np.ndarray]]:
    """Full score row per session, sorted by score (descending) then dense id (ascending)."""
    out = []
    for session, k in zip(sessions, ks, strict=True):
        ids = recommender.encode(session)
        if ids:
            inputs = torch.zeros(1, recommender.max_len, dtype=torch.long)
            inputs[0, -len(ids):] = torch.tensor(ids)
            row = recommender.scorer.score(inputs)[0].float().detach().numpy()
        else:
            row = recommender.popularity.astype(np.float32)
        items = np.arange(1, len(row))
        order = items[np.lexsort((items, -row[1:]))][:k]
        out.append(([str(recommender.raw_ids[i]) for i in order], row[order]))
    return out


def assert_same(got, expected) -> None:
    assert len(got) == len(expected)
    for answer, (items, scores) in zip(got, expected, strict=True):
        assert answer.items == items
        np.testing.assert_allclose(answer.scores, scores, rtol=1e-5, atol=1e-6)


def mixed_sessions(n_items: int, seed: int = 1) -> list[list]:
    rng = np.random.default_rng(seed)
    known = [[f"item{i}" for i in rng.integers(1, n_items + 1, size=rng.integers(1, 9))] for _ in range(12)]
    return [*known[:5], [], ["unknown", "also-unknown"], *known[5:], ["x", known[0][0]], []]


def test_empty_sessions_at_a_huge_catalogue_use_little_memory():
    recommender = pop_recommender(500_000)
    tracemalloc.start()
    try:
        answers = recommender.recommend([[] for _ in range(1000)], MAX_K)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the answers themselves (1,000 x 1,000 references, twice) take ~16 MB; one tiled float64
    # popularity row per session would take 4 GB
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert len(answers) == 1000 and answers[0].items == answers[-1].items and len(answers[0].items) == MAX_K
    assert_same(answers[:1], reference(recommender, [[]], [MAX_K]))


def test_known_sessions_are_scored_in_row_batches_within_the_budget(monkeypatch):
    recommender = pop_recommender(200_000)
    monkeypatch.setattr(rec, "SCORE_BUDGET", 1 << 20)  # 5 rows of 200,001 scores per batch
    sessions = [[f"item{i}"] for i in range(1, 41)]
    tracemalloc.start()
    try:
        answers = recommender.recommend(sessions, 7)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Pop's score rows are numpy arrays (traced): 5 float32 rows are 4 MB, 40 float64 rows would be 64 MB
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert_same(answers, reference(recommender, sessions, [7] * len(sessions)))


def record_blocks(monkeypatch, scorer) -> list[tuple[int, int]]:
    """The (rows, items) shape of every ``score_items`` call of ``scorer``."""
    blocks, original = [], scorer.score_items

    def spy(states, items=None):
        blocks.append((len(states), scorer.n_items + 1 if items is None else len(items)))
        return original(states, items)

    monkeypatch.setattr(scorer, "score_items", spy)
    return blocks


def rank_within_budget(monkeypatch, recommender: Recommender, budget: int, k: int) -> list[tuple[int, int]]:
    """Rank mixed sessions under a score budget: the answers equal the reference and every scored block
    fits the budget; returns the blocks' shapes."""
    monkeypatch.setattr(rec, "SCORE_BUDGET", budget)
    blocks = record_blocks(monkeypatch, recommender.scorer)
    sessions = mixed_sessions(recommender.n_items)
    answers, blocks = recommender.recommend(sessions, k), blocks.copy()
    assert_same(answers, reference(recommender, sessions, [k] * len(sessions)))
    assert max((rows * items for rows, items in blocks), default=0) <= budget
    return blocks


@pytest.mark.parametrize("repeat_bonus", [False, True])
@pytest.mark.parametrize(("budget", "k", "chunks"), [
    (1 << 22, 10, 0),  # all rows, whole score rows
    (64, 10, 5),  # one row per batch, chunks of 64 items
    (200, 2, 5),  # 3 rows per batch, chunks of 66 items
])
def test_neural_scorer_matches_a_full_row_ranking_with_item_chunks(monkeypatch, budget, k, chunks, repeat_bonus):
    torch.manual_seed(0)
    n_items = 300
    model = SASRec(n_items, SASRecConfig(max_len=8, hidden=16, layers=1, heads=1, repeat_bonus=repeat_bonus)).eval()
    if repeat_bonus:  # large enough to move clicked items into every top k
        torch.nn.init.uniform_(model.repeat, 1.0, 5.0)
    recommender = Recommender(model, raw_ids(n_items), popularity(n_items), max_len=8)
    blocks = rank_within_budget(monkeypatch, recommender, budget, k)
    assert sum(items for _, items in blocks[:chunks]) == (n_items if chunks else 0)  # the first batch's chunks


@pytest.mark.parametrize(("budget", "k"), [(1 << 22, 30), (7, 30), (100, 1)])
def test_ties_go_to_the_lower_id_across_item_chunks(monkeypatch, budget, k):
    n_items = 50
    scorer = TiedScorer(n_items)
    recommender = Recommender(scorer, raw_ids(n_items), popularity(n_items), max_len=4)
    rank_within_budget(monkeypatch, recommender, budget, k)


def test_rank_keys_order_special_values_and_ties():
    scores = torch.tensor([[1.0, -0.0, 0.0, float("nan"), -float("inf"), 1.0, -1.0, float("inf"), 0.0]])
    items, values = rec._decode(rec._top(scores, 1, 9))
    assert items[0].tolist() == [8, 1, 6, 2, 3, 9, 7, 5, 4]
    np.testing.assert_array_equal(values[0], scores[0, items[0] - 1].numpy())


def test_per_session_k_and_k_capped_at_the_catalogue():
    n_items = 40
    recommender = pop_recommender(n_items)
    sessions = [["item3"], [], ["item5", "nope"], ["nope"]]
    ks = [1, 7, 40, 3]
    answers = recommender.recommend(sessions, ks)
    assert [len(a.items) for a in answers] == ks
    assert_same(answers, reference(recommender, sessions, ks))
    assert [len(a.items) for a in recommender.recommend(sessions, MAX_K)] == [n_items] * 4


@pytest.mark.parametrize(("k", "message"), [
    (0, "k must be between 1 and 1000, got 0"),
    (MAX_K + 1, "k must be between 1 and 1000, got 1001"),
    ([5, 5, 5, 0], "k of session 3 must be between 1 and 1000, got 0"),
    ([1001, 5, 5, 5], "k of session 0 must be between 1 and 1000, got 1001"),
    ([5, 5], "one per session"),
    ([5, 5, 2.5, 5], "one per session"),
])
def test_bad_k_is_a_request_error_naming_the_session(k, message):
    with pytest.raises(RequestError, match=message):
        pop_recommender(10).recommend([["item1"], [], ["item2"], ["x"]], k)


def test_score_gives_popularity_rows_to_inputs_without_items():
    torch.manual_seed(0)
    n_items = 30
    model = SASRec(n_items, SASRecConfig(max_len=4, hidden=16, layers=1, heads=1)).eval()
    recommender = Recommender(model, raw_ids(n_items), popularity(n_items), max_len=4)
    inputs = torch.tensor([[0, 0, 0, 0], [0, 0, 3, 7], [0, 0, 0, 0], [1, 2, 3, 4]])
    scores = recommender.score(inputs)
    assert scores.dtype == torch.float32 and scores.shape == (4, n_items + 1)
    pop = torch.from_numpy(recommender.popularity.astype(np.float32))
    torch.testing.assert_close(scores[0], pop)
    torch.testing.assert_close(scores[2], pop)
    torch.testing.assert_close(scores[[1, 3]], model.score(inputs[[1, 3]]))


@pytest.mark.parametrize("kind", ["baseline", "neural"])
def test_saved_recommender_is_rebuilt_from_plain_files_and_answers_the_same(tmp_path, kind):
    from seqrec.serving.artifacts import load_recommender, save_recommender

    if kind == "baseline":
        recommender = pop_recommender(100)
    else:
        torch.manual_seed(0)
        model = SASRec(100, SASRecConfig(hidden=16, layers=1, heads=1, max_len=5)).eval()
        recommender = Recommender(model, raw_ids(100), popularity(100), 5)
    save_recommender(recommender, tmp_path / "saved")
    assert {p.name for p in (tmp_path / "saved").iterdir()} == {
        "recommender.json", "raw_ids.npy", "popularity.npy", "state.npz" if kind == "baseline" else "weights.pt"}
    restored = load_recommender(tmp_path / "saved")
    assert type(restored.scorer) is type(recommender.scorer) and restored.max_len == recommender.max_len
    sessions = mixed_sessions(100)
    assert restored.recommend(sessions, 7) == recommender.recommend(sessions, 7)


def test_loading_a_folder_that_is_not_a_saved_recommender_names_it(tmp_path):
    from seqrec.serving.artifacts import load_recommender

    with pytest.raises(FileNotFoundError, match="not a saved seqrec recommender"):
        load_recommender(tmp_path)
