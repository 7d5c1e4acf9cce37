"""Which code produced a result: the code version tagged on runs and models, and the preprocessing code's digest.

``code_version()`` is the package version, plus, in a git checkout, the commit and a digest of the source
files that differ from it (uncommitted changes and untracked files); outside git, a digest of every source
file of the package. Two results with the same code version were made by the same code, so ``main`` reuses
a finished step only under the same code version and ``register`` prints it for the models it compares.

``preprocess_code_version()`` is a digest of the modules that read and preprocess clicks: part of a
processed dataset's content digest, so that a change to how clicks become a dataset gives a new dataset.
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

import seqrec

PACKAGE = Path(seqrec.__file__).resolve().parent
ROOT = PACKAGE.parent
SOURCE_DIRS = ("seqrec", "steps")  # the code of results: the package and its entry points
PREPROCESS_SOURCES = ("data/readers.py", "data/preprocess.py", "data/buys.py", "data/dataset.py", "data/formats",
                      "data/outofcore.py", "data/split_writer.py", "data/sql_common.py", "data/sql_delimited.py",
                      "data/sql_jsonl.py", "data/sql_parquet.py", "data/sql_protocol.py", "data/sql_sources.py")


def _digest(files: list[Path], root: Path) -> str:
    """SHA-256 of the relative paths and bytes of ``files`` (sorted), first 8 hex characters."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() if path.is_file() else b"<deleted>")
        h.update(b"\0")
    return h.hexdigest()[:8]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _python_files(roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        found.extend([root] if root.is_file() else root.rglob("*.py"))
    return [f for f in found if "__pycache__" not in f.parts]


@cache
def code_version() -> str:
    """``0.1.0@<commit>`` for a clean checkout, ``0.1.0@<commit>+<digest>`` with uncommitted or untracked
    source files (the digest of their content), ``0.1.0+src.<digest>`` outside git."""
    version = seqrec.__version__
    try:
        if Path(_git("rev-parse", "--show-toplevel").strip()).resolve() != ROOT:
            raise OSError("the package is not the root of the checkout it sits in")
        commit = _git("rev-parse", "HEAD").strip()
        changed = _git("status", "--porcelain", "--untracked-files=all", "--", *SOURCE_DIRS).splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"{version}+src.{_digest(_python_files([PACKAGE]), ROOT)}"
    paths = [ROOT / line[3:].split(" -> ")[-1].strip('"') for line in changed]
    dirty = [p for p in paths if p.suffix == ".py" or not p.exists()]
    return f"{version}@{commit[:12]}" + (f"+{_digest(dirty, ROOT)}" if dirty else "")


@cache
def preprocess_code_version() -> str:
    """A digest of the source of the readers and the preprocessing (``PREPROCESS_SOURCES``)."""
    return _digest(_python_files([PACKAGE / p for p in PREPROCESS_SOURCES]), PACKAGE)
