"""The ``train_basket`` step: which sessions buy and what they buy (RecSys Challenge 2015 task), in MLflow.

Same protocol as every training step: fitted on ``train_tr`` (item statistics and labels of train_tr),
selected on ``valid`` (epochs of the neural models; the item and buy thresholds of every model), refitted on
``train_full`` (statistics and labels of train_full) and scored on ``test`` once. Logged: tags
``seqrec.model`` etc., parameters, per-epoch curves (neural models), ``best_val_*`` and ``test_*`` (buy AUC
and F1, normalised challenge score, basket Recall/NDCG@10/20), and a LoggedModel that serves ``/basket``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import mlflow
import numpy as np
import torch

from seqrec import tracking
from seqrec.basket import features as feats
from seqrec.basket.metrics import BasketPredictions, Thresholds, choose_thresholds, evaluate_baskets
from seqrec.basket.models import BASELINES, GBDTBasket, GBDTConfig
from seqrec.basket.neural import BasketNet, BasketNetConfig
from seqrec.basket.train import BasketTrainConfig, NeuralBasket, make_optimizer, train_epoch
from seqrec.data.buys import BasketLabels
from seqrec.data.dataset import ProcessedDataset
from seqrec.models.registry import make_config, preset
from seqrec.serving.basket import BasketPredictor
from seqrec.workflow.report import log_inputs

NEURAL = ("sasrec", "gru4rec")
MODELS = (*BASELINES, "gbdt", *NEURAL)
SELECT_METRIC = "val_challenge_score"
FOLDS = 5  # out-of-fold item buy rates on the training split


@dataclass
class SplitData:
    """A split's features (with labels) and labels, and the item statistics its features used."""

    features: feats.Features
    labels: BasketLabels
    stats: feats.ItemStats


def load_pair(data: ProcessedDataset, train: str, evaluated: str) -> tuple[SplitData, SplitData]:
    """Features of a training split (out-of-fold item buy rates) and of the split it is evaluated on (rates
    from the whole training split)."""
    categories = np.zeros(data.n_items + 1, dtype=np.int64)
    table = data.item_table
    categories[table["item"].to_numpy()] = feats.category_kind(table["category"].to_numpy())
    out = []
    split = data.split(train)
    labels = BasketLabels.load(data.path / "splits" / train)
    stats = feats.item_stats(split.items, split.offsets, labels, data.n_items, categories)
    out.append(SplitData(feats.build(split.items, split.offsets, split.times, stats, labels, folds=FOLDS),
                         labels, stats))
    split = data.split(evaluated)
    labels = BasketLabels.load(data.path / "splits" / evaluated)
    out.append(SplitData(feats.build(split.items, split.offsets, split.times, stats, labels), labels, stats))
    return out[0], out[1]


def _split_params(model: str, params: dict) -> tuple[dict, dict, dict]:
    """Overrides as (model settings, loop settings, encoder settings); an unknown name is refused by name."""
    known_loop = {f.name for f in fields(BasketTrainConfig)}
    if model in BASELINES:
        own: set[str] = set()
    elif model == "gbdt":
        own = {f.name for f in fields(GBDTConfig)}
    else:
        own = {f.name for f in fields(BasketNetConfig)} - {"encoder"}
    head = {k: v for k, v in params.items() if k in own}
    loop = {k: v for k, v in params.items() if k in known_loop and model in NEURAL}
    rest = {k: v for k, v in params.items() if k not in head and k not in loop and k != "preset"}
    if model not in NEURAL and rest:
        raise ValueError(f"unknown parameter(s) {sorted(rest)} for basket model {model}; expected "
                         f"{sorted(own) or 'none'}")
    return head, loop, rest


def _check_head(model: str, head: dict) -> None:
    """Refuse the model's own settings outside their ranges (``seqrec.configs``) before any work; the config is
    built again where it is used."""
    if model == "gbdt":
        GBDTConfig(**head)
    elif model in NEURAL:
        BasketNetConfig(encoder=model, **head)


def _encoder_config(model: str, params: dict, rest: dict) -> dict:
    model_cfg, _ = preset(model, str(params.get("preset", "tiny")))
    return asdict(make_config(model, {**model_cfg, **rest}))


