"""Helpers shared by the test modules."""

from __future__ import annotations

import socket
import urllib.request
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


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_health(uri: str) -> bool:
    """Whether the MLflow server at ``uri`` answers its ``/health`` endpoint."""
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


# a training driver (``python DRIVER --model ...``) whose process is killed (SIGKILL) once the second seed's first
# checkpoint is saved: the run's own process when seeds run one after another, the seed's worker when they run
# at once (spawned workers import the driver, so the patch sits at its top and the training under the main guard)
# the run's own process killed after its first seed's first checkpoint, the pids of its seed workers written first
KILLED_PARENT = """
import os, signal, sys
import psutil
from seqrec.checkpoints import Checkpointer
original = Checkpointer.save

def save(self, state):
    original(self, state)
    if self.artifacts is not None and self.artifacts.folder == "checkpoints":
        workers = [p.pid for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
        open("workers.txt", "w").write(" ".join(map(str, workers)))
        os.kill(os.getpid(), signal.SIGKILL)

Checkpointer.save = save
if __name__ == "__main__":
    from seqrec.train import main
    sys.exit(main(sys.argv[1:]))
"""

KILLED_IN_SEED_2 = """
import os, signal, sys
from seqrec.checkpoints import Checkpointer
original = Checkpointer.save

def save(self, state):
    original(self, state)
    if self.artifacts is not None and self.artifacts.folder == "checkpoints/seed2":
        os.kill(os.getpid(), signal.SIGKILL)

Checkpointer.save = save
if __name__ == "__main__":
    from seqrec.train import main
    sys.exit(main(sys.argv[1:]))
"""
