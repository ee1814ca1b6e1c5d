"""environment.yml (for conda users) must ask pip for exactly what pyproject.toml declares."""

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.update(extra)
    return requirements


def _environment_pip_requirements() -> set[str]:
    spec = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [item["pip"] for item in spec["dependencies"] if isinstance(item, dict) and "pip" in item]
    assert len(pip_sections) == 1, "environment.yml should have one pip section"
    return set(pip_sections[0])


def test_environment_yml_pip_part_mirrors_pyproject():
    in_pyproject = _pyproject_requirements()
    in_environment = _environment_pip_requirements()
    assert in_environment == in_pyproject, (
        f"only in environment.yml: {sorted(in_environment - in_pyproject)}; "
        f"only in pyproject.toml: {sorted(in_pyproject - in_environment)}"
    )


def test_torch_and_torchaudio_are_pinned_as_a_pair():
    requirements = _pyproject_requirements()
    assert "torch==2.14.1" in requirements and "torchaudio==2.11.0" in requirements
