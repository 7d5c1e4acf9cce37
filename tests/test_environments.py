"""One dependency source: uv.lock is resolved from pyproject.toml, the environment `make` builds is the lock's, and
conda.yaml and python_env.yaml install what pyproject.toml declares, nothing else."""

import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv", path=os.path.dirname(sys.executable))  # the dev extra's, as `make` installs it
needs_uv = pytest.mark.skipif(UV is None, reason="no uv beside this Python (pip install -e '.[dev]')")


def locked_pins(*export_args: str) -> dict[str, str]:
    """The versions uv.lock pins for this interpreter and platform (``uv export``, markers evaluated)."""
    done = subprocess.run([UV, "export", "--frozen", "--quiet", "--no-emit-project", "--no-hashes", "--no-header",
                           "--python", sys.executable, *export_args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    pins = {}
    for line in done.stdout.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "-")):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():
                pins[requirement.name] = str(next(iter(requirement.specifier)).version)
    return pins


def test_conda_yaml_pins_exactly_the_dependencies_of_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if p != "-e .") == sorted(declared)
    assert "-e ." in pip


def test_the_base_install_holds_what_a_training_run_needs_beyond_imports():
    """Training runs log MLflow's system metrics, which need psutil: a base dependency of its own, not one that
    the dev tools happen to bring (``make run`` installs the base only)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "psutil" in {Requirement(r).name for r in declared}
    if UV is not None:
        assert "psutil" in locked_pins()  # what the base install gets from the lock


def test_python_env_yaml_installs_the_project_itself():
    env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert env["dependencies"] == ["."]


@needs_uv
def test_uv_lock_is_resolved_from_pyproject():
    """uv's own check, offline: fails when a dependency of pyproject.toml changed and `make lock` was not run."""
    done = subprocess.run([UV, "lock", "--check", "--offline", "--python", sys.executable], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:] + "\nrun `make lock` and commit uv.lock"


def test_the_lock_pins_one_torch_release_within_pyprojects_bound():
    """One torch version for every platform and Python: the one CI installs as the CPU build."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bound = next(Requirement(d) for d in declared if Requirement(d).name == "torch").specifier
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (torch,) = [p for p in lock["package"] if p["name"] == "torch"]
    assert torch["version"] in bound


@needs_uv
def test_this_environment_is_the_lock():
    """Every installed package that uv.lock pins has the locked version (torch: any build of it, `+cpu` here)."""
    pins = locked_pins("--all-extras")
    installed = {}
    for name in pins:
        try:
            installed[name] = version(name).split("+")[0]
        except PackageNotFoundError:
            continue  # not for this environment (torch's CUDA packages beside its CPU build)
    assert {"torch", "mlflow", "uv"} <= installed.keys()
    drift = {name: (have, pins[name]) for name, have in installed.items() if have != pins[name]}
    assert not drift, f"installed, locked: {drift}; run `make` to install from uv.lock"
