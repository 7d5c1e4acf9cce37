"""The ``predict`` entry point: a click log of open sessions -> a Parquet file of recommendations, logged as a run."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqrec.data.dataset import ProcessedDataset
from seqrec.workflow.baseline import run_baseline
from steps.predict import main

K = 7


@pytest.fixture(scope="module")
def model_uri(processed) -> str:
    run_id, _ = run_baseline(str(processed), "sr")
    return f"runs:/{run_id}/model"


@pytest.fixture(scope="module")
def pyfunc(model_uri):
    return mlflow.pyfunc.load_model(model_uri)


def predict(capsys, *args: str) -> tuple[int, str, str]:
    """Run the entry point; returns its exit status, the run id from its summary line and its stderr."""
    status = main([*args])
    captured = capsys.readouterr()
    found = re.search(r"run ([0-9a-f]{32})", captured.out)
    return status, found.group(1) if found else "", captured.err


@pytest.fixture(scope="module")
def predicted(model_uri, generated, tmp_path_factory) -> tuple[Path, str]:
    """The generated clicks scored with k=7: the output file and the run id."""
    out = tmp_path_factory.mktemp("predict") / "recs.parquet"
    status = main(["--model-uri", model_uri, "--sessions", str(generated[0]), "--out", str(out), "--k", str(K)])
    assert status == 0
    runs = mlflow.search_runs(experiment_names=["seqrec"], filter_string="tags.`seqrec.step` = 'predict'",
                              order_by=["start_time DESC"], max_results=1)
    return out, runs["run_id"][0]


def raw_sessions(clicks: Path) -> pd.Series:
    """Each session's raw item ids in time order (ties in file order), by session id, read independently."""
    frame = pd.read_csv(clicks, header=None, names=["session", "time", "item", "category"])
    frame = frame.sort_values(["session", "time"], kind="stable")
    return frame.groupby("session", sort=True)["item"].agg(list)


def pyfunc_answers(pyfunc, sessions: list[list], k: int = K) -> pd.DataFrame:
    return pyfunc.predict(pd.DataFrame({"session": sessions}), params={"k": k})


def test_predict_writes_the_pyfunc_answers_of_every_session(predicted, generated, pyfunc):
    out, _ = predicted
    table = pq.read_table(out)
    assert table.schema.field("session").type == pa.int64()
    assert table.schema.field("items").type == pa.list_(pa.string())
    assert table.schema.field("scores").type == pa.list_(pa.float32())
    sessions = raw_sessions(generated[0])
    assert table["session"].to_pylist() == sessions.index.tolist()
    expected = pyfunc_answers(pyfunc, sessions.tolist())
    assert table["items"].to_pylist() == expected["items"].tolist()
    got = table["scores"].to_pylist()
    assert all(np.array_equal(np.float32(a), np.float32(b)) for a, b in zip(got, expected["scores"], strict=True))
    assert all(len(items) == K for items in table["items"].to_pylist())


def test_the_run_has_its_metrics_dataset_and_model_inputs(predicted, generated, model_uri):
    out, run_id = predicted
    run = mlflow.get_run(run_id)
    assert run.data.tags["seqrec.step"] == "predict"
    metrics = run.data.metrics
    n_sessions = pq.read_metadata(out).num_rows
    assert metrics["sessions"] == n_sessions and metrics["clicks"] == 20_000
    assert 0 < metrics["unknown_items"] < 20_000 and 0 < metrics["unknown_sessions"] < n_sessions
    assert metrics["seconds"] > 0 and metrics["sessions_per_second"] == pytest.approx(n_sessions / metrics["seconds"])
    assert run.data.params["k"] == str(K) and run.data.params["model_uri"] == model_uri
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == generated[0].name and dataset.tags[0].value == "predict"
    model_id = mlflow.models.get_model_info(model_uri).model_id
    assert [m.model_id for m in run.inputs.model_inputs] == [model_id]


