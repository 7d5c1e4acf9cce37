"""The ``main`` workflow: every step as a nested child run of one parent run, finished steps reused.

preprocess -> eda -> the baselines -> GRU4Rec, SASRec, BERT4Rec -> register (the best model of this dataset by
``best_val_mrr_at_20``), then the comparison of every model as an MLflow table, markdown and chart, and the
champion's metrics on the parent run. The data is the built-in generated data, a click file of any format
``preprocess`` reads (every ``preprocess`` setting applies), or an already processed dataset (``data``: checked,
no preprocess step). A step whose run already finished for the same inputs, parameters and code version is reused
(a second ``main`` after a crash picks up where the first stopped) and linked from the new parent by a pointer run.

The neural models train with ``preset=auto`` (sized from the dataset's statistics) until early stopping (the
preset's patience and maximum epochs). The time budget (``time_budget``) is ``auto`` by default: on the built-in
data each neural model trains a named preset for a capped number of selection epochs (``BUILT_IN``, chosen so that
``make run`` ends within 10 minutes on two CPU cores) instead of a wall-clock limit, so its comparison is the same
on a fast machine and a slow one; on the user's data there is no limit. A budget in seconds limits the whole run:
each neural run may select for its share of the time the steps before it left (``selection_seconds``), the rest
of its share being for its refit and test.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import mlflow

from seqrec import tracking
from seqrec.configs import RangeError, at_least, check_range, check_ranges, one_of, ranged
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import digest_on_disk, file_digest
from seqrec.models import registry
from seqrec.models.baselines import BASELINES
from seqrec.models.fused import FUSIBLE
from seqrec.significance import RESAMPLES, compare_ranks
from seqrec.train_config import split_overrides
from seqrec.version import code_version
from seqrec.workflow.baseline import run_baseline
from seqrec.workflow.eda import run_eda
from seqrec.workflow.neural import run_neural
from seqrec.workflow.preprocess import PreprocessParams, resolve_inputs, run_preprocess
from seqrec.workflow.register import DEFAULT_METRIC, RegisterError, run_register
from seqrec.workflow.report import load_test_ranks

METRIC_COLUMNS = (DEFAULT_METRIC, "test_recall_at_10", "test_recall_at_20", "test_mrr_at_10", "test_mrr_at_20")
EXTRA_COLUMNS = ("train_seconds", "n_parameters")
TAG_REUSED = "seqrec.reused_run_id"
TAG_CHAMPION = "seqrec.champion_model"
# The sequence models of ``models=all``, (model, preset) in order: the registry's, each with the preset marked
# ``main`` in ``seqrec.models.presets.PRESET_FOR`` (``auto``: sized from the dataset).
NEURAL: tuple[tuple[str, str], ...] = registry.main_models()
AUTO = "auto"  # the default time budget: epoch caps on the built-in data, no limit on the user's data
# The auto budget on the built-in data: each neural model's preset and a cap on its selection epochs (early stopping
# may end it sooner), which hold ``make run`` within 10 minutes on two CPU cores; unlike a time limit, the same on
# every machine. ``preset=auto`` would pick the settings tuned on the real sample, which need more epochs than fit.
BUILT_IN: dict[str, tuple[str, int]] = {"gru4rec": ("sample", 6), "sasrec": ("default", 10),
                                        "bert4rec": ("default", 12)}
SELECT_SHARE = 0.45  # of a neural run's time: its selection; its refit (as many epochs, ~10% more data) and test
RESERVE_SECONDS = 30.0  # of the budget: register and comparison at the end


@dataclass
class MainParams:
    """Parameters of the main entry point.

    The data: the built-in generated data (``synthetic_clicks``, ``seed``), ``clicks`` read and preprocessed with
    ``preprocess`` (a ``PreprocessParams``: every setting of the ``preprocess`` entry point), or ``data``, a
    processed dataset directory. ``clicks``, ``buys``, ``fraction``, ``synthetic_clicks`` and ``seed`` are
    shortcuts that take precedence over the same settings in ``preprocess``.
    """

    clicks: str = ""
    buys: str = ""
    fraction: int = ranged(1, at_least(1))
    synthetic_clicks: int = ranged(100_000, at_least(1))
    seed: int = ranged(0, at_least(0))
    epochs: int = ranged(0, at_least(0))  # cap on the selection epochs of every neural model (0: the presets' own)
    models: str = "all"  # comma-separated names (pop, sr, ..., gru4rec, sasrec, bert4rec) or "all"
    # "auto" (epoch caps on the built-in data, none on the user's), or seconds for the whole run (0: none)
    time_budget: float | str = AUTO
    seeds: int = ranged(1, at_least(1))  # each training run repeats its protocol with this many seeds
    # trials of an Optuna study on valid per sequence model before its final run (the ``tune`` step; 0: none)
    tune: int = ranged(0, at_least(0))
    # a session-kNN model every sequence model is fused with (``seqrec.models.fused``; its share chosen on valid;
    # "": none)
    fuse: str = ranged("", one_of("", *FUSIBLE))
    neural_overrides: dict = field(default_factory=dict)
    data: str = ""  # a processed dataset directory: no preprocess step
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)

    def __post_init__(self) -> None:
        check_ranges("main", self)
        if self.time_budget != AUTO:
            if isinstance(self.time_budget, str):
                raise RangeError("main", f"time_budget={self.time_budget!r} must be auto or a number of seconds")
            check_range("main", "time_budget", self.time_budget, at_least(0))
        if self.data and self.clicks:
            raise ValueError("give either data (a processed dataset) or clicks (a click file to preprocess), "
                             "not both")
        if self.data:
            given = changed_preprocess_settings(self.preprocess_params())
            if given:
                raise ValueError(f"data is a processed dataset: the preprocess setting(s) {', '.join(given)} do not "
                                 f"apply to it; leave them out, or give its clicks instead of data")

    @property
    def built_in(self) -> bool:
        """Whether ``main`` runs on the built-in generated data (neither clicks nor data given)."""
        return not self.clicks and not self.data

    def preprocess_params(self) -> PreprocessParams:
        """``preprocess`` with the shortcut fields applied."""
        return replace(self.preprocess, clicks=self.clicks, buys=self.buys, synthetic_clicks=self.synthetic_clicks,
                       seed=self.seed, config=replace(self.preprocess.config, fraction=self.fraction))


def preprocess_values(pre: PreprocessParams) -> dict:
    """Every preprocess setting under its entry-point name (``min_item_support``, ``columns``, ...)."""
    read = pre.read
    return {"clicks": pre.clicks, "buys": pre.buys, "out": pre.out, "name": pre.name, **asdict(pre.config),
            "on_bad_lines": pre.on_bad_lines, "synthetic_clicks": pre.synthetic_clicks, "seed": pre.seed,
            "format": pre.format, "columns": ",".join(f"{k}={v}" for k, v in read.columns.items()),
            "time_unit": read.time_unit, "sep": read.sep, "events": ",".join(read.events),
            "session_gap": read.session_gap}


def changed_preprocess_settings(pre: PreprocessParams) -> list[str]:
    """``name=value`` of each preprocess setting of ``pre`` that is not the ``preprocess`` entry point's default."""
    defaults = preprocess_values(PreprocessParams())
    return [f"{k}={v}" for k, v in preprocess_values(pre).items() if v != defaults[k]]


