"""Entry point ``preprocess``: a click file of any supported format (or the built-in generated data) ->
processed dataset."""

from __future__ import annotations

import argparse
import sys

from seqrec.data.preprocess import ENGINES, PreprocessConfig
from seqrec.workflow.cli import add_read_arguments, int_arg, read_options, run_step
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
    p.add_argument("--synthetic-clicks", type=int_arg, default=100_000, help="size of the generated data")
    p.add_argument("--seed", type=int_arg, default=0)
    p.add_argument("--engine", default="auto", help=f"one of {', '.join(ENGINES)}: memory (numpy, the faster on what "
                   f"fits), duckdb (out of core: logs bigger than memory), auto (duckdb when the log would take more "
                   f"than half the available memory); both write the same dataset")
    add_read_arguments(p)
    a = p.parse_args(argv)
    read = read_options(a)
    cfg = PreprocessConfig(a.min_item_support, a.min_session_length, a.test_days, a.val_days, a.fraction, a.max_len,
                           a.engine)
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
