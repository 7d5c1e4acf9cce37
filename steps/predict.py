"""Entry point ``predict``: the top-k recommendations of every session of a click log (any format preprocess
reads), from a logged or registered model, written to a Parquet file (session, items, scores)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from seqrec.serving.predict import DEFAULT_CHUNK_SESSIONS, PredictOptions
from seqrec.workflow.cli import add_read_arguments, bool_arg, int_arg, read_options, run_step
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
    add_read_arguments(p)
    a = p.parse_args(argv)
    read = read_options(a)
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
