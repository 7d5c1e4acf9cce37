"""Entry point ``train``: any sequence model of the registry (``--model``: gru4rec, sasrec, bert4rec, meanemb or a
model file added under ``seqrec/models/``) trained with the shared training core, on train_tr, selected on valid,
refitted on train_full and tested, in one MLflow run. ``train_gru``, ``train_sasrec`` and ``train_bert4rec`` are
this entry point with that model. A run of model NAME is the step ``train_NAME`` (its ``seqrec.step`` tag and the
prefix of its summary line), whichever entry point started it."""

import sys

from seqrec.workflow.neural import build_parser, cli

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Train the model ``--model`` names; the exit status (2: a usage or user error, in one line)."""
    return cli(None, argv)


if __name__ == "__main__":
    sys.exit(main())
