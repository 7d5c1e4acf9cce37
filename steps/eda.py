"""Entry point ``eda``: plots, figures and an HTML report of a processed dataset."""

from __future__ import annotations

import argparse
import sys

from seqrec.data.readers import DataFormatError
from seqrec.workflow.eda import run_eda


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--buys", default="", help="raw YooChoose buys file (default: the dataset's own buys)")
    a = p.parse_args(argv)
    try:
        summary = run_eda(a.data, a.buys)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"eda: error: {exc}", file=sys.stderr)
        return 2
    print(f"eda: {summary['clicks']:,} clicks, {summary['sessions']:,} sessions, Gini {summary['gini']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