def _fresh_net(model: str, data: ProcessedDataset, head: dict, encoder_cfg: dict, train: feats.Features,
               seed: int) -> BasketNet:
    from seqrec.models.registry import build_model

    torch.manual_seed(seed)
    encoder = build_model(model, data.n_items, encoder_cfg)
    net = BasketNet(encoder, train.session.shape[1], train.pair.shape[1], BasketNetConfig(encoder=model, **head))
    net.set_scaling(torch.from_numpy(train.session), torch.from_numpy(train.pair))
    return net


def _calibration(pred: BasketPredictions, labels: BasketLabels) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic map from buy score to buy probability, fitted on valid (as its breakpoints)."""
    from sklearn.isotonic import IsotonicRegression

    bought = labels.buying(pred.n_sessions)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(pred.buy, bought.astype(float))
    return np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def _train_neural(model: str, data: ProcessedDataset, head: dict, encoder_cfg: dict, cfg: BasketTrainConfig,
                  tr: SplitData, va: SplitData, full: SplitData) -> tuple[NeuralBasket, Thresholds,
                                                                          BasketPredictions, list[dict], float]:
    """Epochs on train_tr scored on valid (selection by ``val_challenge_score``, early stopping), then a refit on
    train_full for the selected number of epochs; returns the refitted model, the thresholds and valid
    predictions of the selected epoch, the per-epoch records and the training seconds."""
    from seqrec.basket.train import predict

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    net = _fresh_net(model, data, head, encoder_cfg, tr.features, cfg.seed)
    optimizer = make_optimizer(net, cfg)
    history: list[dict] = []
    best: tuple[float, int, Thresholds, BasketPredictions] | None = None
    fallback = tr.stats.fallback_ranks()
    train_seconds = 0.0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        loss = train_epoch(net, optimizer, tr.features, cfg, rng)
        train_seconds += time.perf_counter() - started
        pred = predict(net, va.features)
        thresholds = choose_thresholds(pred, va.labels, data.n_items)
        record = {"train_loss": loss, "epoch_seconds": time.perf_counter() - started,
                  **_prefixed(evaluate_baskets(pred, va.labels, thresholds, fallback), "val")}
        history.append(record)
        tracking.log_metrics_at(record, step=epoch)
        print(f"basket {model} epoch {epoch}: train_loss {loss:.4f}, val_buy_auc {record['val_buy_auc']:.4f}, "
              f"val_challenge_score {record['val_challenge_score']:.4f}", flush=True)
        if best is None or record[SELECT_METRIC] > best[0]:
            best = (record[SELECT_METRIC], epoch, thresholds, pred)
        elif epoch - best[1] >= cfg.patience:
            break
    assert best is not None, "cfg.epochs >= 1: the first epoch sets best"
    _, best_epoch, thresholds, val_pred = best
    rng = np.random.default_rng(cfg.seed)
    net = _fresh_net(model, data, head, encoder_cfg, full.features, cfg.seed)
    optimizer = make_optimizer(net, cfg)
    for epoch in range(1, best_epoch + 1):
        started = time.perf_counter()
        loss = train_epoch(net, optimizer, full.features, cfg, rng)
        train_seconds += time.perf_counter() - started
        tracking.log_metrics_at({"refit_train_loss": loss}, step=epoch)
    history[best_epoch - 1]["best_epoch"] = best_epoch
    return NeuralBasket(net.eval(), encoder_cfg), thresholds, val_pred, history, train_seconds


def _plot_history(history: list[dict], title: str) -> None:
    from seqrec.workflow.plots import log_figure, plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history) + 1)
    axes[0].plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss (train_tr)")
    axes[0].set(xlabel="epoch", ylabel="binary cross-entropy", title=f"{title}: loss")
    for key in ("val_buy_auc", "val_challenge_score", "val_jaccard_of_buyers", "val_basket_recall_at_10"):
        axes[1].plot(epochs, [r[key] for r in history], marker="o", label=key)
    axes[1].set(xlabel="epoch", title=f"{title}: validation")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    log_figure(fig, "plots/basket_curves.png")


def fit_array_model(model: str, head: dict, train: feats.Features):
    """A fitted baseline or gradient-boosted model."""
    if model in BASELINES:
        return BASELINES[model]().fit(train)
    return GBDTBasket(GBDTConfig(**head)).fit(train)


def run_basket(data_dir: str, model: str, params: dict | None = None, nested: bool = False) -> tuple[str, dict]:
    """Train, select, refit and test one basket model in its own MLflow run; returns the run id and the test
    metrics (``test_*``)."""
    if model not in MODELS:
        raise ValueError(f"unknown basket model {model!r}, expected one of {list(MODELS)}")
    params = dict(params or {})
    head, loop, rest = _split_params(model, params)
    # every setting is built, and so checked for its range, before the data is read
    encoder_cfg = _encoder_config(model, params, rest) if model in NEURAL else {}
    cfg = BasketTrainConfig(**loop)
    _check_head(model, head)
    data = ProcessedDataset.load(data_dir)
    preset_name = str(params.get("preset", "tiny")) if model in NEURAL else "default"
    tags = {tracking.TAG_MODEL: f"basket-{model}", tracking.TAG_PRESET: preset_name, "seqrec.task": "basket",
            **tracking.dataset_tags(data.stats)}
    with tracking.start_run("train_basket", tags=tags, nested=nested, run_name=f"basket-{model}-{data.name}",
                            system_metrics=True) as run:
        logged = {"model": model, "data": str(data_dir), "preset": preset_name, **head,
                  **({f"train.{k}": v for k, v in asdict(cfg).items()} if model in NEURAL else {}),
                  **{f"encoder.{k}": v for k, v in encoder_cfg.items()}}
        tracking.log_params(logged)
        datasets = log_inputs(data)
        started = time.perf_counter()
        tr, va = load_pair(data, "train_tr", "valid")
        full, te = load_pair(data, "train_full", "test")
        feature_seconds = time.perf_counter() - started
        if model in NEURAL:
            fitted, thresholds, val_pred, history, train_seconds = _train_neural(
                model, data, head, encoder_cfg, cfg, tr, va, full)
            best_val = next(r for r in history if "best_epoch" in r)
            _plot_history(history, f"basket {model}")
            tracking.log_json(history, "history.json")
        else:
            started = time.perf_counter()
            val_pred = fit_array_model(model, head, tr.features).predict(va.features)
            thresholds = choose_thresholds(val_pred, va.labels, data.n_items)
            best_val = _prefixed(evaluate_baskets(val_pred, va.labels, thresholds, tr.stats.fallback_ranks()), "val")
            fitted = fit_array_model(model, head, full.features)
            train_seconds = time.perf_counter() - started
            tracking.log_metrics_at(best_val, step=0)
        test = _prefixed(evaluate_baskets(fitted.predict(te.features), te.labels, thresholds,
                                          full.stats.fallback_ranks()), "test")
        predictor = BasketPredictor(fitted, full.stats, data.raw_ids, int(encoder_cfg.get("max_len", 50)), thresholds,
                                    _calibration(val_pred, va.labels),
                                    float(full.labels.buying(full.features.n_sessions).mean()))
        model_id = _log_model(predictor, data, tags, logged)
        best = {f"best_{k}": v for k, v in best_val.items() if k.startswith("val_")}
        tracking.log_metrics_at(best, model_id=model_id, dataset=datasets.get("valid"))
        tracking.log_metrics_at(test, model_id=model_id, dataset=datasets.get("test"))
        extra = {"train_seconds": train_seconds, "feature_seconds": feature_seconds,
                 "n_parameters": float(getattr(fitted, "n_parameters", 0)), "buy_threshold": thresholds.buy,
                 "buy_threshold_f1": thresholds.buy_f1, "item_threshold": thresholds.item}
        tracking.log_metrics_at({k: v for k, v in extra.items() if np.isfinite(v)}, model_id=model_id)
        return run.info.run_id, test


def _log_model(predictor: BasketPredictor, data: ProcessedDataset, tags: dict[str, str], params: dict) -> str:
    test = data.split("test")
    example = [str(data.raw_ids[i]) for i in test.items[test.offsets[0] : test.offsets[1]]]
    info = tracking.log_model(predictor, example, params=params, tags=tags,
                              model_type=tags[tracking.TAG_MODEL])
    mlflow.log_artifact(str(data.path / "item_mapping.json"))
    return info.model_id
