"""Entry point ``preprocess``: a click file of any supported format (or the built-in generated data) ->
processed dataset."""

from __future__ import annotations

import argparse
import sys

from seqrec.data.preprocess import PreprocessConfig
from seqrec.data.readers import FORMATS, ReadOptions, parse_columns
from seqrec.workflow.cli import int_arg, run_step
from seqrec.workflow.preprocess import PreprocessParams, run_preprocess


def parse_args(argv: list[str] | None = None) -> PreprocessParams:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--clicks", default="", help="click file(s), comma-separated; empty: generated data")
    p.add_argument("--buys", default="", help="raw YooChoose buys file (optional)")
    p.add_argument("--out", default="", help="processed dataset directory (default data/processed/NAME)")
    p.add_argument("--name", default="", help="dataset name (default: from the clicks file)")
    p.add_argument("--min-item-support", type=int_arg, default=5)
    p.add_argument("--min-session-length", type=int_arg, default=2)
    p.add_argument("--test-days", type=float, default=1.0)
    p.add_argument("--val-days", type=float, default=1.0)
    p.add_argument("--fraction", type=int_arg, default=1, help="keep the most recent 1/N of training sessions")
    p.add_argument("--max-len", type=int_arg, default=50)
    p.add_argument("--on-bad-lines", choices=["error", "skip"], default="error")
    p.add_argument("--synthetic-clicks", type=int_arg, default=100_000, help="size of the generated data")
    p.add_argument("--seed", type=int_arg, default=0)
    p.add_argument("--format", choices=["auto", *FORMATS], default="auto",
                   help="auto: raw YooChoose or the prepared TSV, told apart by the first line")
    p.add_argument("--columns", default="", help="generic formats: session=COL,item=COL,time=COL[,event=COL]")
    p.add_argument("--time-unit", choices=["", "s", "ms", "iso"], default="",
                   help="generic formats: unit of the time column (default s); otto: forces ts's unit")
    p.add_argument("--sep", default="", help="csv: field separator (default: sniffed from the header)")
    p.add_argument("--events", default="", help="event types to keep, comma-separated (default: click-like)")
    p.add_argument("--session-gap", type=float, default=1800.0, help="retailrocket: seconds that end a session")
    a = p.parse_args(argv)
    cfg = PreprocessConfig(a.min_item_support, a.min_session_length, a.test_days, a.val_days, a.fraction, a.max_len)
    sep = {"tab": "\t", "\\t": "\t"}.get(a.sep, a.sep)
    events = tuple(e.strip() for e in a.events.split(",") if e.strip())
    read = ReadOptions(a.on_bad_lines, parse_columns(a.columns), a.time_unit, sep, events, a.session_gap)
    return PreprocessParams(a.clicks, a.buys, a.out, a.name, a.on_bad_lines, a.synthetic_clicks, a.seed, cfg,
                            a.format, read)


def main(argv: list[str] | None = None) -> int:
    try:
        params = parse_args(argv)
    except ValueError as exc:  # a setting out of range: one line, before any work
        print(f"preprocess: error: {exc}", file=sys.stderr)
        return 2

    def action() -> str:
        out, stats = run_preprocess(params)
        counts = ", ".join(f"{s} {c['clicks']:,} clicks / {c['sessions']:,} sessions"
                           for s, c in stats["splits"].items())
        reader = ", ".join(f"{k}={v}" for k, v in stats["raw"]["reader"].items())
        return f"read {reader}; wrote {out}: {stats['n_items']:,} items; {counts}"

    return run_step("preprocess", action)


if __name__ == "__main__":
    sys.exit(main())
