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
