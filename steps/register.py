"""Entry point ``register``: the best model of one dataset (by a validation metric) becomes the champion."""

from __future__ import annotations

import argparse
import sys

from seqrec.workflow.cli import bool_arg, run_step
from seqrec.workflow.register import DEFAULT_METRIC, run_register


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--data", default="", help="processed dataset directory (or its digest or name) whose models "
                                              "compete; empty: the dataset of the newest training run")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="validation metric to maximise")
    p.add_argument("--name", default="seqrec", help="registered model name")
    p.add_argument("--force", type=bool_arg, default=False,
                   help="replace a champion trained on another dataset")
    a = p.parse_args(argv)

    def action() -> str:
        d = run_register(a.data, a.metric, a.name, force=a.force)
        verb = "registered" if d["changed"] else "kept"
        metric = next(k for k in d if k.startswith("best_"))
        return (f"{verb} {a.name} version {d['version']} (run {d['run_id']}, dataset {d['dataset']}, "
                f"{metric} {d[metric]:.4f}) as @champion")

    return run_step("register", action)


if __name__ == "__main__":
    sys.exit(main())
