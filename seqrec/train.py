"""``python -m seqrec.train --model NAME ...``: train any neural model, alone or under torchrun.

    torchrun --nproc_per_node=2 -m seqrec.train --model sasrec --data DIR --preset tiny --epochs 1
    torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT -m seqrec.train ...

The second, on each of two machines, trains one run on both (docs/scale.md, "Several machines").

Takes the same options as the ``train_*`` entry points (``--data``, ``--preset``, ``--epochs``,
``--device``, ``--resume``, ``--params`` and any ``--field value`` override).
"""

from __future__ import annotations

import argparse
import sys

from seqrec.models.registry import MODELS
from seqrec.workflow.neural import cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    args, rest = p.parse_known_args(argv)
    return cli(args.model, rest)


if __name__ == "__main__":
    sys.exit(main())
