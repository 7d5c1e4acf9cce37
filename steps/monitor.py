"""Entry point ``monitor``: replay later clicks through a model, per period, and say whether to retrain it."""

from __future__ import annotations

import argparse
import sys

from seqrec.monitoring import Thresholds
from seqrec.workflow.cli import add_read_arguments, bool_arg, int_arg, read_options, run_step
from seqrec.workflow.monitor import MonitorParams, period_line, run_monitor


def parse_args(argv: list[str] | None = None) -> MonitorParams:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--model-uri", default="models:/seqrec@champion",
                   help="any MLflow model URI (models:/seqrec@champion, runs:/<id>/model, models:/m-<id>, ...)")
    p.add_argument("--clicks", default="", help="later click file(s), comma-separated; empty: the later period of "
                                                "the built-in data the model was trained on")
    p.add_argument("--period", default="1d", help="length of a period: 1d, 12h, 30m, 3600s, 1w (default 1d)")
    p.add_argument("--min-mrr-ratio", type=float, default=0.9,
                   help="retrain when the last period's MRR@20 is below this times the model's test MRR@20")
    p.add_argument("--max-unknown-share", type=float, default=0.2,
                   help="retrain when more of the last period's clicks than this are on items the model does not know")
    p.add_argument("--max-popularity-shift", type=float, default=1.0,
                   help="retrain when the last period's popularity shift (JS divergence, 0..1) is above this (1: off)")
    p.add_argument("--min-predictions", type=int_arg, default=100,
                   help="the verdict judges the last period with at least this many predictions")
    p.add_argument("--progress", type=bool_arg, default=True)
    add_read_arguments(p)
    a = p.parse_args(argv)
    read = read_options(a)
    thresholds = Thresholds(a.min_mrr_ratio, a.max_unknown_share, a.max_popularity_shift, a.min_predictions)
    return MonitorParams(a.model_uri, a.clicks, a.period, a.format, read, thresholds, a.progress)


def main(argv: list[str] | None = None) -> int:
    try:
        params = parse_args(argv)
    except ValueError as exc:  # a bad period, threshold or column mapping: one line, before any work
        print(f"monitor: error: {exc}", file=sys.stderr)
        return 2

    def action() -> str:
        result = run_monitor(params)
        for period in result["periods"]:
            print(f"monitor: {period_line(period)}")
        why = f" ({'; '.join(result['reasons'])})" if result["reasons"] else ""
        return (f"run {result['run_id']}: {len(result['periods'])} period(s) of {result['clicks']} against "
                f"{result['reference']} {result['reference_mrr']:.4f}: verdict {result['verdict']}{why}")

    return run_step("monitor", action)


if __name__ == "__main__":
    sys.exit(main())
