"""The out-of-core engine (``engine=duckdb``, seqrec.data.outofcore) writes the memory engine's processed dataset byte
for byte (every file, stats.json and its content digest included), names bad input as the memory engine does, and
is chosen by ``engine=auto`` for a log bigger than memory."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqrec.data import outofcore
from seqrec.data.outofcore import Unsupported, choose_engine, preprocess_outofcore
from seqrec.data.preprocess import PreprocessConfig, _update, preprocess
from seqrec.data.readers import DataFormatError, ReadOptions, concat_clicks, parse_columns, read_buys, read_clicks
from seqrec.data.split_writer import write_numbers, write_offsets, write_text
from seqrec.data.writers import GENERIC_COLUMNS, convert
from seqrec.workflow.preprocess import PreprocessParams, run_preprocess

GENERIC = parse_columns(GENERIC_COLUMNS)


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _both(tmp_path: Path, paths: list[Path], fmt: str = "auto", options: ReadOptions | None = None,
          cfg: PreprocessConfig | None = None, buys=None) -> tuple[dict, dict]:
    """The stats of both engines on ``paths``, after checking that their datasets are the same bytes."""
    options, cfg = options or ReadOptions(), cfg or PreprocessConfig()
    source = {"path": ",".join(map(str, paths)), "digest": "d"}
    clicks = concat_clicks([read_clicks(p, options.on_bad_lines, fmt, options) for p in paths])
    memory = preprocess(clicks, tmp_path / "memory", cfg, "n", source, buys=buys)
    duck = preprocess_outofcore(paths, fmt, options, tmp_path / "duckdb", cfg, "n", source, buys=buys)
    a, b = _files(tmp_path / "memory"), _files(tmp_path / "duckdb")
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []
    assert memory == duck
    return memory, duck


@pytest.fixture(scope="module")
def formats(generated, tmp_path_factory) -> dict[str, Path]:
    """The generated clicks in several formats (compressed ones included)."""
    root = tmp_path_factory.mktemp("formats")
    names = {"yoochoose": "clicks.dat", "prepared": "p.tsv", "diginetica": "d.csv", "retailrocket": "r.csv.gz",
             "otto": "o.jsonl", "csv": "c.csv.bz2", "parquet": "p.parquet", "jsonl": "j.jsonl.zst"}
    return {fmt: convert(generated[0], fmt, root / name, string_ids=fmt in ("csv", "jsonl"))
            for fmt, name in names.items()}


@pytest.mark.parametrize("fmt", ["yoochoose", "prepared", "diginetica", "retailrocket", "otto", "csv", "parquet",
                                 "jsonl"])
def test_both_engines_write_the_same_bytes_in_every_format(fmt, formats, tmp_path):
    generic = fmt in ("csv", "parquet", "jsonl")
    options = ReadOptions(columns=GENERIC if generic else {}, events=("click",) if generic else ())
    memory, _ = _both(tmp_path, [formats[fmt]], fmt, options)
    assert memory["splits"]["test"]["predictions"] > 0


def test_the_same_bytes_with_buys_fraction_and_other_settings(generated, tmp_path):
    cfg = PreprocessConfig(min_item_support=3, min_session_length=3, test_days=2, val_days=0.5, fraction=4)
    stats, _ = _both(tmp_path, [generated[0]], cfg=cfg, buys=read_buys(generated[1]))
    assert "buying_sessions" in stats["splits"]["test"]


def test_the_same_bytes_with_several_files_and_mixed_id_types(formats, generated, tmp_path):
    text_ids = convert(generated[0], "parquet", tmp_path / "text.parquet", string_ids=True)
    _both(tmp_path / "pq", [text_ids, formats["parquet"]], "parquet", ReadOptions(columns=GENERIC))
    in_seconds = convert(generated[0], "otto", tmp_path / "s.jsonl", time_unit="s")
    _both(tmp_path / "otto", [in_seconds, formats["otto"]], "otto", ReadOptions(events=("clicks", "carts")))


def _shuffled_log(path: Path, seed: int) -> None:
    """Raw YooChoose clicks out of order, with many equal times in a session and ties between categories."""
    rng = np.random.default_rng(seed)
    n = 3_000
    session, item = rng.integers(1, 800, n), rng.integers(1, 60, n)
    ms = (1_396_310_400 + rng.integers(0, 6, n) * 86_400 + rng.integers(0, 20, n) * 60) * 1000
    stamps = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    category = rng.choice(["0", "S", "1", "12345678"], n)
    path.write_text("".join(f"{s},{t}Z,{i},{c}\n" for s, t, i, c in zip(session, stamps, item, category, strict=True)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_bytes_on_unordered_clicks_with_ties(seed, tmp_path):
    path = tmp_path / "clicks.dat"
    _shuffled_log(path, seed)
    _both(tmp_path, [path], cfg=PreprocessConfig(min_item_support=2, fraction=1 + seed))


def test_the_same_bytes_with_text_session_ids_of_any_width(tmp_path):
    rng = np.random.default_rng(3)
    names = np.array(["a", "ü", "Zz", "béé", "10", "9", "x" * 9])
    session = rng.integers(0, 700, 3_000)
    rows = [f"{names[s % 7]}{s // 7},i{i},{1_396_310_400 + t}.25"
            for s, i, t in zip(session, rng.integers(0, 50, 3_000), rng.integers(0, 5 * 86_400, 3_000), strict=True)]
    path = tmp_path / "log.csv"
    path.write_text("sid,iid,ts\n" + "\n".join(rows) + "\n")
    _both(tmp_path, [path], "csv", ReadOptions(columns=parse_columns("session=sid,item=iid,time=ts")),
          PreprocessConfig(min_item_support=2))


def test_the_same_bytes_on_the_real_sample(sample_dir, tmp_path):
    stats, _ = _both(tmp_path, [sample_dir / "train_full.txt", sample_dir / "test.txt"],
                     cfg=PreprocessConfig(min_item_support=1))
    assert stats["n_items"] == 2933 and stats["splits"]["test"]["predictions"] == 10_152


RAW = "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.000Z,214536500,S\n"
OTTO = '{"session": 1, "events": [{"aid": 5, "ts": 1659304800025, "type": "clicks"}]}\n'
BAD = [
    ("a.dat", RAW + "2,2014-04-07T11:00:00.500Z,214536502\n", "yoochoose", {}),
    ("b.dat", RAW.replace("214536500", "12ab"), "auto", {}),
    ("c.dat", RAW + "3,2014-04-07T11:00:00.500Z,5,\n", "yoochoose", {}),
    ("d.dat", RAW, "yoochoose", {}),  # too little data: the split leaves nothing
    ("e.dat", None, "yoochoose", {}),  # no such file
    ("o.jsonl", OTTO + '{"session": 2, "events": [{"aid": 5, "ts": 1, "type": "view"}]}\n', "otto", {}),
    ("o2.jsonl", OTTO + "{not json\n", "otto", {}),
    ("o3.jsonl", OTTO + '{"session": 2, "events": [{"aid": "a", "ts": 1, "type": "clicks"}]}\n', "otto", {}),
    ("c.csv", "s,i,t\n1,2,1.5\n1,,2\n", "csv", {"columns": parse_columns("session=s,item=i,time=t")}),
    ("n.csv", "s,i,t\n1,2,1.5\n1,3,-2\n", "csv", {"columns": parse_columns("session=s,item=i,time=t")}),
    ("r.csv", "timestamp,visitorid,event,itemid,transactionid\n1,2,like,3,\n", "retailrocket", {}),
    ("j.jsonl", '{"s": 1, "i": 2, "t": 1}\n{"s": 1, "t": 2}\n', "jsonl",
     {"columns": parse_columns("session=s,item=i,time=t")}),
]


@pytest.mark.parametrize(("name", "text", "fmt", "options"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_named_as_the_memory_engine_names_it(name, text, fmt, options, tmp_path):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    read = ReadOptions(**options)
    with pytest.raises(DataFormatError) as memory:
        preprocess(read_clicks(path, "error", fmt, read), tmp_path / "m", PreprocessConfig(), "n", {"path": str(path)})
    with pytest.raises(DataFormatError) as duck:
        preprocess_outofcore([path], fmt, read, tmp_path / "d", PreprocessConfig(), "n", {"path": str(path)})
    assert str(duck.value) == str(memory.value)
    assert str(path) in str(duck.value) and "\n" not in str(duck.value)
    assert not (tmp_path / "d").exists()


def test_a_bad_parquet_record_is_named_by_its_number(tmp_path):
    pq.write_table(pa.table({"sid": [5, 5, 6], "iid": ["x", "y", None], "t": [10.0, 20.0, 30.0]}), tmp_path / "l.pq")
    options = ReadOptions(columns=parse_columns("session=sid,item=iid,time=t"))
    with pytest.raises(DataFormatError, match=r"l.pq: record 3: expected a value in every mapped column, got "
                                              r"\{'session': 6, 'item': None, 'time': 30.0\}"):
        preprocess_outofcore([tmp_path / "l.pq"], "parquet", options, tmp_path / "d", PreprocessConfig(), "n", {})


@pytest.mark.parametrize("sizes", [[7], [1, 2, 0, 4], [3, 3, 1]])
def test_streamed_arrays_are_np_save_and_the_digest_of_whole_arrays(sizes, tmp_path):
    rng = np.random.default_rng(len(sizes))
    total = sum(sizes)
    pieces = np.split(np.arange(total), np.cumsum(sizes)[:-1])
    items = rng.integers(1, 100, total).astype(np.int32)
    lengths = rng.integers(1, 5, total)
    names = np.array(["", "ab", "ü€", "x" * 9, "7"])[rng.integers(0, 5, total)].astype("<U9")
    for name, write, whole in (
            ("items", lambda p, h: write_numbers(p, items.dtype, total, lambda: (items[k] for k in pieces), h), items),
            ("offsets", lambda p, h: write_offsets(p, total, lambda: (lengths[k] for k in pieces), h),
             np.concatenate([[0], np.cumsum(lengths)])),
            ("ids", lambda p, h: write_text(p, 9, total, lambda: (names[k] for k in pieces), h), names)):
        expected, streamed = hashlib.sha256(), hashlib.sha256()
        _update(expected, whole)
        write(tmp_path / f"{name}.npy", streamed)
        saved = io.BytesIO()
        np.save(saved, whole)
        assert (tmp_path / f"{name}.npy").read_bytes() == saved.getvalue(), name
        assert streamed.hexdigest() == expected.hexdigest(), name


def test_auto_takes_duckdb_for_a_log_bigger_than_half_the_memory(generated, monkeypatch):
    files = [generated[0]]
    assert choose_engine("auto", files, "yoochoose", "error")[0] == "memory"
    assert choose_engine("duckdb", files, "yoochoose", "error") == ("duckdb", "asked for")
    monkeypatch.setattr(outofcore, "available_memory", lambda: files[0].stat().st_size * 3)
    engine, why = choose_engine("auto", files, "yoochoose", "error")
    assert engine == "duckdb" and "more than half" in why
    assert choose_engine("auto", files, "yoochoose", "skip")[0] == "memory"


def test_the_step_runs_duckdb_logs_the_engine_and_leaves_no_spill_files(generated, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read again
    monkeypatch.setenv(outofcore.MEMORY_LIMIT_ENV, "500MB")
    runs = {}
    for engine in ("memory", "duckdb"):
        params = PreprocessParams(clicks=str(generated[0]), buys=str(generated[1]), out=str(tmp_path / engine),
                                  config=PreprocessConfig(engine=engine))
        _, stats = run_preprocess(params)
        runs[engine] = (mlflow.last_active_run(), stats)
    assert _files(tmp_path / "memory") == _files(tmp_path / "duckdb")
    run, stats = runs["duckdb"]
    assert run.data.params["engine"] == "duckdb" and run.data.tags["seqrec.preprocess.engine"] == "duckdb"
    assert run.data.tags["seqrec.data_digest"] == runs["memory"][1]["digest"]
    assert run.data.metrics["test_predictions"] == stats["splits"]["test"]["predictions"]
    assert "preprocess: engine duckdb (asked for)" in capsys.readouterr().out
    assert list((tmp_path / "tmp").iterdir()) == []


def test_what_duckdb_does_not_read_goes_to_the_memory_engine_and_says_so(generated, tmp_path, capsys):
    bad = tmp_path / "clicks.dat"
    bad.write_text(generated[0].read_text() + "oops,line\n")
    params = PreprocessParams(clicks=str(bad), out=str(tmp_path / "p"), on_bad_lines="skip",
                              config=PreprocessConfig(engine="duckdb"))
    _, stats = run_preprocess(params)
    assert stats["raw"]["skipped_lines"] == 1
    assert "the duckdb engine does not read on_bad_lines=skip" in capsys.readouterr().out
    assert mlflow.last_active_run().data.tags["seqrec.preprocess.engine"] == "memory"
    with pytest.raises(Unsupported):
        preprocess_outofcore([bad], "auto", ReadOptions(on_bad_lines="skip"), tmp_path / "q", PreprocessConfig(),
                             "n", {})


def test_the_engine_is_not_part_of_the_dataset(generated, tmp_path):
    stats = preprocess(read_clicks(generated[0]), tmp_path / "a", PreprocessConfig(engine="duckdb"), "n", {})
    assert "engine" not in stats["params"]
    assert json.loads((tmp_path / "a" / "stats.json").read_text())["digest"] == stats["digest"]
    with pytest.raises(ValueError, match="engine='spark' is not one of"):
        PreprocessConfig(engine="spark")


def test_without_the_duckdb_package_auto_keeps_the_memory_engine():
    """The step imports without DuckDB (it is imported when the engine runs); auto then keeps the memory engine."""
    code = ("import sys; sys.modules['duckdb'] = None\n"
            "import seqrec.workflow.preprocess\n"
            "from seqrec.data.outofcore import choose_engine\n"
            "print(choose_engine('auto', [], 'yoochoose', 'error'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "('memory', 'the duckdb package is not installed')"
