"""Entry point ``eda``: plots, figures and an HTML report of a processed dataset."""

from __future__ import annotations

import argparse
import sys

from seqrec.workflow.cli import run_step
from seqrec.workflow.eda import run_eda


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--buys", default="", help="raw YooChoose buys file (default: the dataset's own buys)")
    a = p.parse_args(argv)

    def action() -> str:
        s = run_eda(a.data, a.buys)
        return f"{s['clicks']:,} clicks, {s['sessions']:,} sessions, Gini {s['gini']:.3f}"

    return run_step("eda", action)


if __name__ == "__main__":
    sys.exit(main())
