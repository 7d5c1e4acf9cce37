"""Shared fixtures: an isolated MLflow store, generated data, and the real sample when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "yoochoose-100k"
SAMPLE = Path(os.environ.get("SEQREC_SAMPLE", _DEFAULT_SAMPLE))


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory) -> str:
    """Point MLflow at a throw-away SQLite store for the whole test session."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    return uri


@pytest.fixture(scope="session", autouse=True)
def outside_the_checkout(tmp_path_factory):
    """Run the tests in a scratch directory: what a step writes relative to the working directory (``data/``,
    ``checkpoints/``, ``studies/``, the SQLite store's ``mlruns/``) never lands in the checkout."""
    before = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(scope="session")
def device() -> str:
    """The device the model tests run on: ``SEQREC_TEST_DEVICE`` (cuda in the GPU check), else cpu."""
    return os.environ.get("SEQREC_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "train_full.txt").exists():
        pytest.skip(f"real YooChoose sample not found at {SAMPLE}")
    return SAMPLE


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """A 20,000-click generated dataset in raw YooChoose format."""
    from seqrec.data.synthetic import SyntheticConfig, generate

    return generate(tmp_path_factory.mktemp("raw"), SyntheticConfig(n_clicks=20_000, seed=7))


@pytest.fixture(scope="session")
def processed(generated, tmp_path_factory) -> Path:
    """The generated dataset, preprocessed with the default parameters."""
    from seqrec.data.preprocess import PreprocessConfig, preprocess
    from seqrec.data.readers import read_buys, read_clicks

    out = tmp_path_factory.mktemp("proc") / "synthetic"
    clicks, buys = generated
    preprocess(read_clicks(clicks), out, PreprocessConfig(), "synthetic", {"path": str(clicks)},
               buys=read_buys(buys))
    return out


DAY = 86_400
T0 = 1_400_000_000
# (session, item, time) of a hand-built dataset; with min_item_support=2 its split is known exactly
TINY_ROWS = [
    (1, 1, 0), (1, 2, 10), (1, 3, 20),  # A: train_tr
    (2, 2, 100), (2, 3, 110), (2, 1, 120),  # B: train_tr
    (3, 1, 200),  # C: one click, dropped
    (4, 9, 300), (4, 1, 310),  # D: item 9 has support 1 -> dropped, then D is too short
    (5, 1, 2 * DAY), (5, 4, 2 * DAY + 10),  # E: valid; 4 unseen in train_tr -> E too short for valid
    (7, 2, 2 * DAY + 100), (7, 3, 2 * DAY + 110),  # G: valid
    (6, 4, 3.5 * DAY), (6, 1, 3.5 * DAY + 5), (6, 5, 3.5 * DAY + 9),  # F: test; 5 has support 1
    (8, 6, 3.5 * DAY + 100), (8, 6, 3.5 * DAY + 110),  # H: test; item 6 unseen in train -> dropped
]


@pytest.fixture
def tiny(tmp_path):
    """The hand-built dataset in the prepared (TSV) format."""
    path = tmp_path / "tiny.tsv"
    lines = ["SessionId\tItemId\tTime"] + [f"{s}\t{i}\t{T0 + t}" for s, i, t in TINY_ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path
