import bz2
import gzip
import importlib.util
import json
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqrec import eda
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig
from seqrec.data.readers import DataFormatError, ReadOptions, parse_columns, read_clicks
from seqrec.data.writers import GENERIC_COLUMNS, WRITABLE, convert
from seqrec.evaluation import evaluate
from seqrec.models.baselines import make_baseline
from seqrec.workflow.baseline import run_baseline
from seqrec.workflow.preprocess import PreprocessParams, run_preprocess

_STEP = importlib.util.spec_from_file_location("preprocess_step", Path(__file__).parents[1] / "steps" / "preprocess.py")
_step = importlib.util.module_from_spec(_STEP)
_STEP.loader.exec_module(_step)
parse_args = _step.parse_args

DAY0 = 1462752000  # 2016-05-09T00:00:00Z


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def bad(path: Path, line: int, expected: str, fmt: str, **options) -> None:
    with pytest.raises(DataFormatError) as err:
        read_clicks(path, fmt=fmt, options=ReadOptions(**options))
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert expected in message and "\n" not in message


DIGINETICA = (
    "session_id;user_id;item_id;timeframe;eventdate\n"
    "1;NA;81766;526309;2016-05-09\n"
    "1;NA;31331;1031018;2016-05-09\n"
    "2;5;32118;243569;2016-05-10\n"
)


def test_diginetica(tmp_path):
    clicks = read_clicks(write(tmp_path, "train-item-views.csv", DIGINETICA), fmt="diginetica")
    assert clicks.raw_sessions.tolist() == [1, 1, 2]
    assert clicks.raw_items.tolist() == [81766, 31331, 32118]
    np.testing.assert_allclose(clicks.time, [DAY0 + 526.309, DAY0 + 1031.018, DAY0 + 86400 + 243.569])
    with pytest.raises(ValueError, match="diginetica has event types view"):
        read_clicks(tmp_path / "train-item-views.csv", fmt="diginetica", options=ReadOptions(events=("click",)))
    path = write(tmp_path, "bad.csv", DIGINETICA + "3;NA;x1;5;2016-05-10\n")
    bad(path, 5, "expected an integer item_id, got 'x1'", "diginetica")
    bad(write(tmp_path, "b2.csv", DIGINETICA + "3;NA;7;5;10.05.2016\n"), 5, "an eventdate like 2016-05-09",
        "diginetica")
    skipped = read_clicks(path, "skip", "diginetica")
    assert skipped.skipped_lines == 1 and len(skipped) == 3


RETAILROCKET = (
    "timestamp,visitorid,event,itemid,transactionid\n"
    "1433221332000,257597,view,355908,\n"
    "1433224214000,992329,view,248676,\n"
    "1433221337000,257597,addtocart,355908,\n"
    "1433221339000,257597,view,1,\n"
    "1433231339000,257597,view,2,\n"  # 10,000 s after the visitor's previous event: a new session
    "1433221340000,257597,transaction,355908,4000\n"
)


def test_retailrocket_sessions_events_and_gap(tmp_path):
    path = write(tmp_path, "events.csv", RETAILROCKET)
    clicks = read_clicks(path, fmt="retailrocket")
    assert clicks.raw_items.tolist() == [355908, 1, 2, 248676]  # views only, by visitor then time
    assert clicks.raw_sessions.tolist() == [1, 1, 2, 3]
    assert clicks.time[0] == 1433221332.0
    more = read_clicks(path, fmt="retailrocket", options=ReadOptions(events=("view", "addtocart")))
    assert more.raw_items.tolist() == [355908, 355908, 1, 2, 248676]
    one = read_clicks(path, fmt="retailrocket", options=ReadOptions(session_gap=20_000))
    assert one.raw_sessions.tolist() == [1, 1, 1, 2]
    with pytest.raises(ValueError, match="retailrocket has event types"):
        read_clicks(path, fmt="retailrocket", options=ReadOptions(events=("click",)))
    bad(write(tmp_path, "b.csv", RETAILROCKET + "1433221340000,257597,like,1,\n"), 8,
        "expected an event view, addtocart or transaction, got 'like'", "retailrocket")


def otto_line(session, events) -> str:
    return json.dumps({"session": session, "events": [{"aid": a, "ts": t, "type": k} for a, t, k in events]})


OTTO = "\n".join([
    otto_line(0, [(1517085, 1659304800025, "clicks"), (1563459, 1659304904511, "clicks"),
                  (1309446, 1659367439426, "carts")]),
    otto_line(1, [(424964, 1659304800025, "orders"), (7, 1659304800999, "clicks")]),
]) + "\n"


