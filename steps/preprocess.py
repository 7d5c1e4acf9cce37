"""Entry point ``preprocess``: raw or prepared clicks (or the built-in generated data) -> processed dataset."""

from __future__ import annotations

import argparse
import sys

from seqrec.data.preprocess import PreprocessConfig
from seqrec.workflow.cli import int_arg, run_step
from seqrec.workflow.preprocess import PreprocessParams, run_preprocess


def parse_args(argv: list[str] | None = None) -> PreprocessParams:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clicks", default="", help="clicks file (raw .dat or prepared TSV); empty: generated data")
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
    a = p.parse_args(argv)
    cfg = PreprocessConfig(a.min_item_support, a.min_session_length, a.test_days, a.val_days, a.fraction, a.max_len)
    return PreprocessParams(a.clicks, a.buys, a.out, a.name, a.on_bad_lines, a.synthetic_clicks, a.seed, cfg)


def main(argv: list[str] | None = None) -> int:
    params = parse_args(argv)

    def action() -> str:
        out, stats = run_preprocess(params)
        counts = ", ".join(f"{s} {c['clicks']:,} clicks / {c['sessions']:,} sessions"
                           for s, c in stats["splits"].items())
        return f"wrote {out}: {stats['n_items']:,} items; {counts}"

    return run_step("preprocess", action)


if __name__ == "__main__":
    sys.exit(main())
