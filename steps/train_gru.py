"""Entry point ``train_gru``: GRU4Rec (Hidasi et al. 2016, 2018);
the same as ``train --model gru4rec``, its runs ``train_gru4rec``."""

import sys

from seqrec.workflow.neural import cli


def main(argv: list[str] | None = None) -> int:
    return cli("gru4rec", argv)


if __name__ == "__main__":
    sys.exit(main())
