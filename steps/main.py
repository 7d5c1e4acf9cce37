"""Entry point ``main``: the whole workflow, each step a nested run of one parent run."""

from __future__ import annotations

import argparse
import sys

from seqrec.workflow.cli import int_arg, run_step
from seqrec.workflow.main import MainParams, register_summary, run_main


def parse_args(argv: list[str] | None = None) -> MainParams:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--clicks", default="", help="raw YooChoose clicks file; empty: the built-in generated data")
    p.add_argument("--buys", default="")
    p.add_argument("--fraction", type=int_arg, default=1)
    p.add_argument("--synthetic-clicks", type=int_arg, default=100_000)
    p.add_argument("--seed", type=int_arg, default=0)
    p.add_argument("--epochs", type=int_arg, default=0,
                   help="cap on the neural models' selection epochs (0: the presets' own; early stopping decides)")
    p.add_argument("--models", default="all", help="comma-separated model names, or all")
    p.add_argument("--time-budget", type=float, default=MainParams.time_budget,
                   help="seconds for the whole run, shared by the neural models (0: no limit)")
    p.add_argument("--seeds", type=int_arg, default=1,
                   help="repeat each training run's protocol with N seeds; the comparison shows mean +- std")
    a = p.parse_args(argv)
    return MainParams(a.clicks, a.buys, a.fraction, a.synthetic_clicks, a.seed, a.epochs, a.models, a.time_budget,
                      a.seeds)


def main(argv: list[str] | None = None) -> int:
    try:
        params = parse_args(argv)
    except ValueError as exc:  # a setting out of range: one line, before any work
        print(f"main: error: {exc}", file=sys.stderr)
        return 2

    def action() -> str:
        results = run_main(params)
        return f"finished {len(results['runs'])} steps; {register_summary(results['register'])}"

    return run_step("main", action)


if __name__ == "__main__":
    sys.exit(main())
