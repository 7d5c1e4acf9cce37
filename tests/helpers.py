"""Helpers shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest


@contextmanager
def tracking_at(uri: str) -> Iterator[str]:
    """MLflow at ``uri`` here and in subprocesses and entry points (other tests set MLflow's URI explicitly,
    which overrides the environment variable); the previous URI afterwards."""
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(previous)


def own_store(tmp_path: Path):
    """A SQLite tracking store of the test's own (no champion of other tests), as a context manager."""
    return tracking_at(f"sqlite:///{tmp_path / 'own.db'}")
