"""Output directories a step may write: never one that holds what the project did not write.

A step writes a directory only if it does not exist, is empty, or is an earlier output of the same step:
it holds the step's marker file (a processed dataset's ``stats.json``) and nothing but the names that step
writes. Anything else stops the step before any work, with one line naming the directory, what it holds
that the step did not write, and what to do. Directories are created with the permissions the umask gives
(not the 0700 of a temporary directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class OutputConflict(ValueError):
    """The output path holds something the step did not write."""


def check_output_dir(path: str | Path, step: str, marker: str, owned: frozenset[str], hint: str) -> None:
    """Refuse to write ``path`` unless it is missing, an empty directory, or ``step``'s own earlier output
    (``marker`` present, every entry in ``owned``). ``hint`` says what to do instead (``choose another -P out``)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise OutputConflict(f"{path} is a file, not a directory {step} may write: {hint}")
    entries = sorted(p.name for p in path.iterdir())
    if not entries or (marker in entries and set(entries) <= owned):
        return
    foreign = [name for name in entries if name not in owned] or [f"no {marker}"]
    shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} in all)" if len(foreign) > 5 else "")
    raise OutputConflict(f"{path} holds what {step} did not write ({shown}): {hint}; {step} never overwrites "
                         f"or deletes what it did not write")


def check_name(name: str, what: str = "dataset name") -> str:
    """``name`` if it is a usable file name (letters, digits, ``._+-``; not empty, no path separator, no leading
    dot), else a ``ValueError`` that says so."""
    if not _NAME.fullmatch(name or ""):
        raise ValueError(f"{what} {name!r} is not usable as a directory name: expected letters, digits and . _ + - "
                         f"only, starting with a letter or digit (no path separator, no leading dot); give -P name=")
    return name


def umask_mode(directory: bool = True) -> int:
    """The mode a new directory (or file) gets under this process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object], *, durable: bool = False,
                     keep: Path | None = None) -> None:
    """Write ``path`` by calling ``write`` on a temporary sibling file and renaming it: a reader sees the old file
    or the new one, never half of one, and a failed write (a full disk) leaves no partial file. ``keep``: the
    current file is renamed to ``keep`` first (the one before it survives). ``durable``: the file is flushed and
    fsynced before the renames, and its directory after them, so the write survives a crash of the machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if keep is not None and path.exists():
            os.replace(path, keep)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)  # make the renames durable too
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_json_atomically(path: str | Path, obj: object) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary sibling file and a rename: a reader sees the old
    file or the new one, never half of one."""
    write_atomically(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def swap_directory(new: Path, out: Path) -> None:
    """Put the finished directory ``new`` (a sibling of ``out``) in place of ``out``, which the caller has checked
    (``check_output_dir``): the old one is renamed aside first and removed once the new one is in place, so a kill
    leaves one of them whole (the aside copy is ``.NAME.old-PID``)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)
