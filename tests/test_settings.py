"""Settings are checked for range and consistency before any run starts (``seqrec.configs``).

Each bad setting goes through its entry point (``steps.<name>.main``, or the neural steps' shared ``cli`` for
MeanEmb, which has no step of its own) on a real processed dataset: it must end with exit status 2, one line
on stderr naming the owner, the field, the value and the allowed range, and no MLflow run, no data read and no
output written. A few good settings, boundary values included, are accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

import mlflow
import optuna
import pytest

import steps.main
import steps.preprocess
import steps.train_baseline
import steps.train_basket
import steps.train_bert4rec
import steps.train_gru
import steps.train_sasrec
import steps.tune
from seqrec import tuning
from seqrec.configs import RangeError
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig
from seqrec.data.readers import ReadOptions
from seqrec.models import presets, registry
from seqrec.models.baselines import BASELINES, make_baseline
from seqrec.train_config import split_overrides
from seqrec.workflow.neural import cli
from seqrec.workflow.tune import TuneParams, run_tune

Main = Callable[[list[str]], int]
NEURAL: dict[str, Main] = {"sasrec": steps.train_sasrec.main, "bert4rec": steps.train_bert4rec.main,
                           "gru4rec": steps.train_gru.main, "meanemb": partial(cli, "meanemb")}


def _runs() -> int:
    """MLflow runs in every experiment of the test session's store."""
    return len(mlflow.search_runs(search_all_experiments=True))


