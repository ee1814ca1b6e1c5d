"""The install recipes agree: pyproject.toml's ranges, constraints.txt's tested pins, scripts/setup.sh's order and
environment.yml (for conda users), and the README's conda commands."""

import os
import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
# Installed after the rest, in its own pip run with torch importable (its build imports torch).
LAST = "deepspeed"
DEEPSPEED_COMMAND = 'pip install --no-build-isolation -c constraints.txt -e ".[deepspeed]"'
KERNEL_COMMAND = 'python -m ipykernel install --user --name tortoise-lab --display-name "Python (tortoise-lab)"'


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pyproject_requirements() -> dict[str, Requirement]:
    project = _project()
    listed = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    requirements = {canonicalize_name(Requirement(r).name): Requirement(r) for r in listed}
    assert len(requirements) == len(listed), "a package is named twice in pyproject.toml"
    return requirements


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"constraints.txt should pin exact versions, not {line!r}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} is pinned twice in constraints.txt"
        pins[name] = Version(spec.version)
    return pins


def _environment_pip_lines() -> list[str]:
    spec = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [item["pip"] for item in spec["dependencies"] if isinstance(item, dict) and "pip" in item]
    assert len(pip_sections) == 1, "environment.yml should have one pip section"
    return pip_sections[0]


def torchaudio_runs_on(torchaudio: Version, torch: Version) -> bool:
    """torchaudio 2.11 and later use torch's stable ABI (any torch from 2.11 on); older ones need their own torch
    release (2.x.y with 2.x.y; the 2.0 series is older than this project's floor and left out)."""
    if torchaudio >= Version("2.11"):
        return torch >= Version("2.11")
    return torch.release == torchaudio.release


def test_torch_and_torchaudio_are_ranges_that_only_allow_pairs_that_work():
    requirements = _pyproject_requirements()
    torch, torchaudio = requirements["torch"].specifier, requirements["torchaudio"].specifier
    assert not any(s.operator == "==" for s in [*torch, *torchaudio]), "ranges here; the pins are constraints.txt's"
    # Every release of either on PyPI since 2.1 (torchaudio 2.11.1 is the newest), and some future torch releases.
    torch_releases = [Version(v) for v in ("2.1.0", "2.5.1", "2.8.0", "2.9.0", "2.9.1", "2.10.0", "2.11.0", "2.12.1",
                                           "2.13.0", "2.14.1", "2.15.0", "2.20.0")]
    torchaudio_releases = [Version(v) for v in ("2.1.0", "2.5.1", "2.8.0", "2.9.0", "2.9.1", "2.10.0", "2.11.0",
                                                "2.11.1")]
    allowed_torch = [v for v in torch_releases if v in torch]
    allowed_torchaudio = [v for v in torchaudio_releases if v in torchaudio]
    assert Version("2.14.1") in allowed_torch and Version("2.11.0") in allowed_torchaudio
    for audio in allowed_torchaudio:
        for core in allowed_torch:
            assert torchaudio_runs_on(audio, core), f"pyproject.toml allows torchaudio {audio} with torch {core}"
    assert Version("3.0") not in torch and Version("3.0") not in torchaudio


def test_constraints_pin_every_requirement_inside_its_range():
    requirements, pins = _pyproject_requirements(), _constraints()
    assert set(pins) == set(requirements), (
        f"pinned but not required: {sorted(set(pins) - set(requirements))}; "
        f"required but not pinned: {sorted(set(requirements) - set(pins))}"
    )
    for name, version in pins.items():
        assert version in requirements[name].specifier, f"constraints.txt: {name}=={version}, not {requirements[name]}"
    assert torchaudio_runs_on(pins["torchaudio"], pins["torch"])


def test_the_project_environment_has_the_pinned_versions():
    """The environment running this suite is the tested one (setup.sh installs with -c constraints.txt)."""
    wrong = {}
    for name, version in _constraints().items():
        installed = Version(metadata.version(name))  # torch 2.14.1+cu130: the local part names the build
        if Version(installed.public) != version:
            wrong[name] = f"{installed} installed, {version} pinned"
    assert not wrong, f"run `bash scripts/setup.sh` (or update constraints.txt after testing): {wrong}"


def test_setup_installs_torch_then_the_package_then_deepspeed_with_the_constraints():
    script = (REPO / "scripts" / "setup.sh").read_text()
    flags = re.search(r'^PIP_FLAGS="([^"]*)"', script, re.MULTILINE).group(1)
    assert "-c constraints.txt" in flags
    installs = [line for line in script.splitlines() if re.match(r"\s*\.venv/bin/pip install ", line)]
    assert all("$PIP_FLAGS" in line for line in installs), installs
    assert len(installs) == 3
    torch_step, package_step, last_step = installs
    assert torch_step.split("$PIP_FLAGS")[1].split() == ["torch", "torchaudio"]
    extras = re.search(r'-e "\.\[([a-z,]+)\]"', package_step).group(1).split(",")
    assert set(extras) == set(_project()["optional-dependencies"]) - {LAST}
    assert "--no-build-isolation" in last_step and f'-e ".[{LAST}]"' in last_step


def test_environment_yml_installs_the_package_with_the_constraints_and_defers_deepspeed():
    lines = _environment_pip_lines()
    requirements = _pyproject_requirements()
    assert lines[0] == "-c constraints.txt"
    assert [str(Requirement(line)) for line in lines[1:3]] == [str(requirements[n]) for n in ("torch", "torchaudio")]
    (package,) = lines[3:]
    match = re.fullmatch(r"-e \.\[([a-z,]+)\]", package)
    assert match, package
    assert set(match.group(1).split(",")) == set(_project()["optional-dependencies"]) - {LAST}
    header = (REPO / "environment.yml").read_text()
    assert DEEPSPEED_COMMAND in header and KERNEL_COMMAND in header
    assert header.index("conda env create") < header.index(DEEPSPEED_COMMAND) < header.index(KERNEL_COMMAND)


def test_the_readme_gives_the_same_conda_steps():
    readme = (REPO / "README.md").read_text()
    for command in ("conda env create -f environment.yml", "conda activate tortoise-lab", DEEPSPEED_COMMAND,
                    KERNEL_COMMAND):
        assert command in readme, f"README.md should show `{command}` (environment.yml's steps for conda users)"


def test_setup_refuses_to_start_without_the_disk_space_it_needs(tmp_path):
    """A disk too full for the environment is said before pip starts (not "No space left on device" half-way),
    with a non-zero exit and no .venv/ left behind."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    result = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True,
                            env={**os.environ, "TORTOISE_LAB_SETUP_MIN_GB": "1000000"}, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("Set-up needs about 1000000 GB free here for .venv/ and has "), result.stderr
    assert "free some space and run it again." in result.stderr
    assert not (tmp_path / ".venv").exists()
