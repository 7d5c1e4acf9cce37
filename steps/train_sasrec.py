"""Entry point ``train_sasrec``: SASRec (Kang & McAuley 2018) trained with the shared training core."""

import sys

from seqrec.workflow.neural import cli

if __name__ == "__main__":
    sys.exit(cli("sasrec"))
