"""Entry point ``tune``: an Optuna study of a model's hyper-parameters (trials as nested runs), then the best
setting trained, refitted and tested with ``seeds`` seeds."""

from __future__ import annotations

import argparse
import sys

from seqrec.workflow.cli import int_arg, parse_overrides, run_step
from seqrec.workflow.report import seed_summary
from seqrec.workflow.tune import TuneParams, run_tune


def parse_args(argv: list[str] | None = None) -> TuneParams:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--model", required=True, help="sasrec | gru4rec | bert4rec | a baseline (vsknn, sr, ...)")
    p.add_argument("--data", required=True, help="processed dataset directory")
    p.add_argument("--preset", default="default", help="the neural model's preset the searched values override")
    p.add_argument("--epochs", type=int_arg, default=0, help="cap on the epochs of trials and final run (0: preset's)")
    p.add_argument("--trials", type=int_arg, default=20, help="trials to add to the study (0: until --timeout)")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds after which no trial starts (0: none)")
    p.add_argument("--study", default="", help="study to create or continue, stored in studies/NAME.db or --storage")
    p.add_argument("--jobs", type=int_arg, default=1, help="trials at once")
    p.add_argument("--seeds", type=int_arg, default=1, help="seeds of the final training run")
    p.add_argument("--space", default="", help="search-space overrides: name=kind:args,... (e.g. "
                                               "lr=loguniform:1e-4:1e-2,hidden=choice:64:128)")
    p.add_argument("--params", default="", help="fixed overrides key=value,... (they leave the search space)")
    p.add_argument("--write-preset", default="", help="save the best setting as this preset name")
    p.add_argument("--seed", type=int_arg, default=0, help="the sampler's seed")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--storage", default="", help="Optuna storage shared by workers on several machines: "
                                                 "postgresql://USER@HOST/DB, mysql://..., sqlite:///PATH, or "
                                                 "journal:///PATH (a file on a shared file system); empty: "
                                                 "studies/NAME.db")
    a = p.parse_args(argv)
    try:  # a malformed override or a setting out of its range is a usage error, before any work
        return TuneParams(a.model, a.data, a.preset, a.epochs, a.trials, a.timeout, a.study, a.jobs, a.seeds,
                          a.space, parse_overrides(a.params), a.write_preset, a.seed,
                          "" if a.device == "auto" else a.device, a.storage)
    except ValueError as exc:
        p.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    params = parse_args(argv)

    def action() -> str:
        out = run_tune(params)
        return (f"study {out['study']}: best valid {out['best_value']:.4f} with {out['best']}; "
                f"final run {out['final_run_id']}: test {seed_summary(out['test'])}")

    return run_step("tune", action)


if __name__ == "__main__":
    sys.exit(main())
