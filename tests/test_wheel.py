"""What ships inside the package, and an installed wheel that speaks offline.

The embedded model needs, besides its weights, a voice (``EMBEDDED_DEFAULT_VOICE``), the official tokenizer and the
official mel norms (the conditioning mel is divided by them). All three are package data, so a wheel installed into
a fresh environment, with no assets unpacked, no weights, no network and no checkout of this repository around it,
speaks. The slow test builds that wheel and does exactly this.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tortoise_lab import assets
from tortoise_lab.cli import main
from tortoise_lab.model_set import EMBEDDED_DEFAULT_VOICE
from tortoise_lab.voices import describe_voices, load_voice
from tortoise_lab.voices import library

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tortoise_lab"
# What a wheel must hold for the embedded model to speak (paths inside the wheel).
NEEDED_IN_WHEEL = [
    *(f"tortoise_lab/data/embedded/{name}" for name in ("autoregressive.safetensors", "quantizer.safetensors",
                                                        "config.json")),
    *(f"tortoise_lab/data/voices/{EMBEDDED_DEFAULT_VOICE}/{p.name}"
      for p in sorted((library.PACKAGED_VOICES / EMBEDDED_DEFAULT_VOICE).glob("*.wav"))),
    *(f"tortoise_lab/data/official/{name}" for name in ("tokenizer.json", "mel_norms.pth", "LICENSE", "NOTICE")),
    "tortoise_lab/cli/__init__.py",
]


@pytest.fixture
def installed_layout(tmp_path, monkeypatch):
    """This process as an installed wheel sees it: no repository voices/, nothing unpacked in $TORTOISE_LAB_HOME."""
    monkeypatch.setattr(library, "PROJECT_VOICES", tmp_path / "no-repository" / "voices")
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# ------------------------------------------------------------------------------------------ package data


def test_the_packaged_voice_is_the_projects_voice_byte_for_byte():
    packaged = library.PACKAGED_VOICES / EMBEDDED_DEFAULT_VOICE
    project = library.PROJECT_VOICES / EMBEDDED_DEFAULT_VOICE
    assert project.is_dir(), "this test runs in a checkout, which has voices/"
    clips = sorted(p.name for p in packaged.glob("*.wav"))
    assert len(clips) >= 3 and clips == sorted(p.name for p in project.glob("*.wav"))
    for name in clips:
        assert (packaged / name).read_bytes() == (project / name).read_bytes(), (
            f"{packaged / name} differs from {project / name}: copy voices/{EMBEDDED_DEFAULT_VOICE}/*.wav into "
            f"tortoise_lab/data/voices/{EMBEDDED_DEFAULT_VOICE}/ (the installed package's copy)")
    assert sum((packaged / name).stat().st_size for name in clips) < 1_000_000  # a few hundred KB in every install


def test_the_packaged_tokenizer_and_mel_norms_are_upstreams_files():
    for name, pinned in assets.PACKAGED_SHA256.items():
        assert assets.sha256_file(assets.PACKAGED_ASSETS_DIR / name) == pinned
        # The same bytes `tortoise-lab assets` unpacks from the pinned sdist (setup.sh unpacks them; test_readme.py
        # relies on them as well).
        unpacked = Path(os.environ.get("TORTOISE_LAB_HOME") or assets.data_dir()) / "assets" / name
        if not unpacked.is_file():
            pytest.fail(f"the official assets are not unpacked ({unpacked}); run `tortoise-lab assets`.", pytrace=False)
        assert assets.sha256_file(unpacked) == pinned
    notice = (assets.PACKAGED_ASSETS_DIR / "NOTICE").read_text()
    assert assets.SDIST_SHA256 in notice and "Apache License" in notice
    assert (assets.PACKAGED_ASSETS_DIR / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_without_the_repository_or_assets_the_embedded_model_finds_all_it_needs(installed_layout):
    assert assets.data_file("tokenizer.json", fetch=False) == assets.PACKAGED_ASSETS_DIR / "tokenizer.json"
    assert assets.data_file("mel_norms.pth", fetch=False) == assets.PACKAGED_ASSETS_DIR / "mel_norms.pth"
    voice = load_voice(EMBEDDED_DEFAULT_VOICE)
    assert len(voice.clips) >= 3
    assert all(path.parent == library.PACKAGED_VOICES / EMBEDDED_DEFAULT_VOICE for path in voice.files)
    # Its latent cache goes to the user's data folder, never inside the installed package.
    assert voice.folder == installed_layout / "packaged-voices" / EMBEDDED_DEFAULT_VOICE
    assert not installed_layout.exists()  # loading wrote nothing
    # Asking for a built-in voice says where the built-in voices come from.
    with pytest.raises(ValueError, match=r"Unknown voice 'tom'\. Available: .*espeak_us_m3.*tortoise-lab assets"):
        load_voice("tom")


def test_unpacked_assets_are_preferred_to_the_packaged_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path))
    (tmp_path / "assets").mkdir()
    shutil.copy(assets.PACKAGED_ASSETS_DIR / "tokenizer.json", tmp_path / "assets" / "tokenizer.json")
    assert assets.data_file("tokenizer.json", fetch=False) == tmp_path / "assets" / "tokenizer.json"


def test_a_damaged_packaged_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path / "home"))
    damaged = tmp_path / "official"
    shutil.copytree(assets.PACKAGED_ASSETS_DIR, damaged)
    (damaged / "tokenizer.json").write_text("{}")
    monkeypatch.setattr(assets, "PACKAGED_ASSETS_DIR", damaged)
    with pytest.raises(assets.AssetError, match="not the pinned .*reinstall tortoise_lab"):
        assets.data_file("tokenizer.json", fetch=False)


def test_voices_list_shows_the_default_voice_once_from_the_project_folder(capsys):
    infos = [info for info in describe_voices() if info.name == EMBEDDED_DEFAULT_VOICE]
    assert [info.folder for info in infos] == [library.PROJECT_VOICES / EMBEDDED_DEFAULT_VOICE]
    assert main(["voices", "list"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == [EMBEDDED_DEFAULT_VOICE]]
    assert len(rows) == 1 and rows[0].endswith(str(library.PROJECT_VOICES / EMBEDDED_DEFAULT_VOICE))


def test_voices_list_shows_the_packaged_voice_when_there_is_no_repository(installed_layout, capsys):
    assert main(["voices", "list"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == [EMBEDDED_DEFAULT_VOICE]]
    assert len(rows) == 1 and rows[0].endswith(str(library.PACKAGED_VOICES / EMBEDDED_DEFAULT_VOICE))


# ---------------------------------------------------------------------------------- the wheel, installed


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the working tree: setuptools writes build/ and *.egg-info beside the sources, and others
    work in this tree. No build isolation (the project environment's setuptools) and no index: nothing is fetched."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(PACKAGE, source / "tortoise_lab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", library.CACHE_FOLDER))
    wheels = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "-q", "-w", str(wheels), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = wheels.glob("tortoise_lab-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """A new venv holding only the wheel; the project environment's packages (torch and the rest) are made visible
    through a .pth file, after its own site-packages, so nothing is downloaded. Returns (bin folder, site-packages)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(subprocess.run([str(python), "-c", purelib], capture_output=True, text=True,
                                        check=True).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    # A path line in a .pth file only adds that folder: the .pth files inside it (our editable install's) do not run.
    (site_packages / "project_environment.pth").write_text("".join(f"{path}\n" for path in ours))
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "--disable-pip-version-check", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv / "bin", site_packages


def _offline_env(home: Path, hub: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TORTOISE_LAB_MODELS_DIR", "TORTOISE_LAB_SDIST",
                        "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"}}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hub),  # an empty hub cache: no official weights
               TORTOISE_LAB_HOME=str(home),  # no assets, no user voices, no cache
               PIP_NO_INDEX="1",  # were the sdist fetched, it would fail here rather than download
               TORTOISE_LAB_DEVICE="cpu", OMP_NUM_THREADS="1")
    return env