def test_string_ids_and_unknown_items_from_a_generic_csv(model_uri, pyfunc, processed, tmp_path, capsys):
    known = [str(i) for i in ProcessedDataset.load(processed).raw_ids[1:4]]
    rows = [("s-b", "nope-1", 1), ("s-a", known[0], 5), ("s-b", "nope-2", 2), ("s-a", known[1], 3),
            ("s-c", "nope-3", 9), ("s-c", known[2], 8), ("s-a", known[2], 4)]
    long = [known[t % 3] for t in range(70)] + ["nope-4"]  # longer than max_len: its last clicks count
    rows += [("s-d", item, 100 + t) for t, item in enumerate(long)]
    clicks = tmp_path / "open.csv"
    clicks.write_text("sid;iid;ts\n" + "".join(f"{s};{i};{t}\n" for s, i, t in rows))
    out = tmp_path / "recs.parquet"
    status, run_id, err = predict(capsys, "--model-uri", model_uri, "--sessions", str(clicks), "--out", str(out),
                                  "--format", "csv", "--columns", "session=sid,item=iid,time=ts", "--k", "5")
    assert status == 0, err
    table = pq.read_table(out)
    assert table.schema.field("session").type == pa.string()
    assert table["session"].to_pylist() == ["s-a", "s-b", "s-c", "s-d"]
    sessions = [[known[1], known[2], known[0]], ["nope-1", "nope-2"], [known[2], "nope-3"], long]  # by time
    expected = pyfunc_answers(pyfunc, sessions, 5)
    assert table["items"].to_pylist() == expected["items"].tolist()
    assert table["items"].to_pylist()[3] == pyfunc_answers(pyfunc, [long[-51:]], 5)["items"][0]
    metrics = mlflow.get_run(run_id).data.metrics
    assert (metrics["unknown_items"], metrics["unknown_sessions"], metrics["sessions"]) == (4, 1, 4)


def test_chunks_smaller_than_the_sessions_give_the_same_file(predicted, model_uri, generated, tmp_path, capsys):
    out = tmp_path / "chunked.parquet"
    status, _, err = predict(capsys, "--model-uri", model_uri, "--sessions", str(generated[0]), "--out", str(out),
                             "--k", str(K), "--chunk-sessions", "777")
    assert status == 0, err
    assert pq.read_table(out).equals(pq.read_table(predicted[0]))
    assert pq.read_metadata(out).num_row_groups > 1


def test_an_existing_output_is_refused_unless_an_earlier_predict_output_may_be_replaced(
        predicted, model_uri, generated, tmp_path, capsys):
    foreign = tmp_path / "mine.parquet"
    foreign.write_text("not written by predict")
    n_runs = len(mlflow.search_runs(experiment_names=["seqrec"]))
    for overwrite in ("false", "true"):
        status, _, err = predict(capsys, "--model-uri", model_uri, "--sessions", str(generated[0]),
                                 "--out", str(foreign), "--overwrite", overwrite)
        assert status == 2 and err.count("\n") == 1 and str(foreign) in err
    assert foreign.read_text() == "not written by predict"
    assert len(mlflow.search_runs(experiment_names=["seqrec"])) == n_runs  # refused before any work
    earlier = tmp_path / "earlier.parquet"
    earlier.write_bytes(predicted[0].read_bytes())
    status, _, err = predict(capsys, "--model-uri", model_uri, "--sessions", str(generated[0]), "--out", str(earlier),
                             "--k", "3", "--overwrite", "true")
    assert status == 0, err
    assert all(len(items) == 3 for items in pq.read_table(earlier)["items"].to_pylist())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.parquet", "mine.parquet"]  # no temporary left


@pytest.mark.parametrize(("args", "named"), [
    (["--k", "0"], "k"),
    (["--k", "1001"], "k"),
    (["--k", "2.5"], "k"),
    (["--format", "excel"], "format"),
    (["--sessions", "missing.csv"], "missing.csv"),
    (["--format", "diginetica"], "expected a header"),
    (["--model-uri", "models:/no-such-model/1"], "no-such-model"),
])
def test_bad_input_is_one_line_and_exit_2(args, named, model_uri, generated, tmp_path, capsys):
    out = tmp_path / "recs.parquet"
    status, _, err = predict(capsys, "--model-uri", model_uri, "--sessions", str(generated[0]), "--out", str(out),
                             *args)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("predict: error:") and named in err, err
    assert not out.exists()


def test_evaluate_links_the_evaluated_model_as_an_input(model_uri, processed):
    from seqrec.workflow.evaluate import run_evaluate

    eval_id, _ = run_evaluate(str(processed), model_uri)
    model_id = mlflow.models.get_model_info(model_uri).model_id
    assert [m.model_id for m in mlflow.get_run(eval_id).inputs.model_inputs] == [model_id]
