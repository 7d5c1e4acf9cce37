"""Entry point ``train_gru``: GRU4Rec (Hidasi et al. 2016, 2018) trained with the shared training core."""

import sys

from seqrec.workflow.neural import cli

if __name__ == "__main__":
    sys.exit(cli("gru4rec"))
