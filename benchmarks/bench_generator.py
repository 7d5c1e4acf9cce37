"""Does the built-in data behave like real clicks? Its EDA next to the real sample's, and the models' order.

    python benchmarks/bench_generator.py [--clicks N] [--seed 0] [--models pop,sr,vstan,gru4rec,sasrec]
                                         [--presets sample,default] [--eda-only]

Prints the EDA figures (``seqrec.eda``) of the generated data of ``main``'s size and of the real
YooChoose sample side by side, then trains the baselines, GRU4Rec (``sample``) and SASRec (``default``)
on the generated data with ``main``'s settings (its presets, early stopping, epoch cap, and the
selection time that ``main``'s budget gives its first neural run) and prints best valid / test MRR@20
per model and the order of the model families. On real clicks the neural models lead, the session-kNN
methods follow, then the item-to-item rules, all far above popularity; generated data that orders them
otherwise rewards the wrong model.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from _common import CACHE, sample_processed

from seqrec import eda
from seqrec.data import synthetic
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_buys, read_clicks
from seqrec.data.synthetic import SyntheticConfig, generate
from seqrec.evaluation import evaluate
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.workflow.main import MainParams, neural_plan, selection_seconds

FAMILIES = {"pop": "popularity", "spop": "popularity", "ar": "rules", "sr": "rules", "itemknn": "rules",
            "sknn": "session-kNN", "vsknn": "session-kNN", "stan": "session-kNN", "vstan": "session-kNN",
            "gru4rec": "neural", "sasrec": "neural", "bert4rec": "neural"}
EXPECTED = ("neural", "session-kNN", "rules", "popularity")


def built_in(n_clicks: int, seed: int) -> tuple[Path, Path]:
    """The generated data of ``main`` (processed clicks, raw buys), cached per version of the generator."""
    version = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()[:8]
    raw = CACHE / f"generator-{n_clicks}-s{seed}-{version}"
    out = CACHE / "processed" / raw.name
    if not (out / "stats.json").exists():
        clicks, buys = generate(raw, SyntheticConfig(n_clicks=n_clicks, seed=seed))
        preprocess(read_clicks(clicks), out, PreprocessConfig(), f"synthetic-{n_clicks}-s{seed}",
                   {"path": str(clicks)}, buys=read_buys(buys))
    return out, raw / "buys.dat"


def eda_side_by_side(data: ProcessedDataset, buys: Path, sample: ProcessedDataset | None) -> None:
    generated, _ = eda.compute(data, eda.buy_sessions_of(data, buys))
    real = eda.compute(sample)[0] if sample is not None else {}
    print(f"{'figure':42s} {'built-in':>14s} {'real sample':>14s}")
    for key in dict.fromkeys([*generated, *real]):
        if key in ("first_day", "last_day"):
            continue
        cells = [f"{d[key]:>14,.4f}" if key in d else f"{'-':>14s}" for d in (generated, real)]
        print(f"{key:42s} {cells[0]} {cells[1]}")
    for name, d in (("built-in", data), ("real sample", sample)):
        if d is not None:
            sizes = ", ".join(f"{s} {d.split(s).n_sessions:,} sessions / {d.split(s).n_predictions:,} predictions"
                              for s in ("train_tr", "valid", "test"))
            print(f"{name}: {sizes}")


def train_baseline(data: ProcessedDataset, name: str) -> dict:
    valid = evaluate(make_baseline(name).fit(data.split("train_tr"), data.n_items), data.split("valid"),
                     data.n_items, popularity=data.popularity, progress=False)
    test = evaluate(make_baseline(name).fit(data.split("train_full"), data.n_items), data.split("test"),
                    data.n_items, popularity=data.popularity, progress=False)
    return {"best_val": valid.metrics["mrr_at_20"], "test": test.metrics["mrr_at_20"], "epochs": 0}


def _print_epoch(label: str):
    def on_epoch(phase: str, epoch: int, record: dict) -> None:
        shown = {k: round(v, 4) for k, v in record.items() if k in ("val_mrr_at_20", "epoch_seconds",
                                                                      "refit_epoch_seconds")}
        print(f"  {label} {phase} epoch {epoch}: {shown}", flush=True)

    return on_epoch


def train_neural(data: ProcessedDataset, name: str, preset: str, overrides: dict) -> dict:
    from seqrec.checkpoints import Checkpointer
    from seqrec.models.registry import build_model
    from seqrec.train_config import split_overrides
    from seqrec.trainer import Trainer

    model_cfg, train_cfg, runtime = split_overrides(name, preset, {**overrides, "progress": False})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(lambda popularity: build_model(name, data.n_items, model_cfg, popularity), data,
                          train_cfg, Checkpointer(Path(tmp)), _print_epoch(f"{name}-{preset}"), runtime)
        _, history, test = trainer.run()
    return {"best_val": history.best_value, "test": test.metrics["mrr_at_20"], "epochs": history.best_epoch,
            "ran": len(history.select)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = MainParams()
    p.add_argument("--clicks", type=int, default=defaults.synthetic_clicks)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--models", default=",".join([*BASELINES, "gru4rec", "sasrec"]))
    p.add_argument("--presets", default="sample,default", help="presets of the neural models (of main's)")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds of main's time budget that set the selection time (0: main's default, the "
                        "built-in data's epoch caps)")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="main's cap on the epochs (0: the presets')")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, as main)")
    p.add_argument("--eda-only", action="store_true")
    a = p.parse_args()
    started = time.perf_counter()
    path, buys = built_in(a.clicks, a.seed)
    data = ProcessedDataset.load(path)
    sample_path = sample_processed()
    eda_side_by_side(data, buys, ProcessedDataset.load(sample_path) if sample_path else None)
    print(f"data ready in {time.perf_counter() - started:.1f} s")
    if a.eda_only:
        return
    wanted = [m.strip() for m in a.models.split(",") if m.strip()]
    rows = {}
    for name in wanted:
        if name in BASELINES:
            t0 = time.perf_counter()
            rows[name] = {**train_baseline(data, name), "seconds": time.perf_counter() - t0}
            print(f"{name}: {rows[name]}", flush=True)
    # main's first neural run selects for this long when the steps before it took as long as here
    limit = selection_seconds(a.time_budget - (time.perf_counter() - started), len(neural_plan(defaults)))
    neural = ",".join(m for m in wanted if m not in BASELINES)
    presets = set(a.presets.split(","))
    for model, preset, overrides in neural_plan(MainParams(models=neural, epochs=a.epochs)) if neural else []:
        if preset not in presets:
            continue
        t0 = time.perf_counter()
        limited = {**overrides, "threads": a.threads, **({"max_seconds": limit} if a.time_budget else {})}
        rows[f"{model}-{preset}"] = {**train_neural(data, model, preset, limited),
                                     "seconds": time.perf_counter() - t0}
        print(f"{model}-{preset}: {rows[f'{model}-{preset}']}", flush=True)
    print("\n| model | family | best_val MRR@20 | test MRR@20 | epochs | seconds |\n|---|---|---|---|---|---|")
    for key, r in sorted(rows.items(), key=lambda kv: -kv[1]["best_val"]):
        fam = FAMILIES[key.split("-")[0]]
        print(f"| {key} | {fam} | {r['best_val']:.4f} | {r['test']:.4f} | {r['epochs']} | {r['seconds']:.0f} |")
    best = {}
    for key, r in rows.items():
        fam = FAMILIES[key.split("-")[0]]
        best[fam] = max(best.get(fam, 0.0), r["test"])
    order = sorted(best, key=lambda f: -best[f])
    print("family order by best test MRR@20: " + " > ".join(f"{f} {best[f]:.4f}" for f in order))
    expected = [f for f in EXPECTED if f in best]
    print(f"expected order {' > '.join(expected)}: {'yes' if order == expected else 'NO'}")


if __name__ == "__main__":
    main()
