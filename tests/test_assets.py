"""Assets from the tortoise-tts sdist, weights from the hub (a loopback stand-in), and the CLI's messages."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from tortoise_lab import assets
from tests.support.hub_standin import serve_hub

@pytest.fixture(scope="session")
def sdist(tmp_path_factory) -> Path:
    """The real tortoise-tts 3.0.0 source archive: $TORTOISE_LAB_SDIST, else downloaded through pip."""
    given = os.environ.get("TORTOISE_LAB_SDIST")
    if given:
        return Path(given)
    folder = tmp_path_factory.mktemp("sdist")
    return assets._download_sdist(folder)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    if "HF_HUB_OFFLINE" not in env:
        full_env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "tortoise_lab", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_fetch_assets_unpacks_tokenizer_norms_and_voices(sdist, tmp_path, monkeypatch):
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path))
    where = assets.fetch_assets(sdist=sdist)
    assert where == tmp_path / "assets"
    norms = torch.load(assets.data_file("mel_norms.pth", fetch=False), weights_only=True)
    assert norms.shape == (80,)
    assert assets.data_file("tokenizer.json", fetch=False).read_text().startswith("{")
    voices = sorted(p.name for p in assets.builtin_voices_dir().iterdir())
    assert len(voices) == 30 and "tom" in voices and "train_dotrice" in voices
    assert len(list((assets.builtin_voices_dir() / "tom").glob("*.wav"))) >= 3


def test_fetch_assets_refuses_an_archive_with_the_wrong_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path / "home"))
    fake = tmp_path / assets.SDIST_NAME
    with tarfile.open(fake, "w:gz") as tar:
        data = b"{}"
        info = tarfile.TarInfo("tortoise-tts-3.0.0/tortoise/data/tokenizer.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(assets.AssetError, match="not the pinned"):
        assets.fetch_assets(sdist=fake)
    assert not (tmp_path / "home" / "assets").exists()


def test_data_file_names_the_allowed_assets():
    with pytest.raises(assets.AssetError, match="Available: tokenizer.json, mel_norms.pth"):
        assets.data_file("vocab.json")


def _fake_checkpoint(seed: int) -> bytes:
    buffer = io.BytesIO()
    torch.save({"layer.weight": torch.randn(4, 4, generator=torch.Generator().manual_seed(seed))}, buffer)
    return buffer.getvalue()


def test_download_into_models_dir_from_a_loopback_hub(tmp_path):
    files = {"clvp2.pth": _fake_checkpoint(1), "vocoder.pth": _fake_checkpoint(2)}
    with serve_hub(assets.HUB_REPO, files) as (endpoint, log):
        done = run_cli("download", "--models-dir", str(tmp_path / "models"), "--files", "clvp2.pth", "vocoder.pth",
                       "-q", env={"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 0, done.stderr
    for name, body in files.items():
        assert (tmp_path / "models" / name).read_bytes() == body
    assert any(line.startswith("GET") for line in log)
    # The downloaded file is a plain-tensor checkpoint our safe reader accepts.
    from tortoise_lab.checkpoints import read_state_dict

    assert set(read_state_dict(tmp_path / "models" / "clvp2.pth")) == {"layer.weight"}


def test_download_fetches_every_weights_file_by_default_the_hifigan_decoder_included(tmp_path):
    files = {name: _fake_checkpoint(i) for i, name in enumerate(assets.WEIGHT_FILES)}
    assert "hifidecoder.pth" in files  # the fast path's decoder comes from the same hub repository as the others
    with serve_hub(assets.HUB_REPO, files) as (endpoint, _):
        done = run_cli("download", "--models-dir", str(tmp_path / "models"), "-q",
                       env={"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "models").glob("*.pth")} == files


def test_download_into_the_hub_cache_honours_hf_home(tmp_path):
    files = {"rlg_auto.pth": _fake_checkpoint(3)}
    env = {"HF_HOME": str(tmp_path / "hf")}
    with serve_hub(assets.HUB_REPO, files) as (endpoint, _):
        done = run_cli("download", "--files", "rlg_auto.pth", "-q", env={**env, "HF_ENDPOINT": endpoint})
    assert done.returncode == 0, done.stderr
    reported = Path(done.stdout.split(": ", 1)[1].strip())
    assert reported.is_relative_to(tmp_path / "hf") and reported.read_bytes() == files["rlg_auto.pth"]
    # Found again later without any network, as `speak` does.
    found = subprocess.run(
        [sys.executable, "-c", "from tortoise_lab.assets import find_weights; print(find_weights('rlg_auto.pth'))"],
        capture_output=True, text=True, env={**os.environ, **env, "HF_HUB_OFFLINE": "1"},
    )
    assert Path(found.stdout.strip()) == reported


def test_offline_download_fails_with_one_sentence_and_exit_3(tmp_path):
    done = run_cli("download", "--models-dir", str(tmp_path / "m"), "-q",
                   env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unset HF_HUB_OFFLINE" in lines[0]
    assert not any((tmp_path / "m").glob("*.pth"))


def test_speak_without_weights_says_what_it_needs(tmp_path):
    done = run_cli("speak", "Hello there.", "--model", "official", "--models-dir", str(tmp_path), env={})
    assert done.returncode == 3
    assert "tortoise-lab download" in done.stderr and "autoregressive.pth" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_long_and_short_flags_parse():
    from tortoise_lab.cli import build_parser

    args = build_parser().parse_args(["speak", "hi", "-v", "tom", "--preset", "ultra_fast", "--output-path", "x",
                                      "--seed", "3"])
    assert (args.voice, args.preset, args.output_path, args.seed) == ("tom", "ultra_fast", "x", 3)
    args = build_parser().parse_args(["download", "--models-dir", "m", "--files", "cvvp.pth", "--quiet"])
    assert args.files == ["cvvp.pth"] and args.quiet
