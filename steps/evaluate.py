"""Entry point ``evaluate``: score a logged or registered model on a processed dataset's test split."""

from __future__ import annotations

import argparse
import sys

from mlflow.exceptions import MlflowException

from seqrec.workflow.evaluate import run_evaluate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--model-uri", required=True, help="runs:/<run_id>/model or models:/seqrec@champion")
    a = p.parse_args(argv)
    try:
        run_id, metrics = run_evaluate(a.data, a.model_uri)
    except (FileNotFoundError, ValueError, MlflowException) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(f"evaluate: run {run_id}: {a.model_uri} test Recall@20 {metrics['test_recall_at_20']:.4f}, "
          f"MRR@20 {metrics['test_mrr_at_20']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
