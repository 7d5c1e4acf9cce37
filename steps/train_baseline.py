"""Entry point ``train_baseline``: a classic baseline (pop, spop, itemknn, ar, sr, sknn, vsknn, stan, vstan)."""

from __future__ import annotations

import argparse
import sys

from seqrec.models.baselines import BASELINES
from seqrec.workflow.baseline import run_baseline
from seqrec.workflow.cli import int_arg, parse_overrides


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--model", required=True, choices=BASELINES)
    p.add_argument("--max-len", type=int_arg, default=50)
    p.add_argument("--params", default="", help="hyper-parameter overrides: key=value,key=value")
    a = p.parse_args(argv)
    try:
        run_id, metrics = run_baseline(a.data, a.model, parse_overrides(a.params), a.max_len)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"train_baseline: error: {exc}", file=sys.stderr)
        return 2
    print(f"train_baseline: {a.model} run {run_id}: test Recall@20 {metrics['test_recall_at_20']:.4f}, "
          f"MRR@20 {metrics['test_mrr_at_20']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
