"""The ``main`` workflow: every step as a nested child run of one parent run."""

from __future__ import annotations

from dataclasses import dataclass

from seqrec import tracking
from seqrec.workflow.preprocess import PreprocessParams, run_preprocess


@dataclass
class MainParams:
    """Parameters of the main entry point."""

    clicks: str = ""
    buys: str = ""
    fraction: int = 1
    synthetic_clicks: int = 200_000
    seed: int = 0


def run_main(params: MainParams) -> dict:
    """Run the pipeline; returns what each step produced, keyed by step name."""
    results: dict = {}
    with tracking.start_run("main", run_name="main"):
        pre = PreprocessParams(clicks=params.clicks, buys=params.buys, synthetic_clicks=params.synthetic_clicks,
                               seed=params.seed)
        pre.config = type(pre.config)(fraction=params.fraction)
        data_dir, stats = run_preprocess(pre, nested=True)
        results["preprocess"] = {"data": data_dir, "stats": stats}
    return results
