"""Entry point ``train_baseline``: a classic baseline (pop, spop, itemknn, ar, sr, sknn, vsknn, stan, vstan)."""

from __future__ import annotations

import argparse
import sys

from seqrec.models.baselines import BASELINES
from seqrec.workflow.baseline import run_baseline
from seqrec.workflow.cli import int_arg, parse_with_overrides, run_step
from seqrec.workflow.report import seed_summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--model", required=True, choices=BASELINES)
    p.add_argument("--max-len", type=int_arg, default=50)
    p.add_argument("--params", default="", help="hyper-parameter overrides: key=value,key=value")
    p.add_argument("--seeds", type=int_arg, default=1, help="accepted; the baselines are deterministic (std 0)")
    a, overrides = parse_with_overrides(p, argv)

    def action() -> str:
        run_id, m = run_baseline(a.data, a.model, overrides, a.max_len, seeds=a.seeds)
        return f"{a.model} run {run_id}: test {seed_summary(m)}"

    return run_step("train_baseline", action)


if __name__ == "__main__":
    sys.exit(main())
