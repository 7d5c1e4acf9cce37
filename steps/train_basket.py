"""Entry point ``train_basket``: which sessions buy and what they buy (clicked, count, buypop, gbdt, sasrec,
gru4rec)."""

from __future__ import annotations

import argparse
import sys

from seqrec.workflow.basket import MODELS, run_basket
from seqrec.workflow.cli import parse_with_overrides, run_step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--data", required=True, help="processed dataset directory (with buys)")
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--params", default="", help="overrides: key=value,key=value (preset=tiny|default for the "
                                                "encoder of sasrec and gru4rec)")
    a, overrides = parse_with_overrides(p, argv)

    def action() -> str:
        run_id, m = run_basket(a.data, a.model, overrides)
        return (f"basket {a.model} run {run_id}: test buy AUC {m['test_buy_auc']:.4f}, F1 {m['test_buy_f1']:.4f}, "
                f"challenge score {m['test_challenge_score']:.4f}, "
                f"basket Recall@10 {m['test_basket_recall_at_10']:.4f}")

    return run_step("train_basket", action)


if __name__ == "__main__":
    sys.exit(main())
