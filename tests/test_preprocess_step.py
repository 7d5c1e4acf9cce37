import json
import subprocess
import sys
from pathlib import Path

import mlflow

from seqrec.data.preprocess import PreprocessConfig
from seqrec.workflow.preprocess import PreprocessParams, run_preprocess

ROOT = Path(__file__).resolve().parents[1]


def test_step_logs_params_counts_input_and_artifacts(generated, tmp_path):
    params = PreprocessParams(clicks=str(generated[0]), buys=str(generated[1]), out=str(tmp_path / "p"),
                              config=PreprocessConfig(min_item_support=3))
    out, stats = run_preprocess(params)
    run = mlflow.last_active_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["min_item_support"] == "3"
    assert run.data.metrics["test_predictions"] == stats["splits"]["test"]["predictions"]
    assert run.data.metrics["n_items"] == stats["n_items"]
    assert run.data.tags["seqrec.data_digest"] == stats["digest"]
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest == stats["source"]["digest"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"stats.json", "item_mapping.json"} <= artifacts
    assert json.loads((Path(out) / "stats.json").read_text())["n_items"] == stats["n_items"]
    assert (Path(out) / "buys.parquet").exists()


def test_cli_reports_bad_input_in_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "clicks.dat"
    bad.write_text("1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:51:09.277Z,xx,0\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "steps" / "preprocess.py"), "--clicks", str(bad), "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"preprocess: error: {bad}:2: expected an integer ItemID, got 'xx'"
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_cli_skip_mode_counts_bad_lines(generated, tmp_path):
    text = generated[0].read_text()
    bad = tmp_path / "clicks.dat"
    bad.write_text(text + "oops,line\n" + "9,2014-13-45,1,0\n")
    out, stats = run_preprocess(PreprocessParams(clicks=str(bad), out=str(tmp_path / "p"), on_bad_lines="skip"))
    assert stats["raw"]["skipped_lines"] == 2
    assert mlflow.last_active_run().data.metrics["skipped_lines"] == 2


def test_several_files_are_read_as_one(sample_dir, tmp_path):
    files = f"{sample_dir / 'train_full.txt'},{sample_dir / 'test.txt'}"
    out, stats = run_preprocess(PreprocessParams(clicks=files, out=str(tmp_path / "s"), name="yoochoose-100k",
                                                 config=PreprocessConfig(min_item_support=1)))
    assert stats["n_items"] == 2933 and stats["splits"]["test"]["predictions"] == 10_152
    assert stats["name"] == "yoochoose-100k"
