"""``preset=auto``: settings sized from the dataset's statistics, each with its reason, logged on the run."""

from __future__ import annotations

import json
from dataclasses import asdict

import mlflow
import pytest
from test_user_data import own_store

import steps.train
from seqrec.data.dataset import ProcessedDataset
from seqrec.models import registry
from seqrec.models.auto_preset import (
    BANDS,
    FULL_SOFTMAX_ITEMS,
    MIN_STEPS,
    SMALL_HIDDEN,
    YOOCHOOSE_SAMPLE,
    DataShape,
)
from seqrec.train_config import auto_choice, split_overrides

SEQUENCE_MODELS = ("gru4rec", "sasrec", "bert4rec")
LARGE = DataShape(items=50_000, clicks=8_000_000, sessions=2_000_000, p99_length=30)


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
def test_on_the_real_samples_shape_auto_is_the_preset_tuned_there(model):
    """The ``sample`` presets were chosen on the real YooChoose sample: auto changes nothing of them there, so
    their measured results (docs/results.md) are auto's."""
    auto = split_overrides(model, "auto", {}, YOOCHOOSE_SAMPLE)
    assert auto == split_overrides(model, "sample", {})
    assert auto_choice(model, YOOCHOOSE_SAMPLE).summary().endswith("nothing resized for this data")


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
def test_large_data_starts_from_the_yoochoose_size_preset(model):
    choice = auto_choice(model, LARGE)
    assert choice.base == "default" and LARGE.clicks > BANDS[0].max_clicks
    assert split_overrides(model, "auto", {}, LARGE) == split_overrides(model, "default", {})


def test_small_data_gets_a_narrower_model_smaller_batches_and_a_scaled_rate():
    shape = DataShape(items=900, clicks=6_000, sessions=1_500, p99_length=15)
    choice = auto_choice("sasrec", shape)
    model_cfg, train_cfg, _ = split_overrides("sasrec", "auto", {}, shape)
    sample_cfg, sample_train, _ = split_overrides("sasrec", "sample", {})
    assert model_cfg.hidden == SMALL_HIDDEN < sample_cfg.hidden
    assert (shape.clicks - shape.sessions) // train_cfg.batch_size >= MIN_STEPS
    assert train_cfg.batch_size < sample_train.batch_size and train_cfg.lr < sample_train.lr
    for field in ("hidden", "batch_size", "lr"):
        assert str(getattr(model_cfg if field == "hidden" else train_cfg, field)) in choice.summary()


def test_long_sessions_widen_the_window_and_a_small_catalogue_takes_fewer_negatives():
    shape = DataShape(items=700, clicks=300_000, sessions=20_000, p99_length=93)
    gru, _, _ = split_overrides("gru4rec", "auto", {}, shape)
    sasrec, _, _ = split_overrides("sasrec", "auto", {}, shape)
    assert sasrec.max_len == gru.max_len == 100
    assert gru.n_negatives == 350  # not the preset's 2,048, more than the 700 items
    assert "700 items" in auto_choice("gru4rec", shape).reasons["n_negatives"]


def test_a_catalogue_too_large_for_a_full_softmax_gets_a_sampled_one():
    shape = DataShape(items=FULL_SOFTMAX_ITEMS + 1, clicks=30_000_000, sessions=7_000_000, p99_length=40)
    model_cfg, _, _ = split_overrides("sasrec", "auto", {}, shape)
    assert model_cfg.loss == "sampled" and model_cfg.n_negatives < shape.items


def test_larger_data_shortens_the_epoch_cap_so_the_schedule_spans_as_many_steps():
    bigger = DataShape(items=3_000, clicks=400_000, sessions=100_000, p99_length=18)
    _, auto, _ = split_overrides("sasrec", "auto", {}, bigger)
    _, sample, _ = split_overrides("sasrec", "sample", {})
    assert 10 <= auto.epochs < sample.epochs
    assert "cosine schedule" in auto_choice("sasrec", bigger).reasons["epochs"]


def test_overrides_win_over_what_auto_chose():
    shape = DataShape(items=900, clicks=6_000, sessions=1_500, p99_length=15)
    model_cfg, train_cfg, _ = split_overrides("sasrec", "auto", {"hidden": 32, "batch_size": 8}, shape)
    assert model_cfg.hidden == 32 and train_cfg.batch_size == 8


def test_every_field_auto_sets_has_a_reason_and_the_record_is_json():
    shape = DataShape(items=900, clicks=6_000, sessions=1_500, p99_length=60)
    for model in registry.MODELS:
        choice = auto_choice(model, shape)
        assert set(choice.reasons) == set(choice.model_fields) | set(choice.train_fields)
        record = json.loads(json.dumps(choice.record()))
        assert record["shape"] == asdict(shape) and all(c["why"] for c in record["choices"].values())


def test_a_named_preset_is_needed_where_no_dataset_sizes_auto():
    with pytest.raises(ValueError, match="preset auto of sasrec is sized from a dataset"):
        registry.preset("sasrec", "auto")
    assert "auto" in registry.preset_names("gru4rec")


def test_auto_is_what_train_uses_by_default(processed):
    for model in SEQUENCE_MODELS:
        assert registry.default_preset(model) == "auto"
    shape = DataShape.of(ProcessedDataset.load(processed))
    assert shape.clicks == ProcessedDataset.load(processed).split("train_tr").n_clicks and shape.p99_length > 0


def test_train_with_auto_prints_and_logs_each_choice_and_its_reason(processed, tmp_path, monkeypatch, capsys):
    """Through the entry point: the run says what auto chose and why, tags the base preset and logs
    ``preset_auto.json`` with the dataset's shape."""
    monkeypatch.chdir(tmp_path)
    with own_store(tmp_path):
        argv = ["--model", "sasrec", "--data", str(processed), "--epochs", "1", "--params", "progress=false,layers=1"]
        assert steps.train.main(argv) == 0
        out = capsys.readouterr().out
        (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                    filter_string="tags.`seqrec.step` = 'train_sasrec'")
        assert run.data.tags["seqrec.preset"] == "auto" and run.data.tags["seqrec.auto_base"] == "sample"
        record = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/preset_auto.json")
        shape = DataShape.of(ProcessedDataset.load(processed))
        assert record["shape"] == asdict(shape) and record["choices"]["hidden"]["value"] == SMALL_HIDDEN
        assert run.data.params["model.hidden"] == str(SMALL_HIDDEN)
        assert "preset auto: sample" in out and f"hidden={SMALL_HIDDEN}" in out
