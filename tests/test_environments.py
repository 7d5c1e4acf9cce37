"""One dependency source: conda.yaml and python_env.yaml install what pyproject.toml declares, nothing else."""

from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_yaml_pins_exactly_the_dependencies_of_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if p != "-e .") == sorted(declared)
    assert "-e ." in pip


def test_python_env_yaml_installs_the_project_itself():
    env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert env["dependencies"] == ["."]
