"""Entry point ``register``: the best model of one dataset (by a validation metric) becomes the champion, or, against
a champion of an older dataset of the same items, the champion or the challenger by a paired test on the newest
test split."""

from __future__ import annotations

import argparse
import sys

from seqrec.significance import RESAMPLES
from seqrec.workflow.cli import bool_arg, int_arg, run_step
from seqrec.workflow.register import ALPHA, DEFAULT_METRIC, MIN_OVERLAP, check_settings, run_register


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--data", default="", help="processed dataset directory (or its digest or name) whose models "
                                              "compete; empty: the dataset of the newest training run")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="validation metric to maximise")
    p.add_argument("--name", default="seqrec", help="registered model name")
    p.add_argument("--force", type=bool_arg, default=False,
                   help="replace a champion trained on another dataset without comparing")
    p.add_argument("--min-overlap", type=float, default=MIN_OVERLAP,
                   help="share of the champion's items that must be in the candidate's dataset for a comparison")
    p.add_argument("--alpha", type=float, default=ALPHA,
                   help="the candidate replaces a champion of another dataset when better with p below this")
    p.add_argument("--resamples", type=int_arg, default=RESAMPLES, help="paired bootstrap resamples")
    a = p.parse_args(argv)
    check_settings(a.min_overlap, a.alpha, a.resamples)
    return a


def summary(d: dict, name: str) -> str:
    """What register decided, in one line."""
    metric = next(k for k in d if k.startswith("best_"))
    comparison = d.get("comparison")
    if d["decision"] == "challenger":
        c = d["challenger"]
        return (f"kept {name} version {d['version']} (run {d['run_id']}) as @champion; {c['model']} of dataset "
                f"{d['dataset']} (run {c['run_id']}) is version {c['version']} as @challenger: "
                f"{_compared(comparison)}")
    verb = "registered" if d["changed"] else "kept"
    line = (f"{verb} {name} version {d['version']} (run {d['run_id']}, dataset {d['dataset']}, {metric} "
            f"{d[metric]:.4f}) as @champion")
    return line + (f": {_compared(comparison)}" if comparison else "")


def _compared(comparison: dict) -> str:
    """The deciding figures of a comparison (fresh, or as recorded on the challenger's version)."""
    if "results" in comparison:
        r = next(x for x in comparison["results"] if x["metric"] == comparison["metric"])
        figures = (r["mean_a"], r["mean_b"], r["p_value"], comparison["predictions"], comparison["test_data"])
    else:
        figures = (float(comparison["candidate"]), float(comparison["champion"]), float(comparison["p_value"]),
                   int(comparison["predictions"]), comparison["test_data"])
    a, b, p, n, data = figures
    return f"test {comparison['metric']} candidate {a:.4f}, champion {b:.4f} ({n:,} predictions of {data}), p = {p:.4f}"


def main(argv: list[str] | None = None) -> int:
    try:
        a = parse_args(argv)
    except ValueError as exc:  # a setting out of range: one line, before any work
        print(f"register: error: {exc}", file=sys.stderr)
        return 2

    def action() -> str:
        d = run_register(a.data, a.metric, a.name, force=a.force, min_overlap=a.min_overlap, alpha=a.alpha,
                         resamples=a.resamples)
        return summary(d, a.name)

    return run_step("register", action)


if __name__ == "__main__":
    sys.exit(main())
