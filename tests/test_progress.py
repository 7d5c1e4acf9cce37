"""Progress bars are live on a terminal and sparse in a log file."""

import io
import sys

from seqrec import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_a_line_every_half_minute(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress.progress_bar(range(3), file=sys.stderr)
    assert bar.mininterval == progress.LOG_INTERVAL_S
    assert list(bar) == [0, 1, 2]


def test_a_terminal_keeps_the_live_bar(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = progress.progress_bar(range(3), file=sys.stderr)
    assert bar.mininterval < 1.0
    assert list(bar) == [0, 1, 2]


def test_an_explicit_interval_wins(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress.progress_bar(range(3), mininterval=2.0, file=sys.stderr).mininterval == 2.0


def test_a_running_loss_does_not_force_a_line_per_update(monkeypatch):
    log = io.StringIO()
    bar = progress.progress_bar(range(500), file=log)
    for i in bar:
        progress.show(bar, loss=f"{i:.4f}")
    assert log.getvalue().count("\r") <= 3  # the first and the last draw, not one per update
