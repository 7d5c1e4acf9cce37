"""The ``preprocess`` step: read (or generate) clicks, preprocess them with the engine ``engine`` picks (``memory``:
numpy, or ``duckdb``: out of core, :func:`seqrec.data.outofcore.choose_engine`), log the run to MLflow."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import mlflow

from seqrec import tracking
from seqrec.data.formats.common import check_file
from seqrec.data.outofcore import Unsupported, choose_engine, preprocess_outofcore
from seqrec.data.preprocess import PreprocessConfig, check_output, file_digest, preprocess
from seqrec.data.readers import ReadOptions, concat_clicks, read_buys, read_clicks, resolve_format
from seqrec.data.synthetic import SyntheticConfig, generate
from seqrec.outputs import check_name, check_output_dir, swap_directory, umask_mode, write_json_atomically

DEFAULT_DATA_ROOT = Path("data")


@dataclass
class PreprocessParams:
    """Parameters of the preprocess entry point."""

    clicks: str = ""  # empty: the built-in generated data; several files: comma-separated
    buys: str = ""
    out: str = ""  # empty: data/processed/<dataset name>
    name: str = ""  # dataset name; empty: derived from the clicks file
    on_bad_lines: str = "error"
    synthetic_clicks: int = 100_000
    seed: int = 0
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    format: str = "auto"  # auto (raw YooChoose or prepared TSV), or a name of seqrec.data.readers.FORMATS
    read: ReadOptions = field(default_factory=ReadOptions)  # columns, time_unit, sep, events, session_gap


def dataset_name(params: PreprocessParams) -> str:
    """``name``, else derived from the clicks file (``.neg.tsv`` -> ``neg``) or the generator's settings; checked
    to be usable as a directory name."""
    if params.name:
        return check_name(params.name)
    if params.clicks:
        first = Path(params.clicks.split(",")[0]).name
        return check_name(first.lstrip(".").split(".")[0], f"dataset name (from the clicks file {first})")
    return check_name(f"synthetic-{params.synthetic_clicks}-s{params.seed}")


def resolve_inputs(params: PreprocessParams) -> tuple[Path, Path | None, str]:
    """The clicks file, the buys file and the dataset name; generates the built-in data if needed."""
    name = dataset_name(params)
    if params.clicks:
        return Path(params.clicks), Path(params.buys) if params.buys else None, name
    clicks, buys = generated_data(DEFAULT_DATA_ROOT / "raw" / name,
                                  SyntheticConfig(n_clicks=params.synthetic_clicks, seed=params.seed))
    return clicks, buys, name


GENERATED = frozenset({"clicks.dat", "buys.dat", "generator.json"})


def generated_data(folder: Path, cfg: SyntheticConfig) -> tuple[Path, Path]:
    """The built-in data of ``cfg`` in ``folder``: reused when its record (``generator.json``: the settings and
    the files' digests) matches, generated when the folder is new or holds only an earlier generation."""
    record = folder / "generator.json"
    clicks, buys = folder / "clicks.dat", folder / "buys.dat"
    wanted = {"config": asdict(cfg)}
    if record.exists() and clicks.exists() and buys.exists():
        known = json.loads(record.read_text())
        if known == {**wanted, "clicks": file_digest(clicks), "buys": file_digest(buys)}:
            return clicks, buys
        print(f"preprocess: {folder} holds another or altered generation: generating it again", flush=True)
    check_output_dir(folder, "the data generator", "generator.json", GENERATED,
                     "give -P name= a new name, or move those files away")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.gen-", dir=folder.parent))
    try:  # generated beside the folder, then swapped in whole: a kill leaves the old folder or the new one
        os.chmod(work, umask_mode())
        generate(work, cfg)
        write_json_atomically(work / "generator.json", {**wanted, "clicks": file_digest(work / "clicks.dat"),
                                                        "buys": file_digest(work / "buys.dat")})
        swap_directory(work, folder)  # empty, or only the generator's own files (checked above)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return clicks, buys


def output_dir(params: PreprocessParams, name: str) -> Path:
    """Where the processed dataset goes, checked before any work (:func:`seqrec.data.preprocess.check_output`)."""
    out = Path(params.out) if params.out else DEFAULT_DATA_ROOT / "processed" / name
    check_output(out)
    return out


def run_preprocess(params: PreprocessParams, nested: bool = False) -> tuple[str, dict]:
    """Run the step in an MLflow run; returns the processed dataset directory and its stats."""
    out = output_dir(params, dataset_name(params))  # before any work, the generation of the built-in data included
    clicks_path, buys_path, name = resolve_inputs(params)
    with tracking.start_run("preprocess", nested=nested, run_name=f"preprocess-{name}"):
        tracking.log_params({**asdict(params.config), "clicks_file": str(clicks_path),
                             "buys_file": str(buys_path or ""), "out_dir": str(out),
                             "on_bad_lines": params.on_bad_lines, "format": params.format, **read_params(params)})
        started = time.perf_counter()
        files = [Path(f) for f in str(clicks_path).split(",")]
        engine, why = choose_engine(params.config.engine, files, params.format, params.on_bad_lines)
        print(f"preprocess: engine {engine} ({why})", flush=True)
        stats, read_seconds, engine = _preprocess_with(engine, params, files, buys_path, out, name)
        mlflow.set_tags({"seqrec.preprocess.engine": engine, "seqrec.preprocess.engine_reason": why,
                         **{f"seqrec.reader.{key}": str(value) for key, value in stats["raw"]["reader"].items()}})
        tracking.log_file_input(files[0], stats["source"]["digest"], name)
        mlflow.set_tags(tracking.dataset_tags(stats))
        metrics = {"raw_clicks": stats["raw"]["clicks"], "skipped_lines": stats["raw"]["skipped_lines"],
                   "n_items": stats["n_items"], "read_seconds": read_seconds,
                   "preprocess_seconds": time.perf_counter() - started}
        for split, counts in stats["splits"].items():
            metrics.update({f"{split}_{key}": value for key, value in counts.items()})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(out / "stats.json"))
        mlflow.log_artifact(str(out / "item_mapping.json"))
    return str(out), stats


