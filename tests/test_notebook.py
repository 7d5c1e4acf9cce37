import os

import nbformat
import pytest
from nbclient import NotebookClient

from seqrec.workflow.baseline import run_baseline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_model_check_notebook_runs_top_to_bottom(processed, monkeypatch, tmp_path):
    notebook = nbformat.read(os.path.join(ROOT, "notebooks", "model_check.ipynb"), as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "stored with outputs"
    run_id, _ = run_baseline(str(processed), "sr")
    monkeypatch.setenv("SEQREC_MODEL_URI", f"runs:/{run_id}/model")
    monkeypatch.setenv("SEQREC_DATA", str(processed))
    resources = {"metadata": {"path": str(tmp_path)}}
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources)
    try:
        client.execute()
    except Exception as exc:  # pragma: no cover - the message tells which cell failed
        pytest.fail(f"the notebook failed: {exc}")
    last = notebook.cells[-1]["outputs"][0]
    assert "clicked next" in last["data"]["text/plain"]
