"""Argument helpers shared by the entry-point scripts under ``steps/``."""

from __future__ import annotations

import errno
import sys
from argparse import ArgumentParser, Namespace
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from seqrec.configs import parse_value

if TYPE_CHECKING:
    from seqrec.data.readers import ReadOptions


def int_arg(value: str) -> int:
    """Parse an integer that MLflow may pass as a float string (``"64"`` or ``"64.0"``)."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return int(number)


def bool_arg(value: str) -> bool:
    """Parse ``true/false/1/0/yes/no``."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def resume_arg(value: str) -> bool | Literal["auto"]:
    """Parse ``--resume``: ``auto`` or a bool (``true/false/1/0/yes/no``)."""
    return "auto" if value.strip().lower() == "auto" else bool_arg(value)


def parse_overrides(text: str) -> dict:
    """``"k=100,similarity=cosine"`` -> ``{"k": 100, "similarity": "cosine"}``."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"override {part!r} is not key=value")
        key, value = part.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def run_step(step: str, action: Callable[[], str]) -> int:
    """Run an entry point's action and print its summary line; a user error (bad data, bad
    parameter, missing file or model) becomes one line on stderr and exit status 2."""
    from mlflow.exceptions import MlflowException

    from seqrec.checkpoints import CheckpointError
    from seqrec.trainer import TrainingDiverged

    try:
        summary = action()
    except (ValueError, TypeError, MlflowException, TrainingDiverged, CheckpointError) as exc:
        print(f"{step}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing file, a full disk, no permission, an unreachable tracking server
        print(f"{step}: error: {os_error(exc)}", file=sys.stderr)
        return 2
    if summary:
        print(f"{step}: {summary}")
    return 0


def os_error(exc: OSError) -> str:
    """An ``OSError`` in one line that names the file (``No space left on device: data/x/items.npy``)."""
    if exc.strerror and exc.filename is not None:
        hint = " (the disk is full: free space or write elsewhere)" if exc.errno == errno.ENOSPC else ""
        return f"{exc.strerror}: {exc.filename}{hint}"
    return " ".join(str(exc).split()) or type(exc).__name__


def extra_overrides(extra: list[str]) -> dict:
    """``["--k", "200", "--similarity", "cosine"]`` (arguments argparse did not know) -> overrides."""
    if len(extra) % 2 or any(not k.startswith("--") for k in extra[::2]):
        raise ValueError(f"extra arguments must be --name value pairs (e.g. --k 200), got {extra}")
    return {k[2:].replace("-", "_"): parse_value(v) for k, v in zip(extra[::2], extra[1::2], strict=True)}


def parse_with_overrides(parser: ArgumentParser, argv: list[str] | None) -> tuple[Namespace, dict]:
    """Parse ``argv``; ``--params k=v,...`` and every ``--name value`` pair the parser does not know become
    overrides (a malformed pair is a usage error naming it)."""
    args, extra = parser.parse_known_args(argv)
    overrides = parse_overrides(args.params)
    try:
        overrides.update(extra_overrides(extra))
    except ValueError as exc:
        parser.error(str(exc))
    return args, overrides


def add_read_arguments(p: ArgumentParser) -> None:
    """The options that say how to read a click log (``preprocess``, ``predict``, ``monitor``): its format, column
    mapping, time unit, separator, kept events, bad lines and RetailRocket's session gap."""
    from seqrec.data.readers import FORMATS

    p.add_argument("--format", default="auto", help=f"auto (raw YooChoose or the prepared TSV, told apart by the "
                                                    f"first line) or one of {', '.join(FORMATS)}")
    p.add_argument("--columns", default="", help="generic formats: session=COL,item=COL,time=COL[,event=COL]")
    p.add_argument("--time-unit", choices=["", "s", "ms", "iso"], default="",
                   help="generic formats: unit of the time column (default s); otto: forces ts's unit")
    p.add_argument("--sep", default="", help="csv: field separator (default: sniffed from the header)")
    p.add_argument("--events", default="", help="event types to keep, comma-separated (default: click-like)")
    p.add_argument("--on-bad-lines", choices=["error", "skip"], default="error")
    p.add_argument("--session-gap", type=float, default=1800.0, help="retailrocket: seconds that end a session")


def read_options(a: Namespace) -> ReadOptions:
    """The reading options of parsed ``add_read_arguments`` options; an unknown format is a ``ValueError``."""
    from seqrec.data.readers import FORMATS, ReadOptions, parse_columns

    if a.format not in ("auto", *FORMATS):
        raise ValueError(f"format must be auto or one of {', '.join(FORMATS)}, got {a.format!r}")
    sep = {"tab": "\t", "\\t": "\t"}.get(a.sep, a.sep)
    events = tuple(e.strip() for e in a.events.split(",") if e.strip())
    return ReadOptions(a.on_bad_lines, parse_columns(a.columns), a.time_unit, sep, events, a.session_gap)
