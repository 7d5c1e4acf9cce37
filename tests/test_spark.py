"""A logged model as a Spark UDF (docs/spark.md): ``mlflow.pyfunc.spark_udf`` on a local Spark answers what the
pyfunc answers, for a DataFrame with a ``session`` column of ``array<string>`` (and an optional ``k`` column)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import mlflow
import pandas as pd
import pytest

from seqrec.data.dataset import ProcessedDataset
from seqrec.workflow.baseline import run_baseline

RESULT_TYPE = "items array<string>, scores array<double>"  # the struct the UDF answers (docs/spark.md)


def _no_spark_reason() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    home = os.environ.get("JAVA_HOME")
    if not (home and os.path.exists(os.path.join(home, "bin", "java"))) and shutil.which("java") is None:
        return "no Java runtime for a local Spark (java on PATH or JAVA_HOME; Spark 4 needs Java 17+)"
    return None


@pytest.fixture(scope="module")
def spark():
    if reason := _no_spark_reason():
        pytest.skip(reason)
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the Python workers run this interpreter
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (SparkSession.builder.master("local[1]").appName("seqrec-test")
               .config("spark.driver.memory", "512m")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "1")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model_uri(processed) -> str:
    run_id, _ = run_baseline(str(processed), "sr")
    return f"runs:/{run_id}/model"


@pytest.fixture(scope="module")
def sessions(processed) -> list[list[str]]:
    """Real test sessions as raw string ids, an empty one and one of an unknown item."""
    data = ProcessedDataset.load(processed)
    test = data.split("test")
    real = [[str(data.raw_ids[i]) for i in test.items[test.offsets[j]:test.offsets[j + 1]]] for j in range(6)]
    return [*real, [], ["not-an-item"]]


def _assert_same(spark_rows: list, expected: pd.DataFrame) -> None:
    assert len(spark_rows) == len(expected)
    for row, items, scores in zip(spark_rows, expected["items"], expected["scores"], strict=True):
        assert list(row.items) == list(items)
        assert list(row.scores) == pytest.approx([float(s) for s in scores], rel=1e-12, abs=1e-12)


def test_spark_udf_answers_what_the_pyfunc_answers(spark, model_uri, sessions):
    from pyspark.sql import functions as F

    model = mlflow.pyfunc.load_model(model_uri)
    df = spark.createDataFrame(list(enumerate(sessions)), "id long, session array<string>")
    recommend = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=RESULT_TYPE, params={"k": 5})
    rows = df.withColumn("rec", recommend("session")).orderBy("id").select("rec.*").collect()
    _assert_same(rows, model.predict(pd.DataFrame({"session": sessions}), params={"k": 5}))
    assert all(len(r.items) == 5 for r in rows)
    assert rows[-1].items == rows[-2].items  # unknown-only and empty sessions: the most popular items
    assert any(r.items != rows[-1].items for r in rows[:-2])

    # a per-row k column, passed with the session in a struct; the result type inferred from the signature
    ks = [3, 7, 1, 4, 5, 2, 6, 3]
    with_k = spark.createDataFrame([(i, s, k) for i, (s, k) in enumerate(zip(sessions, ks, strict=True))],
                                   "id long, session array<string>, k long")
    by_row = mlflow.pyfunc.spark_udf(spark, model_uri)
    rows = with_k.withColumn("rec", by_row(F.struct("session", "k"))).orderBy("id").select("rec.*").collect()
    _assert_same(rows, model.predict(pd.DataFrame({"session": sessions, "k": ks})))
    assert [len(r.items) for r in rows] == ks


def test_pyfunc_k_column_accepts_whole_numbers_and_missing_values(model_uri, sessions):
    """The ``k`` column as spark_udf sends it (NaN when absent) and as Python callers do (integers)."""
    model = mlflow.pyfunc.load_model(model_uri)
    ints = [[int(x) for x in s] for s in sessions[:3]]  # integer raw ids, as in the data
    base = model.predict(pd.DataFrame({"session": ints}), params={"k": 4})
    assert [len(items) for items in base["items"]] == [4, 4, 4]
    assert base["items"].tolist() == model.predict(pd.DataFrame({"session": sessions[:3]}), params={"k": 4})[
        "items"].tolist()
    mixed = model.predict(pd.DataFrame({"session": ints, "k": [2.0, float("nan"), 6]}), params={"k": 4})
    assert [len(items) for items in mixed["items"]] == [2, 4, 6]
    assert model.predict({"session": ints[0], "k": 3})["items"][0] == base["items"][0][:3]
    for bad in (2.5, "3"):
        with pytest.raises(Exception, match="k must be a whole number"):
            model.predict(pd.DataFrame({"session": ints[:1], "k": [bad]}))
