"""Entry point ``register``: register the best training run (by a validation metric) as the champion."""

from __future__ import annotations

import argparse
import sys

from mlflow.exceptions import MlflowException

from seqrec.workflow.register import run_register


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metric", default="val_recall_at_20", help="validation metric to maximise")
    p.add_argument("--name", default="seqrec", help="registered model name")
    a = p.parse_args(argv)
    try:
        decision = run_register(a.metric, a.name)
    except (ValueError, MlflowException) as exc:
        print(f"register: error: {exc}", file=sys.stderr)
        return 2
    verb = "registered" if decision["changed"] else "kept"
    print(f"register: {verb} {a.name} version {decision['version']} (run {decision['run_id']}) as @champion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
