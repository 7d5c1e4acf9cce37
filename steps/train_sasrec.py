"""Entry point ``train_sasrec``: SASRec (Kang & McAuley 2018) trained with the shared training core."""

import sys

from seqrec.workflow.neural import cli


def main(argv: list[str] | None = None) -> int:
    return cli("sasrec", argv)


if __name__ == "__main__":
    sys.exit(main())
