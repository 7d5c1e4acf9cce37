"""The ``register`` step: the best LoggedModel of one dataset becomes ``seqrec@champion``, or its ``challenger``.

Candidates are the LoggedModels of finished training runs trained on the dataset given (by its
``seqrec.data_digest``; default: the dataset of the newest training run) that carry the selection
metric, ``best_val_mrr_at_20`` unless told otherwise: a validation metric at the selected epoch, never
a test metric. The alias moves when a better model of that dataset exists; re-running without one
changes nothing.

A champion trained on another dataset is compared with the candidate only when the two datasets share most of
their items (at least ``min_overlap`` of the champion's items are in the candidate's dataset): both rank the same,
most recent test split (the candidate's, unless the champion's dataset is still on disk and ends later), a model
of another item mapping through its raw item ids as the service would (unknown clicks ignored, an unknown target a
miss), and the paired bootstrap of :mod:`seqrec.significance` decides. The candidate becomes ``champion`` when
better by the selection metric's test counterpart (MRR@20) with p < ``alpha``, otherwise ``challenger``; the figures
and the decision go on the version and on the ``register`` run. A new champion ends the challenge (the
``challenger`` alias goes). Datasets with little overlap are refused with a clear error unless ``force`` is set
(which swaps without comparing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import LoggedModel
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from seqrec import tracking
from seqrec.configs import Range, at_least, check_range, in_range
from seqrec.data.dataset import ProcessedDataset
from seqrec.evaluation import SELECTION_METRIC, evaluate
from seqrec.significance import RESAMPLES, PairedResult, compare_ranks
from seqrec.workflow.predict import quiet_downloads

ALIAS = "champion"
CHALLENGER = "challenger"
MIN_OVERLAP = 0.5  # of the champion's items that must be in the candidate's dataset for a comparison
ALPHA = 0.05  # the candidate must be better with a p-value below this to replace a champion of another dataset
DEFAULT_METRIC = f"best_{SELECTION_METRIC}"
SHOWN_METRICS = ("best_val_mrr_at_20", "best_val_recall_at_20", "test_mrr_at_20", "test_recall_at_20")


class RegisterError(ValueError):
    """Registration cannot decide safely (no candidates, or a champion of another dataset)."""


def selection_metric(metric: str) -> str:
    """``best_val_*`` name of a validation metric (``val_x`` means the selected epoch's ``best_val_x``)."""
    if metric.startswith("val_"):
        metric = f"best_{metric}"
    if not metric.startswith("best_val_"):
        raise ValueError(f"selection must use a validation metric (best_val_... or val_...), not {metric!r}")
    return metric


def _experiment_id(experiment: str) -> str:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise RegisterError(f"no experiment {experiment!r}: train a model first")
    return exp.experiment_id


def dataset_of(data: str, experiment: str = tracking.EXPERIMENT) -> tuple[str, str]:
    """``(name, digest)`` of the dataset whose models compete: a processed dataset directory, else a
    data digest or dataset name seen on a training run; empty: the newest training run's dataset."""
    if data and Path(data, "stats.json").exists():
        loaded = ProcessedDataset.load(data)
        return loaded.name, loaded.digest
    runs = mlflow.MlflowClient().search_runs(
        [_experiment_id(experiment)], "attributes.status = 'FINISHED' and tags.`seqrec.step` LIKE 'train_%'",
        max_results=5000, order_by=["attributes.start_time DESC"])
    for run in runs:
        tags = run.data.tags
        if not data or data in (tags.get(tracking.TAG_DIGEST), tags.get(tracking.TAG_DATASET)):
            return tags.get(tracking.TAG_DATASET, ""), tags.get(tracking.TAG_DIGEST, "")
    if not data:
        raise RegisterError(f"no finished training run in {experiment!r}: train a model first")
    raise RegisterError(f"{data!r} is neither a processed dataset directory nor the digest or name of a dataset "
                        f"that a finished training run in {experiment!r} was trained on")


def candidates(digest: str, metric: str, experiment: str = tracking.EXPERIMENT) -> list[LoggedModel]:
    """The LoggedModels of finished training runs on dataset ``digest`` that have ``metric``, best first."""
    models = mlflow.search_logged_models(
        experiment_ids=[_experiment_id(experiment)], output_format="list",
        filter_string=f"tags.`{tracking.TAG_DIGEST}` = '{digest}' AND metrics.{metric} > -1e300",
        order_by=[{"field_name": f"metrics.{metric}", "ascending": False},
                  {"field_name": "creation_timestamp", "ascending": True}])
    client = mlflow.MlflowClient()
    return [m for m in models if m.source_run_id and client.get_run(m.source_run_id).info.status == "FINISHED"]


def metric_of(model: LoggedModel, metric: str) -> float:
    """The model's ``metric`` as its training run logged it (evaluate runs may add others)."""
    values = [m.value for m in model.metrics or [] if m.key == metric]
    own = [m.value for m in model.metrics or [] if m.key == metric and m.run_id == model.source_run_id]
    return (own or values or [float("nan")])[-1]


def _champion(name: str) -> tuple[ModelVersion | None, LoggedModel | None]:
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None, None
    source = version.source or ""
    model_id = version.model_id or (source[len("models:/"):] if source.startswith("models:/m-") else None)
    return version, client.get_logged_model(model_id) if model_id else None


def describe(model: LoggedModel) -> str:
    """One paragraph on a model version: which model, preset and dataset, and its metrics."""
    tags = model.tags
    metrics = ", ".join(f"{k} {metric_of(model, k):.4f}" for k in SHOWN_METRICS)
    return (f"{tracking.model_label(tags)} (preset {tags.get(tracking.TAG_PRESET, '?')}) trained on "
            f"dataset {tags.get(tracking.TAG_DATASET, '?')} (digest {tags.get(tracking.TAG_DIGEST, '?')}) in run "
            f"{model.source_run_id}: {metrics}.")


def _is_version_of(version: ModelVersion, model: LoggedModel) -> bool:
    """Whether a registered ``version`` is ``model`` (by its source URI or its model id)."""
    return version.source == f"models:/{model.model_id}" or version.model_id == model.model_id


def _version_of(name: str, model: LoggedModel) -> ModelVersion:
    """The registered version of ``model`` under ``name``, registering it if it has none."""
    client = mlflow.MlflowClient()
    for version in client.search_model_versions(f"name='{name}'"):
        if _is_version_of(version, model):
            return version
    return mlflow.register_model(f"models:/{model.model_id}", name)


def check_settings(min_overlap: float, alpha: float, resamples: int) -> None:
    """Refuse a comparison setting out of its range, before any work."""
    check_range("settings", "min_overlap", min_overlap, in_range(0, 1))
    check_range("settings", "alpha", alpha, Range(low=0, high=1, low_open=True, high_open=True))
    check_range("settings", "resamples", resamples, at_least(1))


def run_register(data: str = "", metric: str = DEFAULT_METRIC, name: str = "seqrec",
                 experiment: str = tracking.EXPERIMENT, nested: bool = False, force: bool = False,
                 min_overlap: float = MIN_OVERLAP, alpha: float = ALPHA, resamples: int = RESAMPLES) -> dict:
    """Give ``name@champion`` to the best model of dataset ``data`` if it beats the current champion (on the same
    dataset by the selection metric; across datasets by the paired test on the newest test split); returns what was
    decided: ``decision`` (``champion``, ``challenger`` or ``kept``), ``changed`` (the champion alias moved) and the
    champion after the decision (``version``, ``run_id``, ``model_id``, ``model``, its selection metric), plus
    ``challenger`` and ``comparison`` after a comparison across datasets."""
    metric = selection_metric(metric)
    check_settings(min_overlap, alpha, resamples)
    dataset, digest = dataset_of(data, experiment)
    found = candidates(digest, metric, experiment)
    if not found:
        raise RegisterError(f"no finished training run on dataset {dataset!r} (digest {digest}) has {metric!r}")
    best, value = found[0], metric_of(found[0], metric)
    version, champion = _champion(name)
    print(f"register: {code_versions(best, champion, version)}", flush=True)
    if champion is not None:
        assert version is not None, "_champion finds a champion model through its version"
        champion_digest = champion.tags.get(tracking.TAG_DIGEST, "")
        if champion_digest != digest and not force:
            across = Across(name, version, champion, best, metric, dataset, digest, alpha, resamples)
            with quiet_downloads():
                return _across_datasets(across, data, min_overlap, nested, experiment)
        current = metric_of(champion, metric)
        if champion_digest == digest and (champion.model_id == best.model_id or current >= value):
            if not _promoted(version):  # a register killed after moving the alias: finish its work
                return _promote(champion, name, metric, current, dataset, digest, nested, experiment)
            return {**_identity(champion, version), "changed": False, "decision": "kept", "dataset": dataset,
                    metric: current}
    return _promote(best, name, metric, value, dataset, digest, nested, experiment)


def _identity(model: LoggedModel, version: ModelVersion) -> dict:
    """The keys of a decision that name a registered model version."""
    return {"version": version.version, "run_id": model.source_run_id, "model_id": model.model_id,
            "model": tracking.model_label(model.tags), "code_version": model.tags.get(tracking.TAG_CODE, "")}


@dataclass
class Across:
    """A candidate of one dataset against the champion of another: who, and how they are compared."""

    name: str
    version: ModelVersion  # the champion's model version
    champion: LoggedModel
    candidate: LoggedModel
    metric: str  # the selection metric (best_val_...)
    dataset: str
    digest: str
    alpha: float
    resamples: int

    @property
    def champion_dataset(self) -> str:
        return self.champion.tags.get(tracking.TAG_DATASET, "?")

    @property
    def champion_label(self) -> str:
        """``version 3 (sr of synthetic-100000-s0)``."""
        return f"version {self.version.version} ({tracking.model_label(self.champion.tags)} of " \
               f"{self.champion_dataset})"

    def refusal(self, why: str) -> RegisterError:
        """The error that refuses the comparison, saying why and how to swap anyway."""
        return RegisterError(
            f"{self.name}@{ALIAS} (version {self.version.version}) was trained on dataset {self.champion_dataset!r} "
            f"(digest {self.champion.tags.get(tracking.TAG_DIGEST, '')}), not on {self.dataset!r} (digest "
            f"{self.digest}), and {why}: models of different datasets are not compared. Register with force=true "
            f"to make the best model of {self.dataset!r} the champion anyway.")


@dataclass
class Comparison:
    """The candidate (a) against the champion (b) on the most recent test split: the paired bootstrap's results."""

    metric: str  # the deciding test metric (mrr_at_20 for the selection metric best_val_mrr_at_20)
    results: list[PairedResult]
    predictions: int
    overlap: float  # share of the champion's items in the candidate's dataset
    test_data: str  # the dataset whose test split both ranked
    alpha: float
    resamples: int

    @property
    def deciding(self) -> PairedResult:
        return next(r for r in self.results if r.metric == self.metric)

    @property
    def candidate_wins(self) -> bool:
        return self.deciding.difference > 0 and self.deciding.p_value < self.alpha

    def sentence(self, champion: str) -> str:
        """The comparison and its decision in words."""
        r = self.deciding
        verdict = (f"better with p < {self.alpha:g}: it becomes the champion" if self.candidate_wins else
                   f"not better with p < {self.alpha:g}: it is the challenger, the champion stays")
        return (f"Compared with {champion} on the {self.predictions:,} test predictions of {self.test_data} "
                f"({self.overlap:.0%} of the champion's items are in it; paired bootstrap, {self.resamples} "
                f"resamples): {_LABELS.get(r.metric, r.metric)} {r.mean_a:.4f} against {r.mean_b:.4f}, difference "
                f"{r.difference:+.4f}, p = {r.p_value:.4f}; {verdict}.")

    def tags(self, champion_version: str) -> dict[str, str]:
        """What goes on the candidate's version (``challenge.*``; ``challenge.decision`` last: it marks them done)."""
        r = self.deciding
        return {"challenge.metric": r.metric, "challenge.candidate": f"{r.mean_a:.6f}",
                "challenge.champion": f"{r.mean_b:.6f}", "challenge.difference": f"{r.difference:.6f}",
                "challenge.p_value": f"{r.p_value:.6f}", "challenge.alpha": f"{self.alpha:g}",
                "challenge.resamples": str(self.resamples), "challenge.predictions": str(self.predictions),
                "challenge.item_overlap": f"{self.overlap:.6f}", "challenge.test_data": self.test_data,
                "challenge.champion_version": str(champion_version),
                "challenge.decision": ALIAS if self.candidate_wins else CHALLENGER}

    def metrics(self) -> dict[str, float]:
        """What goes on the register run: each metric's means, difference and p-value, and the overlap."""
        out = {"challenge_item_overlap": self.overlap, "challenge_predictions": float(self.predictions)}
        for r in self.results:
            out.update({f"challenge_candidate_{r.metric}": r.mean_a, f"challenge_champion_{r.metric}": r.mean_b,
                        f"challenge_difference_{r.metric}": r.difference, f"challenge_p_{r.metric}": r.p_value})
        return out

    def to_dict(self) -> dict:
        return {"metric": self.metric, "predictions": self.predictions, "item_overlap": self.overlap,
                "test_data": self.test_data, "alpha": self.alpha, "resamples": self.resamples,
                "results": [r.to_dict() for r in self.results], "candidate_wins": self.candidate_wins}


_LABELS = {"mrr_at_20": "MRR@20", "recall_at_20": "Recall@20", "mrr_at_10": "MRR@10", "recall_at_10": "Recall@10"}


def test_counterpart(metric: str) -> tuple[str, int]:
    """The test metric a selection metric stands for, as the paired test names it: ``best_val_mrr_at_20`` ->
    ``("mrr_at_20", 20)``; a metric the paired test has no counterpart for (NDCG) is decided by MRR@K."""
    kind, _, k = metric[len("best_val_"):].rpartition("_at_")
    if not k.isdigit():
        return "mrr_at_20", 20
    return (f"{kind if kind in ('mrr', 'recall') else 'mrr'}_at_{k}", int(k))


def _run_id(model: LoggedModel) -> str:
    """The id of the training run that logged ``model`` (every candidate has one, so had the champion)."""
    if model.source_run_id is None:
        raise RegisterError(f"model {model.model_id} was not logged by a run")
    return model.source_run_id


def dataset_dir(data: str, candidate: LoggedModel, digest: str) -> Path | None:
    """The candidate's processed dataset directory: ``data`` when it is one, else the directory its training run
    read (its ``data`` parameter), when that still holds the dataset of ``digest``."""
    client = mlflow.MlflowClient()
    for path in (data, client.get_run(_run_id(candidate)).data.params.get("data", "")):
        if path and Path(path, "stats.json").exists() and ProcessedDataset.load(path).digest == digest:
            return Path(path)
    return None


def model_items(model: LoggedModel) -> np.ndarray:
    """The raw item ids a model knows (its training run's ``item_mapping.json``; its recommender otherwise)."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=model.source_run_id, artifact_path="item_mapping.json")
        return np.asarray(list(json.loads(Path(path).read_text()).values()), dtype=str)
    except (MlflowException, OSError):
        recommender = mlflow.pyfunc.load_model(f"models:/{model.model_id}").unwrap_python_model().recommender
        return np.asarray(recommender.raw_ids[1:], dtype=str)


def item_overlap(champion_items: np.ndarray, dataset_items: np.ndarray) -> float:
    """Share of the champion's items that are items of the candidate's dataset."""
    if len(champion_items) == 0:
        return 0.0
    return float(np.isin(champion_items, np.asarray(dataset_items, dtype=str)).mean())


def test_ranks_of(model: LoggedModel, data: ProcessedDataset) -> np.ndarray:
    """The model's conservative rank of every test prediction of ``data``, in the split's prediction order, by the
    project's evaluator; a model of another item mapping is scored through raw ids, as ``evaluate`` does."""
    from seqrec.workflow.evaluate import RemappedScorer, model_ids

    recommender = mlflow.pyfunc.load_model(f"models:/{model.model_id}").unwrap_python_model().recommender
    to_model = model_ids(recommender, data.raw_ids)
    same = len(to_model) == len(recommender.raw_ids) and bool((to_model == np.arange(len(to_model))).all())
    scorer = recommender.scorer if same else RemappedScorer(recommender, to_model)
    ranks = evaluate(scorer, data.split("test"), data.n_items, recommender.max_len, progress=False).ranks
    assert ranks is not None, "evaluate() always returns the ranks"
    return ranks


def ranks_on(model: LoggedModel, data: ProcessedDataset) -> np.ndarray:
    """The model's test ranks on ``data``: as its training run logged them (``[seeds, n]``) when ``data`` is its own
    dataset, else computed (:func:`test_ranks_of`)."""
    from seqrec.workflow.report import load_test_ranks

    if model.tags.get(tracking.TAG_DIGEST) == data.digest:
        logged = load_test_ranks(_run_id(model))
        if logged is not None and logged.shape[-1] == data.split("test").n_predictions:
            return logged
    return test_ranks_of(model, data)


def newest_test(candidate_data: ProcessedDataset, champion: LoggedModel) -> ProcessedDataset:
    """The dataset whose test split is the most recent: the candidate's, unless the champion's dataset (still on
    disk where its training run read it) ends later (then the candidate is the older model)."""
    folder = dataset_dir("", champion, champion.tags.get(tracking.TAG_DIGEST, ""))
    if folder is None:
        return candidate_data
    champion_data = ProcessedDataset.load(folder)
    newer = champion_data.split("test").times.max() > candidate_data.split("test").times.max()
    return champion_data if newer else candidate_data


def compare(across: Across, data: ProcessedDataset, overlap: float) -> Comparison:
    """Rank the most recent of the two test splits with both models and test the difference (paired bootstrap)."""
    metric, k = test_counterpart(across.metric)
    data = newest_test(data, across.champion)
    print(f"register: comparing {tracking.model_label(across.candidate.tags)} of {across.dataset!r} with "
          f"{across.name}@{ALIAS} version {across.version.version} on the test split of {data.name!r}", flush=True)
    results = compare_ranks(ranks_on(across.candidate, data), ranks_on(across.champion, data), k=k,
                            resamples=across.resamples)
    return Comparison(metric, results, data.split("test").n_predictions, overlap, data.name, across.alpha,
                      across.resamples)


def _across_datasets(across: Across, data: str, min_overlap: float, nested: bool, experiment: str) -> dict:
    """A champion of another dataset: refused when the datasets share few items, otherwise compared (or the
    decision a finished comparison left on the candidate's version, when it compared the same two models)."""
    folder = dataset_dir(data, across.candidate, across.digest)
    if folder is None:
        raise across.refusal(f"the processed dataset of {across.dataset!r} is not found (give data=<its directory>) "
                             f"to compare them on its test split")
    processed = ProcessedDataset.load(folder)
    overlap = item_overlap(model_items(across.champion), processed.raw_ids[1:])
    if overlap < min_overlap:
        raise across.refusal(f"only {overlap:.0%} of the champion's items are items of {across.dataset!r} (at least "
                             f"{min_overlap:.0%} needed for a comparison)")
    recorded = _recorded_challenge(across)
    if recorded is not None:
        return recorded
    comparison = compare(across, processed, overlap)
    value = metric_of(across.candidate, across.metric)
    if comparison.candidate_wins:
        return _promote(across.candidate, across.name, across.metric, value, across.dataset, across.digest, nested,
                        experiment, comparison, across)
    return _challenge(across, comparison, nested, experiment)


def _recorded_challenge(across: Across) -> dict | None:
    """The challenger decision already on the candidate's version for this champion version and these settings."""
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(across.name, CHALLENGER)
    except MlflowException:
        return None
    tags = version.tags or {}
    same = (_is_version_of(version, across.candidate)
            and tags.get("challenge.champion_version") == str(across.version.version)
            and tags.get("challenge.alpha") == f"{across.alpha:g}"
            and tags.get("challenge.resamples") == str(across.resamples)
            and tags.get("challenge.decision") == CHALLENGER)
    if not same:
        return None
    return {**_identity(across.champion, across.version), "changed": False, "decision": CHALLENGER,
            "dataset": across.dataset, across.metric: metric_of(across.champion, across.metric),
            "challenger": _identity(across.candidate, version),
            "comparison": {k[len("challenge."):]: v for k, v in tags.items() if k.startswith("challenge.")}}


def _challenge(across: Across, comparison: Comparison, nested: bool, experiment: str) -> dict:
    """Give the candidate the ``challenger`` alias, with the comparison on its version and on a ``register`` run."""
    client = mlflow.MlflowClient()
    tags = {tracking.TAG_DATASET: across.dataset, tracking.TAG_DIGEST: across.digest,
            "seqrec.register.decision": CHALLENGER}
    with tracking.start_run("register", tags=tags, nested=nested, run_name=f"register-{across.name}",
                            experiment=experiment):
        version = _version_of(across.name, across.candidate)
        client.set_registered_model_alias(across.name, CHALLENGER, version.version)
        client.update_model_version(across.name, version.version, description=(
            f"Challenger: {describe(across.candidate)} {comparison.sentence(across.champion_label)}"))
        for key, tag in comparison.tags(across.version.version).items():
            client.set_model_version_tag(across.name, version.version, key, tag)
        _log_decision(across.name, across.metric, across.dataset, comparison)
        mlflow.set_tags({"seqrec.challenger_run_id": across.candidate.source_run_id,
                         "seqrec.challenger_version": version.version,
                         "seqrec.champion_version": across.version.version})
    return {**_identity(across.champion, across.version), "changed": False, "decision": CHALLENGER,
            "dataset": across.dataset, across.metric: metric_of(across.champion, across.metric),
            "challenger": _identity(across.candidate, version), "comparison": comparison.to_dict()}


def _log_decision(name: str, metric: str, dataset: str, comparison: Comparison | None) -> None:
    """The register run's parameters, and the comparison's figures when there was one."""
    tracking.log_params({"metric": metric, "name": name, "data": dataset})
    if comparison is not None:
        tracking.log_params({"alpha": comparison.alpha, "resamples": comparison.resamples})
        tracking.log_metrics_at(comparison.metrics())
        tracking.log_json(comparison.to_dict(), "comparison.json")


def code_versions(candidate: LoggedModel, champion: LoggedModel | None, version: ModelVersion | None) -> str:
    """One line naming the code version that trained the candidate and the champion, and whether they differ
    (a comparison across code versions is allowed, but the user should know it is one)."""
    def code(model: LoggedModel) -> str:
        return model.tags.get(tracking.TAG_CODE) or "unknown (trained before code versions were recorded)"

    line = f"candidate {tracking.model_label(candidate.tags)} (run {candidate.source_run_id}) was trained " \
           f"by code {code(candidate)}"
    if champion is None or version is None:  # a champion always comes with its version (_champion)
        return f"{line}; there is no champion yet"
    line += f"; champion version {version.version} ({tracking.model_label(champion.tags)}, run " \
            f"{champion.source_run_id}) by code {code(champion)}"
    same = code(candidate) == code(champion) and tracking.TAG_CODE in champion.tags
    return line + ("" if same or champion.model_id == candidate.model_id else " (different code versions)")


# the tags ``_promote`` writes on the champion's version, last: all present = the promotion finished
VERSION_TAGS = ("selection_metric", "run_id", "model_id", tracking.TAG_MODEL, tracking.TAG_PRESET,
                tracking.TAG_DATASET, tracking.TAG_DIGEST)


def _promoted(version: ModelVersion) -> bool:
    """Whether ``_promote`` finished on ``version`` (a kill after the alias moved leaves tags missing)."""
    return set(VERSION_TAGS) <= set(version.tags or {})


def _promote(best: LoggedModel, name: str, metric: str, value: float, dataset: str, digest: str, nested: bool,
             experiment: str, comparison: Comparison | None = None, across: Across | None = None) -> dict:
    """Register ``best`` (or reuse its version), move the alias, describe both, in a ``register`` run; with the
    ``comparison`` that made it the champion (``across`` another dataset's champion) on the version and the run."""
    client = mlflow.MlflowClient()
    tags = {tracking.TAG_DATASET: dataset, tracking.TAG_DIGEST: digest}
    decided = {"seqrec.register.decision": ALIAS}
    with tracking.start_run("register", tags={**tags, **decided}, nested=nested, run_name=f"register-{name}",
                            experiment=experiment):
        version = _version_of(name, best)
        client.set_registered_model_alias(name, ALIAS, version.version)
        _drop_challenger_alias(name)
        why, challenge = "", {}
        if comparison is not None and across is not None:
            why, challenge = " " + comparison.sentence(across.champion_label), comparison.tags(across.version.version)
        client.update_registered_model(name, description=(
            f"Session-based next-click recommender (seqrec). Alias '{ALIAS}': the best model by {metric} among "
            f"the models trained on one dataset, or a model of newer data that beat it on the newest test split; "
            f"now version {version.version}: {describe(best)}{why}"))
        client.update_model_version(name, version.version, description=describe(best) + why)
        for key, tag in {**challenge, metric: f"{value:.6f}", "selection_metric": metric,
                         "run_id": best.source_run_id, tracking.TAG_CODE: best.tags.get(tracking.TAG_CODE, ""),
                         "model_id": best.model_id, tracking.TAG_MODEL: best.tags.get(tracking.TAG_MODEL, ""),
                         tracking.TAG_PRESET: best.tags.get(tracking.TAG_PRESET, ""),
                         **{k: v for k, v in best.tags.items() if k == tracking.TAG_FUSED}, **tags}.items():
            client.set_model_version_tag(name, version.version, key, tag)
        _log_decision(name, metric, dataset, comparison)
        mlflow.set_tags({"seqrec.registered_run_id": best.source_run_id, "seqrec.registered_version": version.version,
                         "seqrec.registered_model_id": best.model_id})
    out = {**_identity(best, version), "changed": True, "decision": ALIAS, "dataset": dataset, metric: value}
    if comparison is not None:
        out["comparison"] = comparison.to_dict()
    return out


def _drop_challenger_alias(name: str) -> None:
    """A new champion ends the challenge: the challenger challenged the previous champion (or is the new one)."""
    client = mlflow.MlflowClient()
    try:
        client.get_model_version_by_alias(name, CHALLENGER)
    except MlflowException:
        return
    client.delete_registered_model_alias(name, CHALLENGER)
