"""Export a logged or registered model into a self-contained directory that the service runs with no tracking
server: the MLflow model (weights, config, the ``seqrec`` code it carries, its pinned ``requirements.txt``),
its description (``seqrec-metadata.json``: registered name and version, run, metrics, as ``GET /metadata``
shows them) and the pinned packages of the HTTP service (``serve-requirements.txt``).

    python -m seqrec.serving.export --model-uri models:/seqrec@champion --out build/model

The ``Dockerfile`` copies such a directory into the image at build time, so the image neither needs the
tracking server at run time nor changes when the alias moves.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow

from seqrec.outputs import check_output_dir, swap_directory, umask_mode

SERVICE_DISTRIBUTIONS = ("fastapi", "starlette", "pydantic", "uvicorn", "h11")  # what seqrec.serving.api adds
OWNED = frozenset({"MLmodel", "code", "artifacts", "requirements.txt", "python_env.yaml", "conda.yaml",
                   "input_example.json", "serving_input_example.json", "registered_model_meta",
                   "seqrec-metadata.json", "serve-requirements.txt", "mlflow_model.py", "__pycache__"})


def export_model(model_uri: str, out: str | Path) -> Path:
    """Download ``model_uri`` to ``out`` with its description and the service's pinned packages; ``out`` must be
    new, empty or an earlier export (it is replaced whole)."""
    from seqrec.serving.api import METADATA_FILE, describe

    out = Path(out)
    check_output_dir(out, "export", METADATA_FILE, OWNED, "choose another --out (a new or empty directory)")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(work / "model")))
        recommender = mlflow.pyfunc.load_model(str(model_dir)).unwrap_python_model().recommender
        metadata = {k: v for k, v in describe(model_uri, recommender).items() if k != "model_uri"}
        (model_dir / METADATA_FILE).write_text(json.dumps({**metadata, "exported_from": model_uri}, indent=2))
        pins = "".join(f"{name}=={version(name)}\n" for name in SERVICE_DISTRIBUTIONS)
        (model_dir / "serve-requirements.txt").write_text(pins)
        model_dir.chmod(umask_mode())
        swap_directory(model_dir, out)  # empty, or an earlier export (checked above)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Export a seqrec model for serving without a tracking server.")
    p.add_argument("--model-uri", required=True, help="models:/seqrec@champion, models:/seqrec/3, runs:/<id>/model")
    p.add_argument("--out", required=True, help="the directory to write (new, empty, or an earlier export)")
    a = p.parse_args(argv)
    try:
        out = export_model(a.model_uri, a.out)
    except (ValueError, OSError, mlflow.exceptions.MlflowException) as exc:
        print(f"export: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"export: wrote {out} ({a.model_uri})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
