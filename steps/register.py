"""Entry point ``register``: register the best training run (by a validation metric) as the champion."""

from __future__ import annotations

import argparse
import sys

from seqrec.workflow.cli import run_step
from seqrec.workflow.register import run_register


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metric", default="val_recall_at_20", help="validation metric to maximise")
    p.add_argument("--name", default="seqrec", help="registered model name")
    a = p.parse_args(argv)

    def action() -> str:
        d = run_register(a.metric, a.name)
        verb = "registered" if d["changed"] else "kept"
        return f"{verb} {a.name} version {d['version']} (run {d['run_id']}) as @champion"

    return run_step("register", action)


if __name__ == "__main__":
    sys.exit(main())
