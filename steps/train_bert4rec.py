"""Entry point ``train_bert4rec``: BERT4Rec (Sun et al. 2019);
the same as ``train --model bert4rec``, its runs ``train_bert4rec``."""

import sys

from seqrec.workflow.neural import cli


def main(argv: list[str] | None = None) -> int:
    return cli("bert4rec", argv)


if __name__ == "__main__":
    sys.exit(main())
