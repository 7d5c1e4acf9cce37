"""A basket gbdt model is saved without pickle (skops with a fixed list of trusted types) and loads back to the
same predictions."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

from seqrec.basket.metrics import Thresholds, choose_thresholds
from seqrec.basket.models import GBDT_TRUSTED_TYPES, GBDTBasket, GBDTConfig
from seqrec.data.dataset import ProcessedDataset
from seqrec.serving.basket import GBDT_FILE, BasketPredictor, load_basket, save_basket
from seqrec.workflow.basket import load_pair


@pytest.fixture(scope="module")
def predictor(processed) -> BasketPredictor:
    data = ProcessedDataset.load(processed)
    full, test = load_pair(data, "train_full", "test")
    model = GBDTBasket(GBDTConfig(max_iter=20, threads=1)).fit(full.features)
    thresholds = choose_thresholds(model.predict(test.features), test.labels, data.n_items)
    xs = np.linspace(0.0, 1.0, 5)
    return BasketPredictor(model, full.stats, data.raw_ids, 50, thresholds, (xs, xs**2), 0.1)


@pytest.fixture(scope="module")
def sessions(processed) -> list[list]:
    data = ProcessedDataset.load(processed)
    test = data.split("test")
    real = [[str(data.raw_ids[i]) for i in test.items[test.offsets[j]:test.offsets[j + 1]]] for j in range(40)]
    return [*real, [], ["not-an-item"], [int(real[0][0])]]


def _no_pickle(*args, **kwargs):
    raise AssertionError("loading a basket model unpickled something")


def test_gbdt_basket_round_trips_without_pickle(predictor, sessions, tmp_path, monkeypatch):
    directory = save_basket(predictor, tmp_path / "basket")
    assert sorted(p.name for p in directory.iterdir()) == ["basket.json", GBDT_FILE, "item_stats.npz", "raw_ids.npy"]
    # the skops file is a zip of JSON and .npy arrays that numpy reads without pickle
    with zipfile.ZipFile(directory / GBDT_FILE) as archive:
        names = archive.namelist()
        assert "schema.json" in names and not [n for n in names if n.endswith((".pkl", ".pickle"))]
        for name in (n for n in names if n.endswith(".npy")):
            with archive.open(name) as f:
                np.load(f, allow_pickle=False)
    for name in ("item_stats.npz", "raw_ids.npy"):
        np.load(directory / name, allow_pickle=False)

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, _no_pickle)
    loaded = load_basket(directory)
    monkeypatch.undo()

    assert isinstance(loaded.scorer, GBDTBasket)
    assert loaded.scorer.n_parameters == predictor.scorer.n_parameters
    for k in (1, 5, 20):
        want, got = predictor.predict(sessions, k), loaded.predict(sessions, k)
        assert got == want  # identical dataclasses: buy probability, items, scores, basket
    assert any(a.basket for a in want) or any(a.buy_probability > 0 for a in want)


def test_gbdt_save_refuses_unfitted_model_and_load_refuses_untrusted_types(predictor, tmp_path):
    with pytest.raises(ValueError, match="fit the model"):
        GBDTBasket().save(tmp_path / "unfitted.skops")
    path = predictor.scorer.save(tmp_path / "model.skops")
    # a file needing a type outside the trusted list is refused before anything is built
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    skops.io.dump({"buy": predictor.scorer.buy_model, "item": Thresholds(0.5, 1.0, 0.5)}, tmp_path / "other.skops")
    with pytest.raises(UntrustedTypesFoundException):
        GBDTBasket.load(tmp_path / "other.skops")
    assert set(skops.io.get_untrusted_types(file=path)) <= set(GBDT_TRUSTED_TYPES)


def test_a_gbdt_model_pickled_by_an_earlier_version_is_refused(predictor, tmp_path):
    directory = save_basket(predictor, tmp_path / "old")
    (directory / GBDT_FILE).unlink()
    np.savez(directory / "state.npz", pickle=np.frombuffer(pickle.dumps({"buy": None}), dtype=np.uint8))
    with pytest.raises(ValueError, match="no longer read"):
        load_basket(directory)
