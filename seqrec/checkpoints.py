"""Per-epoch checkpoints of a training run, and the key that names a run's checkpoint directory.

Every epoch of ``seqrec.trainer`` ends with a checkpoint (model, optimiser, scheduler, RNG state, history:
tensors and plain types, read back with ``weights_only=True``) written to a fsynced temporary file and renamed
(``seqrec.outputs.write_atomically``), the one before it kept, so a killed run, a full disk or a corrupt file
loses at most one epoch. A run's checkpoints live in ``CHECKPOINT_ROOT / f"{model}-{run_key(...)}"`` on the
machine of rank 0 and, when the checkpointer has the run's :class:`RunArtifacts`, in the MLflow run's artifact
store too (the latest one only, overwritten each epoch), from where a run continues on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import torch
from mlflow.exceptions import MlflowException

from seqrec.outputs import write_atomically

if TYPE_CHECKING:
    from seqrec.data.dataset import ProcessedDataset

CHECKPOINT_ROOT = Path(os.environ.get("SEQREC_CHECKPOINTS", "checkpoints"))


def run_key(model_name: str, params: dict, data: ProcessedDataset, world_size: int = 1) -> str:
    """A digest of what determines a run's result: the model, its model and training settings (seed
    included), the dataset's digest (its content, not the path it was reached by) and the number of
    processes (each trains its own shard). Names the run's checkpoint directory; runtime switches
    (``RuntimeConfig``) stay out, so a run resumes under other ones."""
    if not data.digest:
        raise ValueError(f"{data.path}/stats.json has no digest (an old preprocess?): run the preprocess step again")
    blob = json.dumps({"model": model_name, "params": params, "data": data.digest, "world_size": world_size},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be read (truncated, corrupt, or holding more than tensors and plain types)."""


_PLAIN_TYPES = (torch.Tensor, str, int, float, bool, type(None))


class RunArtifacts:
    """A folder of an MLflow run's artifacts (``checkpoints``, ``checkpoints/seed2``...) that holds the run's
    latest checkpoint. A tracking server proxies the bytes to its artifact store (``mlflow-artifacts:/``), so
    every machine that reaches the server reaches them; a local store (SQLite, files) keeps them in its
    artifact root, so the same code serves one machine without a server."""

    def __init__(self, run_id: str, folder: str):
        self.run_id, self.folder = run_id, folder

    def upload(self, path: Path) -> None:
        """Log the file ``path`` into the folder, over the file of the same name that is there."""
        mlflow.MlflowClient().log_artifact(self.run_id, str(path), self.folder)

    def download(self, name: str, into: Path) -> Path | None:
        """The folder's file ``name`` downloaded into the directory ``into``; ``None`` when there is none."""
        client = mlflow.MlflowClient()
        wanted = f"{self.folder}/{name}"
        if wanted not in {a.path for a in client.list_artifacts(self.run_id, self.folder)}:
            return None
        return Path(client.download_artifacts(self.run_id, wanted, str(into)))

    def __str__(self) -> str:
        return f"run {self.run_id}'s artifacts {self.folder}/"


