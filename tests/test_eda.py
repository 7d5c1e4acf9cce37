import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from seqrec import eda
from seqrec.data.dataset import ProcessedDataset
from seqrec.data.preprocess import PreprocessConfig, preprocess
from seqrec.data.readers import read_clicks
from seqrec.workflow.eda import run_eda


@pytest.fixture
def tiny_processed(tiny, tmp_path):
    preprocess(read_clicks(tiny), tmp_path / "p", PreprocessConfig(min_item_support=2), "tiny", {})
    return tmp_path / "p"


def test_figures_on_a_hand_built_dataset(tiny_processed):
    summary, agg = eda.compute(ProcessedDataset.load(tiny_processed), buy_sessions=np.array([1, 6]))
    # sessions A [1,2,3], B [2,3,1], E [1,4], G [2,3] (train_full) and F [4,1] (test)
    assert summary["sessions"] == 5 and summary["clicks"] == 12
    assert summary["session_length_mean"] == pytest.approx(12 / 5)
    assert summary["session_length_median"] == 2
    # item clicks: 1 -> 4, 2 -> 3, 3 -> 3, 4 -> 2
    assert summary["gini"] == pytest.approx(6 / 48)
    assert summary["share_clicks_top_1pct_items"] == pytest.approx(4 / 12)
    assert summary["median_seconds_between_clicks"] == 10
    assert summary["median_session_seconds"] == 10
    assert summary["share_consecutive_repeats"] == 0 and summary["share_repeat_clicks"] == 0
    assert summary["share_sessions_with_buy"] == pytest.approx(2 / 5)
    assert summary["clicks_per_buying_session"] == pytest.approx(2.5)
    # 8 raw sessions of which C has one click; 7 raw items of which 9 and 5 have one click
    assert summary["share_length1_sessions_dropped"] == pytest.approx(1 / 8)
    assert summary["share_items_under_support"] == pytest.approx(2 / 7)
    assert agg["length_hist"].tolist()[:4] == [0, 0, 3, 2]
    assert "share_next_click_same_category" not in summary  # the prepared format has no categories


def test_helpers():
    assert eda.gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert eda.gini(np.array([0, 0, 9])) == pytest.approx(2 / 3)
    zipf = 1000.0 / np.arange(1, 500)
    assert eda.power_law_exponent(zipf) == pytest.approx(-1.0, abs=0.01)
    assert [eda.category_group(c) for c in ("0", "S", "7", "2053883124")] == ["0", "S", "7", "brand"]


def test_step_logs_plots_summary_report_and_metrics(processed):
    summary = run_eda(str(processed))
    run = mlflow.last_active_run()
    client = mlflow.MlflowClient()
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots/eda")}
    assert len(plots) == 8 and all(p.endswith(".png") for p in plots)  # buys.png: the dataset has buys
    assert {"summary.json", "report.html"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.metrics["gini"] == pytest.approx(summary["gini"])
    assert 0 < summary["share_sessions_with_buy"] < 0.2  # the generated buys
    assert "share_next_click_same_category" in summary
    local = Path(client.download_artifacts(run.info.run_id, "summary.json"))
    assert json.loads(local.read_text())["clicks"] == summary["clicks"]
    html = Path(client.download_artifacts(run.info.run_id, "report.html")).read_text()
    assert html.count("data:image/png;base64,") == 8