@pytest.mark.slow
def test_the_wheel_speaks_offline_in_a_fresh_venv(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    missing = [name for name in NEEDED_IN_WHEEL if name not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    assert not [name for name in names if "__pycache__" in name or f"/{library.CACHE_FOLDER}/" in name]
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: torch")]
    assert requires and not any("==" in line for line in requires), requires  # ranges: the user's torch stays

    bin_dir, site_packages = _fresh_venv(tmp_path, wheel)
    home, hub, work = tmp_path / "home", tmp_path / "hub", tmp_path / "work"
    for folder in (home, hub, work):
        folder.mkdir()
    env = _offline_env(home, hub)

    where = subprocess.run([str(bin_dir / "python"), "-c", "import tortoise_lab; print(tortoise_lab.__file__)"],
                           capture_output=True, text=True, env=env, cwd=work, timeout=300)
    print("tortoise_lab imported from", where.stdout.strip())
    imported = Path(where.stdout.strip())
    assert imported == site_packages / "tortoise_lab" / "__init__.py", where.stderr
    assert not imported.is_relative_to(REPO)

    done = subprocess.run([str(bin_dir / "tortoise-lab"), "speak", "Hello.", "-p", "ultra_fast",
                           "--num-autoregressive-samples", "2", "--seed", "1", "-O", "out"],
                          capture_output=True, text=True, env=env, cwd=work, timeout=900)
    print(done.stdout, done.stderr[-2000:])
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "embedded tiny model" in done.stdout
    assert "Traceback" not in done.stderr

    wav_path = work / "out" / f"{EMBEDDED_DEFAULT_VOICE}.wav"
    samples, rate = soundfile.read(str(wav_path), dtype="float32")
    seconds = len(samples) / rate
    # A model that never stops would fill its 300 codes: 300 x 4 mel frames x 256 samples = 12.8 s.
    assert 0.2 < seconds < 6, f"{seconds:.2f} s for 'Hello.'"
    assert np.isfinite(samples).all()
    assert np.sqrt(np.mean(samples**2)) > 1e-3 and np.abs(samples).max() > 0.01, "silent"
    sidecar = json.loads(wav_path.with_suffix(".json").read_text())
    assert "embedded" in sidecar["model"] and sidecar["voice"] == EMBEDDED_DEFAULT_VOICE

    assert not (home / "assets").exists()  # the packaged tokenizer and mel norms were enough: nothing was fetched
    installed_data = site_packages / "tortoise_lab" / "data"
    assert not list(installed_data.rglob(library.CACHE_FOLDER))  # nothing written inside the installed package