class Checkpointer:
    """Per-epoch checkpoints of one training run that a kill, a full disk or a corrupt file never costs
    more than an epoch.

    A state is written to a temporary file in the run's directory, flushed and fsynced; the current
    ``last.pt`` becomes ``last.prev.pt``, and only then is the new file renamed to ``last.pt``. States
    hold tensors and plain types only and are read with ``weights_only=True`` (no code runs on load);
    an unreadable ``last.pt`` falls back to ``last.prev.pt``, saying so.

    With ``artifacts`` every saved checkpoint is also uploaded there (over the previous upload: the artifact
    store holds the latest one only), and :meth:`fetch` brings it to this machine, so that a run continues
    on a machine that never held its files.
    """

    def __init__(self, directory: Path, artifacts: RunArtifacts | None = None):
        self.directory = directory
        self.path = directory / "last.pt"
        self.previous = directory / "last.prev.pt"
        self.artifacts = artifacts
        self._resumed_from_previous = False  # set by a fallback: the next save keeps the previous file

    def save(self, state: dict) -> None:
        """Write ``state`` (tensors and plain types) as the latest checkpoint, keeping the one before it, and
        upload it to the run's artifacts (after the local write: a kill in between costs one epoch). A failed
        upload (the tracking server unreachable for a moment) is said and training goes on: the local checkpoint
        stands, and the next epoch uploads again."""
        _check_plain(state, "state")
        write_atomically(self.path, lambda f: torch.save(state, f), durable=True,
                         keep=None if self._resumed_from_previous else self.previous)
        self._resumed_from_previous = False
        if self.artifacts is not None:
            try:
                self.artifacts.upload(self.path)
            except (MlflowException, OSError) as exc:
                print(f"checkpoint: could not upload {self.path} to {self.artifacts} ({exc}); the local checkpoint "
                      f"stands, the next epoch uploads again", file=sys.stderr, flush=True)

    def fetch(self, keep_local: bool = False) -> bool:
        """Make the run's uploaded checkpoint (the latest any machine saved) this machine's ``last.pt``, written
        atomically; ``False``, leaving the local files as they are, when the run has none. ``keep_local`` (the
        local files are the same run's): the local ``last.pt`` becomes ``last.prev.pt``, the fallback should the
        fetched one be unreadable; otherwise the local files go. :meth:`load` then verifies it like any other."""
        if self.artifacts is None:
            return False
        with tempfile.TemporaryDirectory(prefix="seqrec-fetch-") as tmp:
            fetched = self.artifacts.download(self.path.name, Path(tmp))
            if fetched is None:
                return False
            if not keep_local:
                self.clear()
            with open(fetched, "rb") as source:
                write_atomically(self.path, lambda f: shutil.copyfileobj(source, f), durable=True,
                                 keep=self.previous if keep_local else None)
        self._resumed_from_previous = False
        print(f"checkpoint: fetched the latest checkpoint from {self.artifacts} into {self.path}", flush=True)
        return True

    def load(self) -> dict | None:
        """The latest readable state (``None`` when there is none); an unreadable latest one falls back to
        the previous one, saying so, and ``CheckpointError`` names the files when neither can be read."""
        problems = []
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # corrupt bytes can fail anywhere in the zip reader or the unpickler
                problems.append(f"{path} is unreadable ({_unreadable_because(exc)})")
                continue
            if path == self.previous:  # the next save must not rotate what sits at last.pt over it
                self._resumed_from_previous = True
                latest = problems[0] if problems else f"{self.path} is missing (a kill between two renames)"
                print(f"checkpoint: {latest}; resuming from the previous one, {path} (epoch {state['epoch']} "
                      f"of {state['phase']})", flush=True)
            return state
        if problems:
            raise CheckpointError(f"{'; '.join(problems)}, and no earlier checkpoint of the run can be read: "
                                  f"start a new run (resume=false)")
        return None

    def clear(self) -> None:
        """Remove the run's checkpoints (a new run of the same key starts from scratch)."""
        self.path.unlink(missing_ok=True)
        self.previous.unlink(missing_ok=True)

    def read_json(self, name: str) -> dict | None:
        """The JSON file ``name`` of the run's directory (``None`` when missing or unreadable)."""
        try:
            return json.loads((self.directory / name).read_text())
        except (OSError, ValueError):
            return None

    def save_json(self, name: str, obj: dict) -> None:
        write_atomically(self.directory / name, lambda f: f.write(json.dumps(obj).encode()), durable=True)


def _check_plain(obj: Any, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` would not read back: anything but tensors, plain
    types and dicts, lists and tuples of them (named by its place in the state)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, f"{where} key")
            _check_plain(value, f"{where}[{key!r}]")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN_TYPES):
        raise TypeError(f"checkpoint {where} is a {type(obj).__name__}, not a tensor or plain type: "
                        f"convert it before saving (checkpoints are read with weights_only=True)")


def _unreadable_because(exc: Exception) -> str:
    """Why ``torch.load`` could not read a checkpoint, in one line (its weights-only refusals run to paragraphs)."""
    text = str(exc).strip()
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return f"it holds a {refused.group(1)}, not only tensors and plain types, refused by weights_only=True"
    first = text.splitlines()[0].split(". ")[0] if text else "empty file"
    return f"truncated or corrupt: {type(exc).__name__}: {first}"
