"""Every registered model against the written interface (``seqrec.models.base``), and the layering rule."""

import ast
from pathlib import Path

import pytest
import torch

from seqrec.models.base import SequenceModel, SessionParallel, Windows
from seqrec.models.registry import MODELS, build_model, preset

MODELS_DIR = Path(__file__).resolve().parents[1] / "seqrec" / "models"
FORBIDDEN = ("seqrec.trainer", "seqrec.checkpoints", "seqrec.train_config", "seqrec.tracking", "seqrec.workflow",
             "mlflow", "seqrec.data.loader", "seqrec.data.session_parallel", "seqrec.data.readers")


def tiny(name: str, n_items: int = 20) -> SequenceModel:
    torch.manual_seed(0)
    return build_model(name, n_items, {**preset(name, "tiny")[0], "max_len": 6}, torch.arange(n_items + 1.0)).eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_is_session_states_then_item_scores(name):
    model = tiny(name)
    assert isinstance(model, SequenceModel) and model.model_type == name
    assert isinstance(model.config, model.config_class) and model.config.max_len == 6
    assert isinstance(model.loader_spec(), SessionParallel if model.recurrent else Windows)
    inputs = torch.tensor([[0, 0, 0, 3, 4, 5], [0, 0, 0, 0, 0, 7], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        states = model.session_states(inputs)
        every = model.score_items(states)
        some = model.score_items(states, torch.tensor([5, 1, 20]))
        scores = model.score(inputs)
    assert states.shape[0] == 3 and every.shape == (3, 21) and some.shape == (3, 3)
    assert scores.dtype == torch.float32 and torch.isinf(scores[:, 0]).all()
    torch.testing.assert_close(scores[:, 1:], every[:, 1:])
    torch.testing.assert_close(some, every[:, [5, 1, 20]])


def test_only_sequence_models_are_ranked_as_sequence_models():
    class Scorer:  # scoring methods alone do not make a sequence model
        def session_states(self, inputs): ...
        def score_items(self, states, items=None): ...
        def score(self, inputs): ...

    assert not isinstance(Scorer(), SequenceModel)
    assert not isinstance(torch.nn.Linear(2, 2), SequenceModel)


def imports_of(path: Path) -> set[str]:
    """Every module (and ``module.name``) that the file at ``path`` imports."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return imported


@pytest.mark.parametrize("path", sorted(MODELS_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_models_take_tensors_and_know_nothing_of_the_loop_tracking_or_loaders(path):
    assert not {m for m in imports_of(path) if m.startswith(FORBIDDEN)}


def test_the_evaluator_depends_on_its_own_protocol_not_on_the_models_package():
    assert not {m for m in imports_of(MODELS_DIR.parent / "evaluation.py") if m.startswith("seqrec.models")}


def test_any_two_step_scorer_is_ranked_in_item_chunks_like_its_whole_rows(monkeypatch):
    """A model that is not a ``SequenceModel`` but has session states and item scores is ranked in item chunks
    (bounded memory), to the same ranks as when it scores whole rows."""
    from seqrec import evaluation
    from tests.test_loader import split_of

    table = torch.randn(31, 4, generator=torch.Generator().manual_seed(0))

    class TwoStep:
        def session_states(self, inputs):
            return table[inputs].sum(1)

        def score_items(self, states, items=None):
            return states @ (table if items is None else table[items]).T

    class WholeRows:
        def score(self, inputs):
            scores = TwoStep().score_items(TwoStep().session_states(inputs))
            scores[:, 0] = -torch.inf
            return scores

    split = split_of([[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12]])
    monkeypatch.setattr(evaluation, "SCORE_BUDGET", 8)  # several item chunks per batch
    chunked = evaluation.evaluate(TwoStep(), split, n_items=30, progress=False)
    whole = evaluation.evaluate(WholeRows(), split, n_items=30, progress=False)
    assert isinstance(TwoStep(), evaluation.StateScorer) and not isinstance(WholeRows(), evaluation.StateScorer)
    assert chunked.ranks.tolist() == whole.ranks.tolist()