def budget_seconds(params: MainParams) -> float:
    """The wall-clock budget of the whole run in seconds (0: none; ``auto`` never limits the wall time)."""
    return 0.0 if params.time_budget == AUTO else float(params.time_budget)


def budget_rule(params: MainParams) -> str:
    """Which time budget applies and why, in one line."""
    if params.time_budget != AUTO:
        seconds = budget_seconds(params)
        if not seconds:
            return "none (time_budget=0): the neural models train until early stopping"
        return (f"{seconds:g} s for the whole run (time_budget={seconds:g}): each neural model selects epochs "
                f"for at most its share of the time left")
    if not params.built_in:
        return ("none (time_budget=auto on your data): the neural models train until early stopping; "
                "give time_budget=SECONDS to limit the run")
    if params.epochs:
        return (f"none (time_budget=auto on the built-in data, epochs={params.epochs} caps every neural model's "
                f"selection)")
    caps = ", ".join(f"{model}-{preset} {n}" for model, (preset, n) in BUILT_IN.items())
    return (f"auto on the built-in data: at most {caps} selection epochs instead of a time limit (and these presets "
            f"rather than preset auto), so that make run ends within 10 minutes on two CPU cores and its results do "
            f"not depend on the machine's speed")


def step_key(name: str, payload: dict) -> str:
    blob = json.dumps({"step": name, "code": code_version(), **payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def finished_run(key: str):
    """The finished child run with this step key, if any."""
    exp = mlflow.get_experiment_by_name(tracking.EXPERIMENT)
    if exp is None:
        return None
    runs = mlflow.MlflowClient().search_runs(
        [exp.experiment_id], f"tags.`{tracking.TAG_STEP_KEY}` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def link_reused(run) -> None:
    """A nested pointer run under the active ``main`` run for a reused step: the reused run's id, its
    tags and final metrics, so the new parent shows every step side by side."""
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("seqrec.") and k != tracking.TAG_STEP_KEY}
    tags.update({tracking.TAG_STEP: f"reused:{run.data.tags.get(tracking.TAG_STEP, '')}",
                 TAG_REUSED: run.info.run_id})
    with mlflow.start_run(nested=True, run_name=f"{run.info.run_name} (reused)", tags=tags) as pointer:
        final = {k: v for k, v in run.data.metrics.items() if k.startswith(("best_val_", "test_", "train_seconds"))}
        if final:
            mlflow.log_metrics(final)
        client = mlflow.MlflowClient()  # the same datasets and model, so the pointer's columns are not empty
        if run.inputs and run.inputs.dataset_inputs:
            client.log_inputs(pointer.info.run_id, datasets=run.inputs.dataset_inputs)
        if run.outputs and run.outputs.model_outputs:
            client.log_outputs(pointer.info.run_id, models=run.outputs.model_outputs)


def reuse_or_run(name: str, payload: dict, execute: Callable[[], object],
                 still_valid: Callable[[object], str] | None = None) -> tuple[str, bool]:
    """Run ``execute`` (which starts one nested run) unless a finished run has the same key and its outputs
    still stand (``still_valid(run)`` returns why not, or ``""``); a reused run is linked from the active
    parent by a pointer run, a stale one is run again and main says why."""
    key = step_key(name, payload)
    found = finished_run(key)
    stale = still_valid(found) if found is not None and still_valid is not None else ""
    if found is not None and not stale:
        print(f"main: reusing {name} (run {found.info.run_id})")
        link_reused(found)
        return found.info.run_id, True
    if stale:
        print(f"main: running {name} again: {stale} (run {found.info.run_id})", flush=True)
    with tracking.step_key_scope(key) as scope:
        execute()
    return scope["run_id"], False


def dataset_still_there(run) -> str:
    """Why the dataset a finished preprocess run wrote can no longer be reused ("" when it can): its directory
    is gone, or its content (recomputed from its files) is not what the run wrote."""
    out, logged = run.data.params.get("out_dir", ""), run.data.tags.get(tracking.TAG_DIGEST, "")
    if not out or not Path(out, "stats.json").exists():
        return f"the dataset it wrote, {out or '?'}, is gone"
    found, unreadable = content_digest(out)
    if unreadable:
        return f"{out} cannot be read back ({unreadable})"
    if found != logged:
        return f"{out} no longer holds the dataset it wrote (content digest {found}, not {logged})"
    return ""


def content_digest(path: str) -> tuple[str, str]:
    """``(digest, "")`` of the processed dataset at ``path`` recomputed from its files, or ``("", why)`` when they
    cannot be read back."""
    try:
        return digest_on_disk(path), ""
    except (OSError, ValueError, KeyError) as exc:
        return "", str(exc)


def register_summary(decision: dict) -> str:
    """What ``register`` decided, in one line."""
    if "refused" in decision:
        return f"the champion was kept: {decision['refused']}"
    verb = "is now" if decision["changed"] else "stays"
    line = f"{decision.get('model', 'the model')} of run {decision['run_id']} {verb} the champion " \
           f"(version {decision['version']})"
    challenger = decision.get("challenger")
    if challenger:
        line += f"; {challenger.get('model', 'the candidate')} of run {challenger['run_id']} is the challenger " \
                f"(version {challenger['version']}): not better on the same test clicks"
    return line


def _wanted(models: str) -> set[str]:
    """The models ``models`` names: ``all`` is the baselines and ``NEURAL``; any sequence model of the registry
    may be named."""
    known = set(BASELINES) | set(registry.MODELS)
    every = set(BASELINES) | {m for m, _ in NEURAL}
    wanted = every if models == "all" else {m.strip() for m in models.split(",") if m.strip()}
    unknown = wanted - known
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}, expected some of {sorted(known)}")
    return wanted


def neural_plan(params: MainParams) -> list[tuple[str, str, dict]]:
    """The neural runs of ``main`` in order: (model, preset, overrides with the epoch cap: ``epochs``, else the
    built-in data's cap under the auto budget, which also names the preset); a bad override is refused here, before
    any step runs. The models of ``NEURAL`` come first, with their presets; any other sequence model named comes
    next, with its ``train`` preset (``registry.default_preset``)."""
    wanted = _wanted(params.models)
    built_in = BUILT_IN if params.built_in and params.time_budget == AUTO else {}
    others = [(m, registry.default_preset(m)) for m in registry.MODELS if m in wanted and m not in dict(NEURAL)]
    plan = []
    for model, preset in (*NEURAL, *others):
        if model not in wanted:
            continue
        overrides = dict(params.neural_overrides)
        if params.fuse:
            overrides["fuse"] = params.fuse
        if model in built_in:
            preset = built_in[model][0]
        if params.epochs:
            overrides["epochs"] = params.epochs
        elif model in built_in:
            overrides.setdefault("epochs", built_in[model][1])
        split_overrides(model, preset, overrides)
        plan.append((model, preset, overrides))
    return plan


def selection_seconds(seconds_left: float, runs_left: int) -> float:
    """The wall time one neural run may select epochs for: its equal share of what is left of the budget
    (after the reserve for the last steps), less its refit and test; at least one epoch always runs."""
    return max(1.0, (seconds_left - RESERVE_SECONDS) / max(1, runs_left) * SELECT_SHARE)


def train_neural_models(params: MainParams, plan: list[tuple[str, str, dict]], data_dir: str, digest: dict,
                        started: float) -> dict[str, str]:
    """Train (or reuse) the planned neural runs, each selecting for at most its share of the budget left
    when it starts (``started``: the ``time.monotonic()`` of main's start); their run ids by name."""
    runs = {}
    budget = budget_seconds(params)
    for i, (model, preset, overrides) in enumerate(plan):
        # the budget, not the limit it gives this run, is what a reused run must have been trained under
        payload = {**digest, "preset": preset, "overrides": overrides, "time_budget": budget, "seeds": params.seeds}
        share = selection_seconds(budget - (time.monotonic() - started), len(plan) - i) if budget else 0.0
        if params.tune:
            runs[f"{model}-{preset}"] = tuned_run(params, model, preset, overrides, data_dir, payload, share)
            continue
        limited = dict(overrides)
        if budget:  # each seed selects for its part of the run's share
            limited["max_seconds"] = share / params.seeds
            print(f"main: {model}-{preset} selects for at most {limited['max_seconds']:.0f} s", flush=True)
        runs[f"{model}-{preset}"] = reuse_or_run(
            f"train_{model}:{preset}", payload,
            partial(run_neural, model, data_dir, preset, limited, nested=True, seeds=params.seeds))[0]
    return runs


def tuned_run(params: MainParams, model: str, preset: str, overrides: dict, data_dir: str, payload: dict,
              share: float) -> str:
    """``main -P tune=N``: an N-trial study of ``model`` on valid (the ``tune`` step, its search space declared by
    the model; the plan's overrides stay fixed), then its best setting trained and tested as the model's run,
    whose id this returns. Under a time budget the study gets half of the run's ``share`` of seconds (no trial
    starts after it) and each seed of the final run a part of the other half."""
    from seqrec.workflow.tune import TAG_FINAL_RUN, TuneParams, run_tune  # tune imports Optuna: only when asked

    fixed = {k: v for k, v in overrides.items() if k != "epochs"}
    if share:
        fixed["max_seconds"] = share / 2 / params.seeds
        print(f"main: {model}-{preset} tunes for at most {share / 2:.0f} s", flush=True)
    tune = TuneParams(model=model, data=data_dir, preset=preset, epochs=int(overrides.get("epochs", 0)),
                      trials=params.tune, timeout=share / 2, seeds=params.seeds, params=fixed)
    tune_run, _ = reuse_or_run(f"tune_{model}:{preset}", {**payload, "tune": params.tune},
                               lambda: run_tune(tune, nested=True))
    return mlflow.MlflowClient().get_run(tune_run).data.tags[TAG_FINAL_RUN]


def checked_dataset(path: str) -> ProcessedDataset:
    """The processed dataset at ``path``, refused (``ValueError``) unless its content, recomputed from its files,
    is the dataset its ``stats.json`` names."""
    data = ProcessedDataset.load(path)
    found, unreadable = content_digest(path)
    if unreadable:
        raise ValueError(f"{path} cannot be read back as a processed dataset ({unreadable}); run preprocess again")
    if found != data.digest:
        raise ValueError(f"{path} does not hold the dataset its stats.json names (content digest {found}, not "
                         f"{data.digest or 'none'}): it was changed after preprocess wrote it; run preprocess again")
    return data


def prepare_data(params: MainParams) -> tuple[str, str | None]:
    """The processed dataset of the run and the preprocess step's run id: the given ``data`` (checked, no step),
    or the preprocess step run or reused; call it inside the ``main`` run."""
    if params.data:
        print(f"main: using the processed dataset {params.data}: no preprocess step", flush=True)
        return params.data, None
    pre = params.preprocess_params()
    clicks, buys, name = resolve_inputs(pre)
    pre.clicks, pre.buys, pre.name = str(clicks), str(buys or ""), name
    # every setting shapes the dataset: all of them, with the files' content instead of their paths (but the
    # engine: both write the same dataset, byte for byte)
    source = {**{k: v for k, v in preprocess_values(pre).items() if k != "engine"},
              "clicks": file_digest(*str(clicks).split(",")),
              "buys": file_digest(buys) if buys else ""}
    out = {}

    def preprocess() -> None:
        out["data"], _ = run_preprocess(pre, nested=True)

    run_id, reused = reuse_or_run("preprocess", source, preprocess, dataset_still_there)
    return (out["data"] if not reused else mlflow.get_run(run_id).data.params["out_dir"]), run_id


def run_main(params: MainParams) -> dict:
    """Run the pipeline; returns the child run ids and the comparison rows."""
    started = time.monotonic()
    wanted = _wanted(params.models)
    plan = neural_plan(params)
    if params.data:  # before any run: a dataset that is not what it says is refused
        checked_dataset(params.data)
    print(f"main: time budget: {budget_rule(params)}", flush=True)
    results: dict = {"runs": {}}
    with tracking.start_run("main", run_name="main"):
        own = {k: v for k, v in asdict(params).items() if k not in ("neural_overrides", "preprocess")}
        tracking.log_params({**preprocess_values(params.preprocess_params()), **own})
        data_dir, preprocess_run = prepare_data(params)
        if preprocess_run is not None:
            results["runs"]["preprocess"] = preprocess_run
        data = ProcessedDataset.load(data_dir)
        mlflow.set_tags(tracking.dataset_tags(data.stats))
        digest = {"data": data.digest}
        results["runs"]["eda"] = reuse_or_run("eda", digest, lambda: run_eda(data_dir, nested=True))[0]
        for model in BASELINES:
            if model in wanted:
                results["runs"][model] = reuse_or_run(
                    f"train_baseline:{model}", {**digest, "seeds": params.seeds},
                    partial(run_baseline, data_dir, model, nested=True, seeds=params.seeds))[0]
        results["runs"].update(train_neural_models(params, plan, data_dir, digest, started))
        try:
            decision = run_register(data_dir, nested=True)
        except RegisterError as exc:  # a champion of another dataset stays; the comparison still stands
            decision = {"changed": False, "refused": str(exc)}
        results["register"] = decision
        print(f"main: register: {register_summary(decision)}", flush=True)
        rows = comparison_rows(list(results["runs"].values()))
        results["comparison"] = rows
        log_comparison(rows, decision)
    return results


def log_comparison(rows: list[dict], decision: dict) -> None:
    """On the ``main`` run: the comparison as a table, markdown and chart, the champion's metrics, and the
    paired significance test of the best model (by validation) against the runner-up on test."""
    champion_run = decision.get("run_id")
    significance = best_against_runner_up(rows)
    table = comparison_markdown(rows, champion_run, significance)
    print(table)
    if rows:
        mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, "comparison.json")
    champion = next((r for r in rows if r["run_id"] == champion_run), None)
    if champion is not None:
        mlflow.set_tags({"seqrec.champion_run_id": champion_run, TAG_CHAMPION: champion["model"]})
        mlflow.log_metrics({k: champion[k] for k in METRIC_COLUMNS})
    if significance is not None:
        mlflow.log_metrics({f"significance_p_{r['metric']}": r["p_value"] for r in significance["results"]})
        tracking.log_json(significance, "significance.json")
    mlflow.log_text(table, "comparison.md")
    if rows:
        from seqrec.workflow.plots import log_figure

        log_figure(comparison_chart(rows), "comparison.png")