def _preprocess_with(engine: str, params: PreprocessParams, files: list[Path], buys_path: Path | None, out: Path,
                     name: str) -> tuple[dict, float, str]:
    """Read and preprocess the click files with ``engine`` (``memory`` or ``duckdb``); returns the stats, the
    seconds spent reading and the engine that ran: duckdb hands what it cannot read natively (said on stdout and in
    the run's tags) to the memory engine."""
    started = time.perf_counter()
    options = replace(params.read, on_bad_lines=params.on_bad_lines)
    if engine == "duckdb":
        for f in files:  # a missing file or a bad setting fails here, as the memory engine's reader fails
            resolve_format(f, params.format, options)
            check_file(f)
        buys = read_buys(buys_path, on_bad_lines=params.on_bad_lines) if buys_path else None
        source = {"path": ",".join(str(f.resolve()) for f in files), "digest": file_digest(*files),
                  **read_params(params)}
        timings: dict = {}
        try:
            stats = preprocess_outofcore(files, params.format, options, out, params.config, name, source, buys,
                                         timings)
            return stats, time.perf_counter() - started - timings["seconds_after_read"], engine
        except Unsupported as exc:
            print(f"preprocess: the duckdb engine does not read {exc}: the memory engine reads it", flush=True)
            started, engine = time.perf_counter(), "memory"
    clicks = [concat_clicks([read_clicks(f, params.on_bad_lines, params.format, params.read) for f in files])]
    digest = file_digest(*files)
    buys = read_buys(buys_path, on_bad_lines=params.on_bad_lines) if buys_path else None
    read_seconds = time.perf_counter() - started
    source = {"path": ",".join(str(f.resolve()) for f in files), "digest": digest, **read_params(params)}
    # pop: preprocess gets the only reference and frees the raw columns once it has grouped them
    return preprocess(clicks.pop(), out, params.config, name, source, buys=buys), read_seconds, engine


def read_params(params: PreprocessParams) -> dict:
    """The reading parameters that shape the clicks, where not the defaults (logged, and part of the dataset
    digest: the default reading of a YooChoose file keeps its digest)."""
    read = params.read
    out: dict[str, str | float] = {"format": params.format} if params.format != "auto" else {}
    if read.columns:
        out.update(columns=",".join(f"{k}={v}" for k, v in read.columns.items()), time_unit=read.time_unit or "s")
        if read.sep:
            out["sep"] = read.sep
    if read.events:
        out["events"] = ",".join(read.events)
    if params.format == "retailrocket":
        out["session_gap"] = read.session_gap
    return out