def _outcome(main: Main, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int | str, str]:
    """The exit status of an entry point and what it said on stderr. A usage error (argparse: ``tune``'s own
    settings) exits with 2 as well."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


def _neural(model: str, params: str, *extra: str) -> tuple[Main, list[str]]:
    return NEURAL[model], ["--preset", "tiny", "--params", params, *extra]


def _baseline(model: str, params: str = "", *extra: str) -> tuple[Main, list[str]]:
    return steps.train_baseline.main, ["--model", model, "--params", params, *extra]


def _tune(*argv: str) -> tuple[Main, list[str]]:
    return steps.tune.main, ["--model", "meanemb", "--preset", "tiny", *argv]


def _basket(model: str, params: str) -> tuple[Main, list[str]]:
    return steps.train_basket.main, ["--model", model, "--params", params]


# (entry point, its arguments less --data, what stderr must say)
BAD = [
    # sequence models: the model's fields, TrainConfig, RuntimeConfig, and the step's own seeds
    (*_neural("sasrec", "hidden=0"), "sasrec: hidden=0 must be >= 1"),
    (*_neural("sasrec", "heads=3"), "sasrec: heads=3 must divide hidden=16"),
    (*_neural("sasrec", "max_len=0"), "sasrec: max_len=0 must be >= 1"),
    (*_neural("sasrec", "dropout=1.0"), "sasrec: dropout=1.0 must be in [0, 1)"),
    (*_neural("sasrec", "loss=bpr"), "sasrec: loss='bpr' is not one of ('full', 'sampled')"),
    (*_neural("sasrec", "n_negatives=0"), "sasrec: n_negatives=0 must be >= 1"),
    (*_neural("sasrec", "lr=0"), "TrainConfig: lr=0 must be > 0"),
    (*_neural("sasrec", "batch_size=0"), "TrainConfig: batch_size=0 must be >= 1"),
    (*_neural("sasrec", "", "--epochs", "-1"), "TrainConfig: epochs=-1 must be >= 1"),
    (*_neural("bert4rec", "layers=0"), "bert4rec: layers=0 must be >= 1"),
    (*_neural("bert4rec", "heads=0"), "bert4rec: heads=0 must be >= 1"),
    (*_neural("bert4rec", "mask_ratio=1.5"), "bert4rec: mask_ratio=1.5 must be in [0, 1]"),
    (*_neural("bert4rec", "label_smoothing=-0.1"), "bert4rec: label_smoothing=-0.1 must be in [0, 1)"),
    (*_neural("gru4rec", "hidden=0"), "gru4rec: hidden=0 must be >= 1"),
    (*_neural("gru4rec", "layers=0"), "gru4rec: layers=0 must be >= 1"),
    (*_neural("gru4rec", "n_negatives=-1"), "gru4rec: n_negatives=-1 must be >= 0"),
    (*_neural("gru4rec", "sample_alpha=2"), "gru4rec: sample_alpha=2 must be in [0, 1]"),
    (*_neural("gru4rec", "dropout=1"), "gru4rec: dropout=1 must be in [0, 1)"),
    (*_neural("gru4rec", "optimizer=sgd"), "TrainConfig: optimizer='sgd' is not one of ('adamw', 'adam', 'adagradm')"),
    (*_neural("gru4rec", "momentum=1.0"), "TrainConfig: momentum=1.0 must be in [0, 1)"),
    (*_neural("meanemb", "hidden=-1"), "meanemb: hidden=-1 must be >= 1"),
    (*_neural("meanemb", "weight_decay=-0.1"), "TrainConfig: weight_decay=-0.1 must be >= 0"),
    (*_neural("meanemb", "patience=0"), "TrainConfig: patience=0 must be >= 1"),
    (*_neural("meanemb", "warmup_epochs=-1"), "TrainConfig: warmup_epochs=-1 must be >= 0"),
    (*_neural("meanemb", "clip=-1"), "TrainConfig: clip=-1 must be >= 0"),
    (*_neural("meanemb", "ema=1"), "TrainConfig: ema=1 must be in [0, 1)"),
    (*_neural("meanemb", "schedule=linear"), "TrainConfig: schedule='linear' is not one of ('cosine', 'constant')"),
    (*_neural("meanemb", "seed=-1"), "TrainConfig: seed=-1 must be >= 0"),
    (*_neural("meanemb", "select_metric=test_mrr_at_20"), "TrainConfig: select_metric='test_mrr_at_20' must be a "
                                                          "validation metric"),
    (*_neural("meanemb", "eval_batch_size=0"), "RuntimeConfig: eval_batch_size=0 must be >= 1"),
    (*_neural("meanemb", "threads=-1"), "RuntimeConfig: threads=-1 must be >= 0"),
    (*_neural("meanemb", "max_seconds=-1"), "RuntimeConfig: max_seconds=-1 must be >= 0"),
    (*_neural("meanemb", "", "--seeds", "0"), "train_meanemb: seeds=0 must be >= 1"),
    # baselines
    (*_baseline("vsknn", "k=-5"), "vsknn: k=-5 must be >= 1"),
    (*_baseline("vsknn", "sample_size=0"), "vsknn: sample_size=0 must be >= 1"),
    (*_baseline("sknn", "similarity=dice"), "sknn: similarity='dice' is not one of ('jaccard', 'vec', 'cosine')"),
    (*_baseline("stan", "spw=0"), "stan: spw=0 must be > 0 with position_weight='exp'"),
    (*_baseline("itemknn", "n_sims=0"), "itemknn: n_sims=0 must be >= 1"),
    (*_baseline("itemknn", "alpha=1.5"), "itemknn: alpha=1.5 must be in [0, 1]"),
    (*_baseline("itemknn", "lmbd=-1"), "itemknn: lmbd=-1 must be >= 0"),
    (*_baseline("sr", "steps=0"), "sr: steps=0 must be >= 1"),
    (*_baseline("sr", "pruning=-1"), "sr: pruning=-1 must be >= 0"),
    (*_baseline("pop", "", "--max-len", "0"), "train_baseline: max_len=0 must be >= 1"),
    (*_baseline("spop", "", "--seeds", "0"), "train_baseline: seeds=0 must be >= 1"),
    # tune: its own settings (a usage error), then the model's through the search
    (*_tune("--trials", "-1"), "TuneParams: trials=-1 must be >= 0"),
    (*_tune("--trials", "0"), "TuneParams: trials=0 needs a timeout"),
    (*_tune("--timeout", "-5"), "TuneParams: timeout=-5.0 must be >= 0"),
    (*_tune("--jobs", "0"), "TuneParams: jobs=0 must be >= 1"),
    (*_tune("--seeds", "0"), "TuneParams: seeds=0 must be >= 1"),
    (*_tune("--epochs", "-2"), "TuneParams: epochs=-2 must be >= 0"),
    (steps.tune.main, ["--model", "sasrec", "--preset", "tiny", "--params", "heads=3"],
     "sasrec: heads=3 must divide hidden=16"),
    (steps.tune.main, ["--model", "vsknn", "--space", "k=int:-5:10"], "vsknn: k=-5 must be >= 1"),
    (*_tune("--space", "hidden=choice:0:16"), "meanemb: hidden=0 must be >= 1"),
    # basket models
    (*_basket("gbdt", "max_iter=0"), "gbdt: max_iter=0 must be >= 1"),
    (*_basket("gbdt", "learning_rate=0"), "gbdt: learning_rate=0 must be > 0"),
    (*_basket("gbdt", "max_leaf_nodes=1"), "gbdt: max_leaf_nodes=1 must be >= 2"),
    (*_basket("gbdt", "threads=-1"), "gbdt: threads=-1 must be >= 0"),
    (*_basket("sasrec", "epochs=0"), "BasketTrainConfig: epochs=0 must be >= 1"),
    (*_basket("sasrec", "patience=0"), "BasketTrainConfig: patience=0 must be >= 1"),
    (*_basket("sasrec", "dropout=1"), "basket sasrec: dropout=1 must be in [0, 1)"),
    (*_basket("gru4rec", "hidden=0"), "gru4rec: hidden=0 must be >= 1"),
]


def _case_id(case: tuple) -> str:
    main, argv, _ = case
    name = getattr(main, "__module__", "") or ""
    step = "train_meanemb" if isinstance(main, partial) else name.rsplit(".", 1)[-1]
    return f"{step}:{' '.join(a for a in argv if a not in ('--preset', 'tiny', '--params', ''))}"


@pytest.mark.parametrize(("main", "argv", "message"), BAD, ids=[_case_id(c) for c in BAD])
def test_a_bad_setting_is_refused_by_its_entry_point_before_any_run(main, argv, message, processed, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path / "checkpoints")
    monkeypatch.setattr("seqrec.tuning.STUDY_ROOT", tmp_path / "studies")
    before = _runs()
    status, said = _outcome(main, ["--data", str(processed), *argv], capsys)
    assert status == 2, said
    assert message in said
    assert _runs() == before  # refused before any MLflow run was created
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "studies").exists()


PREPROCESS = [
    (["--min-item-support", "0"], "PreprocessConfig: min_item_support=0 must be >= 1"),
    (["--min-session-length", "1"], "PreprocessConfig: min_session_length=1 must be >= 2"),
    (["--test-days", "0"], "PreprocessConfig: test_days=0.0 must be > 0"),
    (["--val-days", "-1"], "PreprocessConfig: val_days=-1.0 must be > 0"),
    (["--fraction", "0"], "PreprocessConfig: fraction=0 must be >= 1"),
    (["--max-len", "0"], "PreprocessConfig: max_len=0 must be >= 1"),
    (["--session-gap", "0"], "ReadOptions: session_gap=0.0 must be > 0"),
]


@pytest.mark.parametrize(("argv", "message"), PREPROCESS, ids=[" ".join(a) for a, _ in PREPROCESS])
def test_a_bad_preprocess_setting_is_refused_before_the_clicks_are_read(argv, message, generated, tmp_path, capsys):
    before = _runs()
    out = tmp_path / "out"
    status, said = _outcome(steps.preprocess.main, ["--clicks", str(generated[0]), "--out", str(out), *argv], capsys)
    assert status == 2, said
    assert f"preprocess: error: {message}" in said
    assert _runs() == before and not out.exists()


MAIN = [
    (["--seeds", "0"], "seeds=0 must be >= 1"),
    (["--fraction", "0"], "fraction=0 must be >= 1"),
    (["--epochs", "-1"], "epochs=-1 must be >= 0"),
    (["--time-budget", "-5"], "time_budget=-5.0 must be >= 0"),
    (["--synthetic-clicks", "0"], "synthetic_clicks=0 must be >= 1"),
]


@pytest.mark.parametrize(("argv", "message"), MAIN, ids=[" ".join(a) for a, _ in MAIN])
def test_a_bad_main_setting_is_refused_before_any_step(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _runs()
    status, said = _outcome(steps.main.main, ["--models", "pop", *argv], capsys)
    errors = [line for line in said.splitlines() if ": error: " in line]
    assert status == 2 and errors == [f"main: error: {message}"], said  # one line, the step named once
    assert _runs() == before and not (tmp_path / "data").exists()


@pytest.mark.parametrize("model", sorted(registry.MODELS))
def test_every_preset_is_in_range(model):
    for preset in presets.PRESETS[model]:
        split_overrides(model, preset, {})


def test_every_baseline_default_is_in_range():
    for name in BASELINES:
        make_baseline(name)


@pytest.mark.parametrize("build", [
    # 0 where 0 means "none" or "off", and the ends of closed ranges
    lambda: split_overrides("sasrec", "tiny", {"dropout": 0, "emb_dropout": 0, "heads": 16, "clip": 0,
                                               "warmup_epochs": 0, "ema": 0.999, "weight_decay": 0, "threads": 0}),
    lambda: split_overrides("gru4rec", "tiny", {"n_negatives": 0, "sample_alpha": 1, "constrained_embedding": False,
                                                "embedding": 0, "momentum": 0.9, "logq": 0, "elu": 0}),
    lambda: split_overrides("bert4rec", "tiny", {"mask_ratio": 1.0, "hidden": 24, "heads": 3}),
    lambda: split_overrides("meanemb", "tiny", {"max_len": 1, "epochs": 1, "patience": 1, "seed": 0}),
    lambda: make_baseline("stan", spw=0.5, snh_days=0, inh=0),
    lambda: make_baseline("sr", steps=1, pruning=0),
    lambda: PreprocessConfig(min_item_support=1, min_session_length=2, test_days=0.25, val_days=0.5, max_len=1),
    lambda: ReadOptions(time_unit="ms", session_gap=1.0),
    lambda: TuneParams("meanemb", "data", trials=0, timeout=1.0, epochs=0),
], ids=["sasrec", "gru4rec", "bert4rec", "meanemb", "stan", "sr", "preprocess", "read", "tune"])
def test_good_settings_at_the_ends_of_their_ranges_are_accepted(build):
    build()


def test_a_good_setting_runs_through_the_entry_point(processed, capsys):
    before = _runs()
    status, said = _outcome(steps.train_baseline.main, ["--data", str(processed), "--model", "pop"], capsys)
    assert status == 0, said
    assert _runs() == before + 1  # the run counting above sees runs


def test_range_errors_name_the_owner_field_value_and_range():
    with pytest.raises(RangeError, match=r"^sasrec: heads=3 must divide hidden=16$") as err:
        split_overrides("sasrec", "tiny", {"heads": 3})
    assert (err.value.owner, err.value.problem) == ("sasrec", "heads=3 must divide hidden=16")
    with pytest.raises(RangeError, match=r"^TrainConfig: epochs=-1 must be >= 1$"):
        split_overrides("meanemb", "tiny", {"epochs": -1})
    with pytest.raises(RangeError, match=r"dropout=nan must be in \[0, 1\)"):  # NaN is in no range
        split_overrides("sasrec", "tiny", {"dropout": float("nan")})
    with pytest.raises(RangeError, match=r"^sknn: k=0 must be >= 1$"):  # the config alone names its family
        make_baseline("sknn").config.__class__(k=0)


def test_a_trial_whose_values_clash_fails_alone(processed, tmp_path, monkeypatch):
    """Each value of a search space is in range with the preset's others, so the search starts; a trial whose
    values clash (18 units in 4 heads) fails by itself, and the study goes on instead of ending in a traceback."""
    monkeypatch.setattr(tuning, "STUDY_ROOT", tmp_path / "studies")
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path / "checkpoints")
    identity = {"model": "sasrec", "preset": "tiny", "data_digest": ProcessedDataset.load(processed).digest,
                "metric": "val_mrr_at_20"}
    tuning.open_study("clash", identity).enqueue_trial({"hidden": 18, "heads": 4})
    params = TuneParams("sasrec", str(processed), "tiny", trials=1, study="clash",
                        space="hidden=choice:16:18,heads=choice:1:4")
    with pytest.raises(ValueError, match="no finished trial"):  # the only trial failed: nothing to refit
        run_tune(params)
    trials = tuning.open_study("clash", identity).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL]


# Input: a negative unix time is a bad line like any other: an error naming the file, the line (or record) and
# what was expected, or with on_bad_lines=skip a skipped and counted line.
T = 1_400_000_000


def _otto(session: int, *stamps: int) -> str:
    events = [{"aid": aid, "ts": ts, "type": "clicks"} for aid, ts in enumerate(stamps, start=1)]
    return json.dumps({"session": session, "events": events}) + "\n"


NEGATIVE_TIMES = [
    ("prepared", "c.tsv", f"SessionId\tItemId\tTime\n1\t1\t{T}\n1\t2\t-5\n2\t1\t{T}\n2\t3\t{T}\n",
     "c.tsv:3: expected a unix Time in seconds (>= 0), got '-5'"),
    ("csv", "c.csv", f"s,i,t\n1,1,{T}\n1,2,-5.5\n2,3,{T}\n2,1,{T}\n",
     "c.csv:3: expected a number of s since 1970 in column t, got '-5.5'"),
    ("jsonl", "c.jsonl", "".join(f'{{"s": {s}, "i": {i}, "t": {t}}}\n' for s, i, t in
                                 [(1, 1, T), (1, 2, -1), (2, 1, T), (2, 3, T)]),
     "c.jsonl:2: expected a number of s since 1970 in 't', got -1"),
    ("otto", "c.jsonl", _otto(1, T, -3) + _otto(2, T, T),
     "c.jsonl:1: event 1: expected a unix time 'ts' >= 0, got -3"),
    ("retailrocket", "c.csv", "timestamp,visitorid,event,itemid,transactionid\n"
                              f"{T}000,1,view,5,\n-100,1,view,6,\n{T}000,2,view,5,\n",
     "c.csv:3: expected an integer timestamp >= 0 in milliseconds, got '-100'"),
]


@pytest.mark.parametrize(("fmt", "name", "text", "message"), NEGATIVE_TIMES, ids=[c[0] for c in NEGATIVE_TIMES])
def test_a_negative_unix_time_is_a_bad_line(fmt, name, text, message, tmp_path):
    from seqrec.data.readers import DataFormatError, parse_columns, read_clicks

    path = tmp_path / name
    path.write_text(text)
    options = ReadOptions(columns=parse_columns("session=s,item=i,time=t")) if fmt in ("csv", "jsonl") else None
    with pytest.raises(DataFormatError) as err:
        read_clicks(path, "error", fmt, options)
    assert str(err.value) == f"{path}:{message.split(':', 1)[1]}"
    skipped = read_clicks(path, "skip", fmt, options)
    assert skipped.skipped_lines == 1 and skipped.time.min() >= 0


def test_a_negative_unix_time_in_parquet_names_the_record(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqrec.data.readers import DataFormatError, parse_columns, read_clicks

    pq.write_table(pa.table({"s": [1, 1, 2], "i": [1, 2, 3], "t": [T, -7, T]}), tmp_path / "c.parquet")
    options = ReadOptions(columns=parse_columns("session=s,item=i,time=t"))
    with pytest.raises(DataFormatError, match=r"c.parquet: record 2: expected a time >= 0 \(s since 1970\) in "
                                              r"column 't', got .*'time': -7"):
        read_clicks(tmp_path / "c.parquet", "error", "parquet", options)
    skipped = read_clicks(tmp_path / "c.parquet", "skip", "parquet", options)
    assert skipped.skipped_lines == 1 and len(skipped) == 2


@pytest.mark.parametrize(("model", "old", "new"), [
    ("gru4rec", {"dropout_hidden": 0.3, "dropout_embed": 0.1, "n_sample": 64, "loss": "ce"},
     {"dropout": 0.3, "emb_dropout": 0.1, "n_negatives": 64, "loss": "sampled"}),
    ("sasrec", {"blocks": 1, "loss": "ce"}, {"layers": 1, "loss": "full"}),
    ("bert4rec", {"blocks": 3}, {"layers": 3}),
])
def test_old_setting_names_are_accepted_with_a_warning(model, old, new):
    """Overrides, tuned presets and saved model configs written with the names before the shared vocabulary
    (docs/models.md) still build the same config, each old name or value announced by a FutureWarning."""
    from seqrec.models.registry import make_config

    with pytest.warns(FutureWarning) as caught:
        from_old = make_config(model, old)
    assert from_old == make_config(model, new)
    assert len(caught) == len(old)
    assert all("later release" in str(w.message) for w in caught)


def test_an_old_name_beside_its_new_one_is_refused():
    from seqrec.models.registry import make_config

    with pytest.raises(ValueError, match="gru4rec: dropout_hidden and dropout are the same setting"):
        make_config("gru4rec", {"dropout_hidden": 0.1, "dropout": 0.2})