def comparison_rows(run_ids: list[str]) -> list[dict]:
    """One row per training run: model (``sasrec+vstan`` when fused), preset, seeds, the selection metric, test
    metrics (means over the seeds, with their standard deviations where a run had several), train time and parameter
    count; best selection metric first (the order ``register`` uses, never a test metric)."""
    rows = []
    for run_id in run_ids:
        run = mlflow.get_run(run_id)
        m, tags = run.data.metrics, run.data.tags
        if "test_recall_at_20" not in m or not tags.get(tracking.TAG_STEP, "").startswith("train_"):
            continue
        rows.append({"model": tracking.model_label(tags), "preset": tags.get(tracking.TAG_PRESET, ""),
                     "run_id": run_id, "seeds": int(float(run.data.params.get("seeds", 1))),
                     **{k: m.get(k, float("nan")) for k in (*METRIC_COLUMNS, *EXTRA_COLUMNS)},
                     **{f"{k}_std": m.get(f"{k}_std", float("nan")) for k in METRIC_COLUMNS}})
    return sorted(rows, key=lambda r: -r[DEFAULT_METRIC])


def comparison_markdown(rows: list[dict], champion_run: str | None = None,
                        significance: dict | None = None) -> str:
    """The comparison as a markdown table (``mean ± std`` where a run had several seeds), with the best
    model's paired test against the runner-up below it when there is one."""
    lines = ["| model | preset | seeds | valid MRR@20 | Recall@10 | Recall@20 | MRR@10 | MRR@20 | train s "
             "| parameters |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        star = " (champion)" if r["run_id"] == champion_run else ""
        cells = " | ".join(_with_std(r, k) for k in METRIC_COLUMNS)
        lines.append(f"| {r['model']}{star} | {r['preset']} | {r['seeds']} | {cells} | {r['train_seconds']:.1f} | "
                     f"{int(r['n_parameters']):,} |")
    if significance is not None:
        a, b = significance["best"], significance["runner_up"]
        tests = "; ".join(f"{_METRIC_LABELS.get(r['metric'], r['metric'])} {r['difference']:+.4f}, "
                          f"p = {r['p_value']:.4f}" for r in significance["results"])
        lines.append(f"\nBest by validation, {a}, against the runner-up, {b}, on the same "
                     f"{significance['predictions']:,} test predictions (paired bootstrap, "
                     f"{significance['resamples']} resamples): {tests}.")
    return "\n".join(lines) + "\n"


_METRIC_LABELS = {"mrr_at_20": "MRR@20", "recall_at_20": "Recall@20"}


def _with_std(row: dict, key: str) -> str:
    """``0.1234`` or, with several seeds, ``0.1234 ± 0.0012``."""
    std = row.get(f"{key}_std", float("nan"))
    return f"{row[key]:.4f}" + (f" ± {std:.4f}" if row.get("seeds", 1) > 1 and std == std else "")


def best_against_runner_up(rows: list[dict], resamples: int = RESAMPLES) -> dict | None:
    """The paired bootstrap of the first two rows (best and runner-up by validation) over their test ranks
    (``test_ranks.npy``, averaged over seeds); ``None`` when there are fewer than two rows, a run has no
    ranks (an older run) or the two ranked different test splits."""
    if len(rows) < 2:
        return None
    best, runner_up = rows[0], rows[1]
    best_ranks, runner_up_ranks = load_test_ranks(best["run_id"]), load_test_ranks(runner_up["run_id"])
    if best_ranks is None or runner_up_ranks is None or best_ranks.shape[-1] != runner_up_ranks.shape[-1]:
        print("main: no paired significance test (a run without test_ranks.npy, or different test splits)")
        return None
    results = compare_ranks(best_ranks, runner_up_ranks, k=20, resamples=resamples)
    return {"best": f"{best['model']} ({best['preset']})", "runner_up": f"{runner_up['model']} ({runner_up['preset']})",
            "best_run_id": best["run_id"], "runner_up_run_id": runner_up["run_id"],
            "predictions": int(best_ranks.shape[-1]), "resamples": resamples, "results": [r.to_dict() for r in results]}


def comparison_chart(rows: list[dict]):
    """Test Recall@20 and MRR@20 of every row, as a matplotlib figure (the caller logs and closes it)."""
    import numpy as np

    from seqrec.workflow.plots import plt

    labels = [f"{r['model']}\n{r['preset']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(7, len(rows) * 0.8), 4.5))
    ax.bar(x - 0.2, [r["test_recall_at_20"] for r in rows], 0.4, label="Recall@20")
    ax.bar(x + 0.2, [r["test_mrr_at_20"] for r in rows], 0.4, label="MRR@20")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="test metric value", ylim=(0, 1), title="Test accuracy of every model (full ranking)")
    ax.legend()
    fig.tight_layout()
    return fig
