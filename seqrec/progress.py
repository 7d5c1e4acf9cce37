"""Progress bars: redrawn live on a terminal, one line every half minute when written to a log file.

Without a terminal every redraw of a bar would become a line of the log (``make run``'s log, CI output),
megabytes of them over a training run; the longer interval keeps logs readable and still shows progress.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

LOG_INTERVAL_S = 30.0


def progress_bar(iterable: Iterable[T] | None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, redrawn at most every ``LOG_INTERVAL_S`` seconds when the stream it writes
    to (``file``, stderr by default or when None, as in tqdm) is not a terminal. A None ``iterable`` gives a
    bar updated by hand."""
    if not (kwargs.get("file") or sys.stderr).isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)


def show(bar: tqdm, **values: object) -> None:
    """Show ``values`` (a running loss) after the bar at its next redraw, without forcing one: a forced redraw
    every few batches would write a line to a log file each time, whatever the interval."""
    bar.set_postfix(values, refresh=False)
