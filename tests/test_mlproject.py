"""The MLproject entry points, launched the way users launch them (``mlflow run``), and their parameters against
the command lines of their steps."""

import argparse
import importlib
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import yaml

from seqrec.data.synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = shutil.which("mlflow", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(MLFLOW is None, reason="no mlflow CLI")
def test_mlflow_run_preprocess_then_eda_in_the_seqrec_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(inherited, None)
    out = tmp_path / "processed"
    clicks, buys = generate(tmp_path / "raw", SyntheticConfig(n_clicks=20_000))  # not under the project's data/
    for entry, params in (("preprocess", ["-P", f"clicks={clicks}", "-P", f"buys={buys}", "-P", f"out={out}"]),
                          ("eda", ["-P", f"data={out}"])):
        proc = subprocess.run([MLFLOW, "run", str(ROOT), "-e", entry, "--env-manager", "local",
                               "--experiment-name", "seqrec", *params],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["seqrec"])
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    assert sorted(runs["tags.seqrec.step"]) == ["eda", "preprocess"]
    assert (runs["status"] == "FINISHED").all()
    assert runs["metrics.test_predictions"].max() > 0


def test_a_step_outside_the_environment_says_what_to_do_in_one_line():
    """A Python without the dependencies (``-S``: no site-packages) gets one line, not a traceback."""
    done = subprocess.run([sys.executable, "-S", "-m", "steps.train_sasrec", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "source .venv/bin/activate" in done.stderr
    assert "torch" in done.stderr and "make run ARGS='-e NAME" in done.stderr


class _Parsed(BaseException):
    """Raised by the first ``parse_known_args`` of a step: carries its parser, stops the step there."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def _first_parser(main: Callable[[list[str]], int]) -> argparse.ArgumentParser:
    """The parser a step's ``main`` builds, taken at its first parse (nothing after it runs)."""
    def stop(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_known_args", stop)
        try:
            main([])
        except _Parsed as parsed:
            return parsed.parser
    raise AssertionError(f"{main} parsed no arguments")


def _step_options(module: str, fixed: dict[str, str]) -> dict[str, argparse.Action]:
    """The options of the step ``python -m module`` runs, by flag: its ``build_parser`` (given the model a command
    fixes) where it has one, else the parser its ``main`` builds; ``main`` also takes every preprocess option."""
    step = importlib.import_module(module)
    if hasattr(step, "build_parser"):
        parsers = [step.build_parser(fixed.get("--model"))]
    else:
        parsers = [_first_parser(step.main)]
        if module == "steps.main":
            parsers.append(_first_parser(importlib.import_module("steps.preprocess").main))
    return {flag: action for p in parsers for action in p._actions for flag in action.option_strings
            if action.dest != "help"}


def _value(action: argparse.Action, value: object) -> object:
    """``value`` as the option receives it (argparse converts a text default with the option's type too)."""
    return action.type(value) if isinstance(value, str) and action.type is not None else value


def _disagreements(entry: str) -> list[str]:
    """How entry point ``entry`` of MLproject and its step's command line differ (names, defaults)."""
    spec = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry]
    python, dash_m, module, *words = shlex.split(spec["command"])
    assert (python, dash_m) == ("python", "-m") and len(words) % 2 == 0, spec["command"]
    given = dict(zip(words[::2], words[1::2], strict=True))  # flag -> "{param}" or a fixed value
    fixed = {flag: v for flag, v in given.items() if not v.startswith("{")}
    options = _step_options(module, fixed)
    problems = [f"{flag}: not an option of {module}" for flag in given if flag not in options]
    placed = {v[1:-1]: flag for flag, v in given.items() if v.startswith("{")}
    params = spec.get("parameters", {})
    problems += [f"{name}: a parameter the command does not pass" for name in params if name not in placed]
    problems += [f"{{{name}}}: in the command, not a parameter" for name in placed if name not in params]
    problems += [f"{flag}: an option of {module} that MLproject does not set" for flag in options
                 if flag not in given and flag.startswith("--")]
    for name, flag in placed.items():
        if name not in params or flag not in options:
            continue
        if flag != "--" + name.replace("_", "-"):
            problems.append(f"{name}: passed as {flag}")
        action = options[flag]
        if "default" not in params[name] or action.required:
            continue  # MLflow asks for it, or the step needs it given: MLproject's default is the only one
        ours, theirs = _value(action, str(params[name]["default"])), _value(action, action.default)
        if ours != theirs:
            problems.append(f"{name}: MLproject default {ours!r}, {module} default {theirs!r}")
    return problems


_ENTRY_POINTS = sorted(yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"])


@pytest.mark.parametrize("entry", _ENTRY_POINTS)
def test_mlproject_parameters_are_the_steps_options_with_the_same_defaults(entry):
    """Each entry point's parameters are its step's options under the same names (``max_len`` is ``--max-len``),
    with the same defaults, and the step has no option MLproject leaves out."""
    assert _disagreements(entry) == []


def test_the_predicted_sessions_are_a_path_and_model_uris_stay_strings():
    """``path``: an input file that must exist, made absolute from where ``mlflow run`` starts (or downloaded); a
    ``path`` has no default, since a default such as ``data/processed/...`` need not exist yet. Model URIs stay
    ``string``: MLflow's ``uri`` type would refuse a local model directory."""
    spec = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    typed = {(entry, name): p.get("type", "string") for entry, e in spec.items()
             for name, p in e.get("parameters", {}).items()}
    assert {k for k, t in typed.items() if t == "path"} == {("predict", "sessions")}
    assert {t for (_, name), t in typed.items() if name == "model_uri"} == {"string"}
    assert all("default" not in spec[entry]["parameters"][name] for (entry, name), t in typed.items() if t == "path")


def test_mlflow_run_resolves_the_typed_parameters_before_the_step(tmp_path, monkeypatch):
    """MLflow's own resolution of the parameters (what ``mlflow run`` does before it starts the step): every entry
    point's defaults pass, a relative ``path`` becomes absolute from the caller's directory, a local model directory
    passes as it is, a missing file is refused."""
    from mlflow.exceptions import ExecutionException
    from mlflow.projects._project_spec import load_project

    project = load_project(str(ROOT))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "open.csv").write_text("session,item,time\n")
    storage = tmp_path / "storage"
    storage.mkdir()
    for entry in _ENTRY_POINTS:
        project.get_entry_point(entry).compute_parameters({"sessions": "open.csv"}, str(storage))
    predict = project.get_entry_point("predict")
    params, _ = predict.compute_parameters({"sessions": "open.csv"}, str(storage))
    assert params["sessions"] == shlex.quote(str(tmp_path / "open.csv"))
    assert params["model_uri"] == "models:/seqrec@champion"
    params, _ = predict.compute_parameters({"sessions": "open.csv", "model_uri": str(storage)}, str(storage))
    assert params["model_uri"] == shlex.quote(str(storage))
    with pytest.raises(ExecutionException):
        predict.compute_parameters({"sessions": "missing.csv"}, str(storage))
