"""Entry point ``evaluate``: score a logged or registered model on a processed dataset's test split."""

from __future__ import annotations

import argparse
import sys

from seqrec.workflow.cli import run_step
from seqrec.workflow.evaluate import run_evaluate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--model-uri", required=True,
                   help="any MLflow model URI (runs:/<id>/model, models:/seqrec@champion, models:/m-<id>, ...)")
    a = p.parse_args(argv)

    def action() -> str:
        run_id, m = run_evaluate(a.data, a.model_uri)
        return (f"run {run_id}: {a.model_uri} test Recall@20 {m['test_recall_at_20']:.4f}, "
                f"MRR@20 {m['test_mrr_at_20']:.4f}; the model knows {m['known_items_share']:.1%} of the items "
                f"and {m['known_test_clicks_share']:.1%} of the test clicks")

    return run_step("evaluate", action)


if __name__ == "__main__":
    sys.exit(main())
