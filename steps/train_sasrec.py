"""Entry point ``train_sasrec``: SASRec (Kang & McAuley 2018);
the same as ``train --model sasrec``, its runs ``train_sasrec``."""

import sys

from seqrec.workflow.neural import cli


def main(argv: list[str] | None = None) -> int:
    return cli("sasrec", argv)


if __name__ == "__main__":
    sys.exit(main())