def test_otto_units_events_and_compression(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(OTTO)
    clicks = read_clicks(path, fmt="otto")
    assert clicks.raw_sessions.tolist() == [0, 0, 1]
    assert clicks.raw_items.tolist() == [1517085, 1563459, 7]
    np.testing.assert_allclose(clicks.time, [1659304800.025, 1659304904.511, 1659304800.999])
    assert clicks.info["time_unit"] == "ms" and clicks.info["time_unit_source"] == "detected"
    seconds = write(tmp_path, "s.jsonl", OTTO.replace("1659304800025", "1659304800").replace("1659304904511",
                    "1659304904").replace("1659367439426", "1659367439").replace("1659304800999", "1659304801"))
    in_s = read_clicks(seconds, fmt="otto")
    assert in_s.info["time_unit"] == "s" and in_s.time.tolist() == [1659304800, 1659304904, 1659304801]
    kept = read_clicks(path, fmt="otto", options=ReadOptions(events=("clicks", "carts", "orders")))
    assert kept.raw_items.tolist() == [1517085, 1563459, 1309446, 424964, 7]


def test_otto_bad_records(tmp_path):
    path = write(tmp_path, "bad.jsonl", OTTO + otto_line(2, [(5, 1659304800025, "view")]) + "\n{not json\n")
    bad(path, 3, "event 0: expected \"type\" clicks, carts or orders, got 'view'", "otto")
    bad(write(tmp_path, "b2.jsonl", OTTO + '{"session": "x", "events": []}\n'), 3, "integer \"session\"", "otto")
    bad(write(tmp_path, "b3.jsonl", OTTO + otto_line(3, [("a", 1, "clicks")]) + "\n"), 3,
        "event 0: expected an integer 'aid', got 'a'", "otto")
    skipped = read_clicks(path, "skip", "otto")
    assert skipped.skipped_lines == 2 and len(skipped) == 3


CSV = (
    "ts;user;sku;kind\n"
    "2024-01-02T10:00:00Z;u-1;007;view\n"
    "2024-01-02 10:00:05;u-1;A-42;click\n"
    "2024-01-02T12:00:00+02:00;u-2;007;cart\n"
)
CSV_COLUMNS = parse_columns("session=user,item=sku,time=ts,event=kind")


@pytest.mark.parametrize("compression", ["", ".gz", ".bz2", ".zst"])
def test_generic_csv_string_ids_iso_times_and_compression(tmp_path, compression):
    path = tmp_path / f"log.csv{compression}"
    with pa.output_stream(str(path), compression={"": None, ".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}[
            compression]) as f:
        f.write(CSV.encode())
    options = ReadOptions(columns=CSV_COLUMNS, time_unit="iso", events=("view", "click"))
    clicks = read_clicks(path, fmt="csv", options=options)
    assert clicks.raw_items.tolist() == ["007", "A-42"]  # text ids kept as they are
    assert clicks.raw_sessions.tolist() == ["u-1", "u-1"]
    t0 = 1704189600.0  # 2024-01-02T10:00:00Z
    assert clicks.time.tolist() == [t0, t0 + 5]
    everything = read_clicks(path, fmt="csv", options=ReadOptions(columns=CSV_COLUMNS, time_unit="iso"))
    assert everything.time[2] == t0  # +02:00 is converted to UTC


def test_generic_csv_errors(tmp_path):
    options = {"columns": CSV_COLUMNS, "time_unit": "iso"}
    bad(write(tmp_path, "a.csv", CSV + "yesterday;u-3;1;view\n"), 5, "expected an ISO-8601 time", "csv", **options)
    bad(write(tmp_path, "b.csv", CSV + "2024-01-02T10:00:00Z;;1;view\n"), 5, "expected a session id in column user",
        "csv", **options)
    bad(write(tmp_path, "c.csv", CSV), 1, "missing ['when']", "csv",
        columns=parse_columns("session=user,item=sku,time=when"))
    with pytest.raises(ValueError, match="needs columns"):
        read_clicks(tmp_path / "a.csv", fmt="csv")
    numeric = write(tmp_path, "n.csv", "s,i,t\n1,2,1.5\n1,3,x\n")
    bad(numeric, 3, "expected a number of ms since 1970 in column t, got 'x'", "csv",
        columns=parse_columns("session=s,item=i,time=t"), time_unit="ms")
    with bz2.open(tmp_path / "n.csv.bz2", "wt") as f:
        f.write("s,i,t\n1,2,1500\n1,3,x\n")
    skipped = read_clicks(tmp_path / "n.csv.bz2", "skip", "csv", ReadOptions(columns=parse_columns(
        "session=s,item=i,time=t"), time_unit="ms"))
    assert skipped.skipped_lines == 1 and skipped.time.tolist() == [1.5]


def test_generic_parquet_and_jsonl(tmp_path):
    table = pa.table({"sid": [5, 5, 6], "iid": ["x", "y", None], "t": [10.0, 20.0, 30.0]})
    pq.write_table(table, tmp_path / "log.parquet")
    columns = parse_columns("session=sid,item=iid,time=t")
    with pytest.raises(DataFormatError, match=r"log.parquet: record 3: expected a value in every mapped column"):
        read_clicks(tmp_path / "log.parquet", fmt="parquet", options=ReadOptions(columns=columns))
    clicks = read_clicks(tmp_path / "log.parquet", "skip", "parquet", ReadOptions(columns=columns))
    assert clicks.raw_items.tolist() == ["x", "y"] and clicks.raw_sessions.tolist() == [5, 5]
    assert clicks.skipped_lines == 1
    lines = ['{"sid": "a", "iid": 1, "t": 10}', '{"sid": "a", "iid": 2, "t": 20.5}']
    path = write(tmp_path, "log.jsonl", "\n".join(lines) + "\n")
    clicks = read_clicks(path, fmt="jsonl", options=ReadOptions(columns=columns))
    assert clicks.raw_items.tolist() == [1, 2] and clicks.time.tolist() == [10.0, 20.5]
    bad(write(tmp_path, "bad.jsonl", "\n".join(lines + ['{"sid": "a", "t": 3}']) + "\n"), 3,
        "expected a item id (integer or text) in 'iid', got None", "jsonl", columns=columns)


@pytest.fixture(scope="module")
def converted(generated, tmp_path_factory) -> dict[str, Path]:
    """The generated clicks written in every format."""
    root = tmp_path_factory.mktemp("formats")
    suffix = {"yoochoose": ".dat", "prepared": ".tsv", "diginetica": ".csv", "retailrocket": ".csv.gz",
              "otto": ".jsonl.zst", "csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl.bz2"}
    return {fmt: convert(generated[0], fmt, root / f"{fmt}{suffix[fmt]}", string_ids=fmt == "csv")
            for fmt in WRITABLE}


@pytest.mark.parametrize("fmt", WRITABLE)
def test_every_format_gives_a_dataset_that_baselines_and_eda_run_on(fmt, converted, tmp_path):
    extra = ["--columns", GENERIC_COLUMNS, "--events", "click"] if fmt in ("csv", "parquet", "jsonl") else []
    params = parse_args(["--clicks", str(converted[fmt]), "--format", fmt, "--out", str(tmp_path / "p"), *extra])
    out, stats = run_preprocess(params)
    assert stats["raw"]["reader"]["format"] == fmt and stats["source"]["format"] == fmt
    data = ProcessedDataset.load(out)
    if fmt == "csv":
        assert all(str(raw).startswith("i") for raw in data.raw_ids[1:])
    model = make_baseline("sr").fit(data.split("train_full"), data.n_items)
    metrics = evaluate(model, data.split("test"), data.n_items, 50, popularity=data.popularity)
    assert metrics.prefixed("test")["test_recall_at_20"] > 0.1  # the planted sequences are learnt
    if fmt == "csv":
        summary, plots, _ = eda.run(data, tmp_path / "eda")
        assert len(plots) == 7
    else:
        summary, _ = eda.compute(data, eda.buy_sessions_of(data, None))
    assert summary["clicks"] == stats["splits"]["train_full"]["clicks"] + stats["splits"]["test"]["clicks"]


def test_string_ids_survive_to_the_served_model(converted, tmp_path):
    params = PreprocessParams(clicks=str(converted["csv"]), out=str(tmp_path / "p"), format="csv",
                              read=ReadOptions(columns=parse_columns(GENERIC_COLUMNS), events=("click",)))
    out, _ = run_preprocess(params)
    mapping = json.loads((Path(out) / "item_mapping.json").read_text())
    assert all(raw.startswith("i") for raw in mapping.values())
    run_id, _ = run_baseline(out, "sr")
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    data = ProcessedDataset.load(out)
    session = [data.raw_ids[i] for i in data.split("test").items[:3]]
    answer = model.predict({"session": session, "k": 5})
    items = answer["items"][0] if isinstance(answer["items"][0], list) else answer["items"]
    assert len(items) == 5 and set(items) <= set(mapping.values())


def test_fractional_and_weekly_split_days(generated, tmp_path):
    params = parse_args(["--clicks", str(generated[0]), "--out", str(tmp_path / "p"), "--test-days", "0.5",
                         "--val-days", "7"])
    _, stats = run_preprocess(params)
    tmax = stats["raw"]["time_max"]
    assert stats["boundaries"]["test_start"] == pytest.approx(tmax - 43_200)
    data = ProcessedDataset.load(tmp_path / "p")
    ends = data.split("test").times[data.split("test").offsets[1:] - 1]
    assert ends.min() >= tmax - 43_200
    train_end = data.split("train_full").times.max()
    assert stats["boundaries"]["valid_start"] == pytest.approx(train_end - 7 * 86_400)
    assert PreprocessConfig(test_days=0.25).test_days == 0.25


def test_write_generated_is_atomic_and_readable(tmp_path):
    from seqrec.data.synthetic import SyntheticConfig
    from seqrec.data.writers import write_generated

    path = write_generated("otto", tmp_path / "otto.jsonl.gz", SyntheticConfig(n_clicks=3_000, seed=1),
                           time_unit="s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["otto.jsonl.gz"]  # no temporary leftovers
    clicks = read_clicks(path, fmt="otto", options=ReadOptions(events=("clicks", "carts")))
    assert len(clicks) == 3_000 and clicks.info["time_unit"] == "s"
    with pytest.raises(ValueError, match="format must be one of"):
        convert(path, "xml", tmp_path / "x.xml")
