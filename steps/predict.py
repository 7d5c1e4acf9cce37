"""Entry point ``predict``: the top-k recommendations of every session of a click log (any format preprocess
reads), from a logged or registered model, written to a Parquet file (session, items, scores)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from seqrec.data.readers import FORMATS, ReadOptions, parse_columns
from seqrec.serving.predict import DEFAULT_CHUNK_SESSIONS, PredictOptions
from seqrec.workflow.cli import bool_arg, int_arg, run_step
from seqrec.workflow.predict import PredictParams, run_predict

T = TypeVar("T")


def named(parse: Callable[[str], T], name: str, value: str) -> T:
    """``parse(value)``, its error naming the parameter (one line, rather than argparse's usage text)."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def parse_args(argv: list[str] | None = None) -> PredictParams:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--model-uri", default="models:/seqrec@champion",
                   help="any MLflow model URI (models:/seqrec@champion, runs:/<id>/model, models:/m-<id>, ...)")
    p.add_argument("--sessions", default="", help="click file of the open sessions to score")
    p.add_argument("--out", default="recs.parquet", help="Parquet file to write (session, items, scores)")
    p.add_argument("--k", default="20", help="items per session (1..1000)")
    p.add_argument("--overwrite", default="false", help="replace an earlier predict output at --out")
    p.add_argument("--chunk-sessions", default=str(DEFAULT_CHUNK_SESSIONS),
                   help="sessions scored and written at a time (bounds memory)")
    p.add_argument("--on-bad-lines", choices=["error", "skip"], default="error")
    p.add_argument("--format", default="auto",
                   help="auto: raw YooChoose or the prepared TSV, told apart by the first line")
    p.add_argument("--columns", default="", help="generic formats: session=COL,item=COL,time=COL[,event=COL]")
    p.add_argument("--time-unit", choices=["", "s", "ms", "iso"], default="",
                   help="generic formats: unit of the time column (default s); otto: forces ts's unit")
    p.add_argument("--sep", default="", help="csv: field separator (default: sniffed from the header)")
    p.add_argument("--events", default="", help="event types to keep, comma-separated (default: click-like)")
    p.add_argument("--session-gap", type=float, default=1800.0, help="retailrocket: seconds that end a session")
    a = p.parse_args(argv)
    sep = {"tab": "\t", "\\t": "\t"}.get(a.sep, a.sep)
    events = tuple(e.strip() for e in a.events.split(",") if e.strip())
    read = ReadOptions(a.on_bad_lines, parse_columns(a.columns), a.time_unit, sep, events, a.session_gap)
    if a.format not in ("auto", *FORMATS):
        raise ValueError(f"format must be auto or one of {', '.join(FORMATS)}, got {a.format!r}")
    options = PredictOptions(named(int_arg, "k", a.k), named(int_arg, "chunk_sessions", a.chunk_sessions),
                             named(bool_arg, "overwrite", a.overwrite))
    return PredictParams(a.model_uri, a.sessions, a.out, options, a.format, read)


def main(argv: list[str] | None = None) -> int:
    try:
        params = parse_args(argv)
    except ValueError as exc:  # a setting out of range: one line, before any work
        print(f"predict: error: {exc}", file=sys.stderr)
        return 2

    def action() -> str:
        run_id, m = run_predict(params)
        return (f"run {run_id}: wrote {params.out}: {m['sessions']:,.0f} sessions ({m['clicks']:,.0f} clicks, "
                f"{m['unknown_items']:,.0f} on unknown items, {m['unknown_sessions']:,.0f} sessions with only "
                f"unknown items), {m['sessions_per_second']:,.0f} sessions/s")

    return run_step("predict", action)


if __name__ == "__main__":
    sys.exit(main())
