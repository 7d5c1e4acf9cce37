"""Entry point ``main``: the whole workflow, each step a nested run of one parent run, on the built-in generated
data, on a click file (every argument of the preprocess entry point applies) or on a processed dataset (--data)."""

from __future__ import annotations

import argparse
import sys

from seqrec.configs import RangeError
from seqrec.models.fused import FUSIBLE
from seqrec.workflow.cli import int_arg, run_step
from seqrec.workflow.main import AUTO, MainParams, register_summary, run_main
from steps.preprocess import parse_args as parse_preprocess_args


def auto_or_seconds(value: str) -> float | str:
    """``auto``, or seconds (checked by ``MainParams``)."""
    return AUTO if value.strip().lower() == AUTO else float(value)


def parse_args(argv: list[str] | None = None) -> MainParams:
    """``main``'s own arguments; every other one is the preprocess entry point's (its names, defaults and
    checks), a setting out of range being named as main's."""
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False, add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help and the preprocess arguments, exit")
    p.add_argument("--data", default="",
                   help="a processed dataset directory (written by preprocess): no preprocess step; not with --clicks")
    p.add_argument("--epochs", type=int_arg, default=0,
                   help="cap on the neural models' selection epochs (0: the presets' own, or the built-in data's "
                        "caps under the auto budget; early stopping decides)")
    p.add_argument("--models", default="all", help="comma-separated model names, or all")
    p.add_argument("--time-budget", type=auto_or_seconds, default=AUTO,
                   help="auto (default): fixed epoch caps on the built-in data, no limit on your data; or seconds "
                        "for the whole run, shared by the neural models (0: no limit)")
    p.add_argument("--seeds", type=int_arg, default=1,
                   help="repeat each training run's protocol with N seeds; the comparison shows mean +- std")
    p.add_argument("--tune", type=int_arg, default=0,
                   help="give each sequence model an N-trial Optuna study on valid before its final run (0: none)")
    p.add_argument("--fuse", default="",
                   help=f"fuse each sequence model with this session-kNN model ({', '.join(FUSIBLE)}), its share "
                        "chosen on valid (empty: none)")
    a, rest = p.parse_known_args(argv)
    if a.help:
        p.print_help()
        print("\nand every argument of the preprocess entry point, with its defaults:\n")
        parse_preprocess_args(["--help"])  # prints them and exits
    pre = parse_preprocess_args(rest)
    return MainParams(clicks=pre.clicks, buys=pre.buys, fraction=pre.config.fraction,
                      synthetic_clicks=pre.synthetic_clicks, seed=pre.seed, epochs=a.epochs, models=a.models,
                      time_budget=a.time_budget, seeds=a.seeds, tune=a.tune, fuse=a.fuse, data=a.data,
                      preprocess=pre)


def main(argv: list[str] | None = None) -> int:
    try:
        params = parse_args(argv)
    except ValueError as exc:  # a setting out of range: one line, before any work
        said = exc.problem if isinstance(exc, RangeError) else exc  # every setting here is main's: named once
        print(f"main: error: {said}", file=sys.stderr)
        return 2

    def action() -> str:
        results = run_main(params)
        return f"finished {len(results['runs'])} steps; {register_summary(results['register'])}"

    return run_step("main", action)


if __name__ == "__main__":
    sys.exit(main())
