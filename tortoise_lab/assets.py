"""Where data, voices and weights live; fetching and verifying them.

Two kinds of files come from upstream; of them, only ``tokenizer.json`` and ``mel_norms.pth`` are committed here:

* **Assets** (``tokenizer.json``, ``mel_norms.pth`` and the built-in voices) ship inside the tortoise-tts 3.0.0
  source distribution (Apache-2.0). ``fetch_assets`` gets it through pip, checks its pinned sha256 and unpacks
  those files into ``data_dir() / "assets"``. Copies of the two small data files also ship inside this package
  (``tortoise_lab/data/official/``, with upstream's licence and a NOTICE), so an installed wheel tokenises and
  conditions offline: ``data_file`` takes the unpacked one, else the packaged one (its sha256 checked).
* **Weights** (``autoregressive.pth`` and seven more) live on the model hub in upstream's repository;
  ``download_weights`` fetches them with huggingface_hub (which honours ``HF_HOME``, ``HF_ENDPOINT`` and
  ``HF_HUB_OFFLINE``), into the hub cache or into a folder of the user's choosing.

A third file is not TorToiSe's: the **speaker encoder** ``voices.similarity`` measures voices with (Resemblyzer
0.1.4's GE2E weights, Apache-2.0, inside its wheel on the package index). ``fetch_speaker_encoder`` gets the wheel
through pip, checks its pinned sha256 and keeps only ``pretrained.pt`` (itself pinned), in
``data_dir() / "speaker_encoder"``; ``tortoise-lab assets`` fetches it with the others.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from tortoise_lab.files import atomic_dir

__all__ = [
    "AssetError",
    "SDIST_NAME",
    "SDIST_SHA256",
    "PACKAGED_ASSETS_DIR",
    "PACKAGED_SHA256",
    "HUB_REPO",
    "WEIGHT_FILES",
    "data_dir",
    "assets_dir",
    "data_file",
    "builtin_voices_dir",
    "fetch_assets",
    "sha256_file",
    "default_models_dir",
    "find_weights",
    "download_weights",
    "SPEAKER_WHEEL_SHA256",
    "speaker_encoder_file",
    "fetch_speaker_encoder",
]

SDIST_NAME = "tortoise-tts-3.0.0.tar.gz"
SDIST_REQUIREMENT = "tortoise-tts==3.0.0"
# sha256 of the tortoise-tts 3.0.0 sdist on PyPI; a different archive is refused.
SDIST_SHA256 = "8684aac23976ffa9813a4ec074b6bff0a348ce82a1923483e57d5d4e27dd21d6"
# What we take from it, relative to its top folder.
_SDIST_DATA = ("tortoise/data/tokenizer.json", "tortoise/data/mel_norms.pth")
_SDIST_VOICES = "tortoise/voices/"
# The same two files, unmodified, inside this package (see its NOTICE): what the embedded model needs to speak offline.
PACKAGED_ASSETS_DIR = Path(__file__).resolve().parent / "data" / "official"
PACKAGED_SHA256 = {
    "tokenizer.json": "d1fa6e9b4741bb75b284331b833347c166ba8b0518e187f7370f123149ed87bb",
    "mel_norms.pth": "1f69422a8a8f344c4fca2f0c6b8d41d2151d6615b7321e48e6bb15ae949b119c",
}

HUB_REPO = "Manmay/tortoise-tts"
# The official checkpoints: file name -> what it holds.
WEIGHT_FILES = {
    "autoregressive.pth": "the autoregressive model (UnifiedVoice)",
    "diffusion_decoder.pth": "the diffusion decoder",
    "clvp2.pth": "the CLVP ranking model",
    "cvvp.pth": "the CVVP ranking model (only for cvvp_amount > 0)",
    "vocoder.pth": "the UnivNet vocoder",
    "rlg_auto.pth": "the random-voice latent generator for the autoregressive model",
    "rlg_diffuser.pth": "the random-voice latent generator for the diffusion decoder",
    "hifidecoder.pth": "upstream's fast-path HiFiGAN decoder (AR latents -> audio; not used by diffusion)",
}


class AssetError(RuntimeError):
    """An asset or weights file that is missing, damaged, or cannot be fetched."""


def data_dir() -> Path:
    """The data directory: ``$TORTOISE_LAB_HOME``, else the user's cache folder."""
    env = os.environ.get("TORTOISE_LAB_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tortoise_lab"))


def assets_dir() -> Path:
    return data_dir() / "assets"


def builtin_voices_dir() -> Path:
    return assets_dir() / "voices"


def data_file(name: str, fetch: bool = True) -> Path:
    """Path of an official asset (``tokenizer.json`` or ``mel_norms.pth``): the unpacked one in ``assets_dir()``,
    else the copy inside the package, else (``fetch``) the assets are fetched."""
    allowed = [Path(p).name for p in _SDIST_DATA]
    if name not in allowed:
        raise AssetError(f"Unknown asset {name!r}. Available: {', '.join(allowed)}.")
    path = assets_dir() / name
    if path.exists():
        return path
    packaged = PACKAGED_ASSETS_DIR / name
    if packaged.is_file():
        _check_packaged(str(packaged))
        return packaged
    if not fetch:
        raise AssetError(f"{path} is missing; run `tortoise-lab assets` to fetch the official assets.")
    fetch_assets()
    return path


@functools.lru_cache(maxsize=None)
def _check_packaged(path: str) -> None:
    """The packaged copy must be upstream's file (checked once per process)."""
    actual = sha256_file(Path(path))
    expected = PACKAGED_SHA256[Path(path).name]
    if actual != expected:
        raise AssetError(f"{path} has sha256 {actual}, not the pinned {expected}; the package's data files are "
                         "damaged: reinstall tortoise_lab, or run `tortoise-lab assets` to unpack upstream's.")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(requirement: str, filename: str, kind: str, into: Path, option: str) -> Path:
    """``filename`` from the package index, as pip fetches it (nothing installed): ``kind`` "--no-binary" for a
    source archive, "--only-binary" for a wheel; ``option`` names the flag that takes a local copy instead."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:", "--disable-pip-version-check",
               "-q", "-d", str(into), requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    path = into / filename
    if done.returncode != 0 or not path.is_file():
        raise AssetError(f"Could not download {requirement} from the package index "
                         f"({done.stderr.strip().splitlines()[-1:] or '?'}); check your network, or pass the file "
                         f"you have with `tortoise-lab assets {option} PATH`.")
    return path


def _download_sdist(into: Path) -> Path:
    return _pip_download(SDIST_REQUIREMENT, SDIST_NAME, "--no-binary", into, "--sdist")


def fetch_assets(sdist: str | Path | None = None, force: bool = False) -> Path:
    """Unpack the official assets into ``assets_dir()`` and return it.

    ``sdist`` is a local copy of the tortoise-tts 3.0.0 source archive (``$TORTOISE_LAB_SDIST`` otherwise);
    without one it is downloaded with pip. Its sha256 must equal ``SDIST_SHA256``.
    """
    target = assets_dir()
    if (target / "tokenizer.json").exists() and (target / "mel_norms.pth").exists() and not force:
        return target
    sdist = sdist or os.environ.get("TORTOISE_LAB_SDIST")
    # Unpacked into a hidden folder that becomes the assets folder in one rename: no half-unpacked assets folder is
    # ever visible, and a failure leaves the old one as it was.
    with atomic_dir(target, replace=True) as staged:
        download = staged / ".download"  # beside the unpacked files, so a failure cleans it up with them
        archive = Path(sdist) if sdist else _download_sdist(download)
        if not archive.is_file():
            raise AssetError(f"{archive} does not exist; give the path of {SDIST_NAME}.")
        actual = sha256_file(archive)
        if actual != SDIST_SHA256:
            raise AssetError(
                f"{archive} has sha256 {actual}, not the pinned {SDIST_SHA256}; "
                f"it is not the tortoise-tts 3.0.0 release, download it again."
            )
        _unpack(archive, staged)
        shutil.rmtree(download, ignore_errors=True)  # the archive is not an asset
    return target


def _unpack(archive: Path, staged: Path) -> None:
    (staged / "voices").mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            # Strip the archive's top folder ("tortoise-tts-3.0.0/").
            inner = member.name.split("/", 1)[1] if "/" in member.name else ""
            if inner in _SDIST_DATA:
                destination = staged / Path(inner).name
            elif inner.startswith(_SDIST_VOICES):
                relative = Path(inner[len(_SDIST_VOICES):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise AssetError(f"{archive} holds an unsafe path {member.name!r}; refusing to unpack it.")
                destination = staged / "voices" / relative
            else:
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink)
    missing = [Path(p).name for p in _SDIST_DATA if not (staged / Path(p).name).exists()]
    if missing:
        raise AssetError(f"{archive} lacks {', '.join(missing)}; it is not the tortoise-tts 3.0.0 source archive.")


# --------------------------------------------------------------------------------------------------- weights


def default_models_dir() -> Path | None:
    """``$TORTOISE_LAB_MODELS_DIR`` if set; otherwise None, meaning the huggingface_hub cache (``$HF_HOME``)."""
    env = os.environ.get("TORTOISE_LAB_MODELS_DIR")
    return Path(env).expanduser() if env else None


def _check_names(names) -> list[str]:
    names = list(WEIGHT_FILES) if names is None else list(names)
    unknown = [n for n in names if n not in WEIGHT_FILES]
    if unknown:
        raise AssetError(f"Unknown weights file {unknown[0]!r}. Available: {', '.join(WEIGHT_FILES)}.")
    return names


def find_weights(name: str, models_dir: str | Path | None = None) -> Path | None:
    """Local path of an official weights file, or None if it has not been downloaded. Never uses the network."""
    _check_names([name])
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    if models_dir is not None:
        path = models_dir / name
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id=HUB_REPO, filename=name)
    return Path(cached) if isinstance(cached, str) else None


def download_weights(names=None, models_dir: str | Path | None = None, progress: bool = True) -> dict[str, Path]:
    """Fetch official weights from the hub (skipping files already present) and return their paths."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars, logging

    names = _check_names(names)
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    (enable_progress_bars if progress else disable_progress_bars)()
    logging.set_verbosity_error()  # its retry chatter would bury our one-sentence error
    paths = {}
    for name in names:
        try:
            if models_dir is not None:
                models_dir.mkdir(parents=True, exist_ok=True)
                path = huggingface_hub.hf_hub_download(HUB_REPO, name, local_dir=models_dir)
            else:
                path = huggingface_hub.hf_hub_download(HUB_REPO, name)
        except Exception as error:  # the hub raises many types (offline mode, HTTP, DNS, timeouts)
            where = f"--models-dir {models_dir}" if models_dir else "a folder passed as --models-dir"
            fix = ("unset HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else f"connect to {constants.ENDPOINT}")
            raise AssetError(
                f"Could not download {name} from the model hub ({HUB_REPO}, {type(error).__name__}): "
                f"{fix} and run `tortoise-lab download` again, or copy the official .pth files into {where}."
            ) from error
        paths[name] = Path(path)
    return paths


# ------------------------------------------------------------------------------------------- speaker encoder

SPEAKER_REQUIREMENT = "Resemblyzer==0.1.4"
SPEAKER_WHEEL = "Resemblyzer-0.1.4-py3-none-any.whl"
SPEAKER_WHEEL_SHA256 = "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"
_SPEAKER_MEMBER = "resemblyzer/pretrained.pt"  # inside the wheel
SPEAKER_WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"


def speaker_encoder_file() -> Path:
    """Where the speaker encoder's weights live once fetched (``fetch_speaker_encoder``)."""
    return data_dir() / "speaker_encoder" / "pretrained.pt"


def _download_speaker_wheel(into: Path) -> Path:
    return _pip_download(SPEAKER_REQUIREMENT, SPEAKER_WHEEL, "--only-binary", into, "--speaker-wheel")


def fetch_speaker_encoder(wheel: str | Path | None = None, force: bool = False) -> Path:
    """Put Resemblyzer 0.1.4's speaker-encoder weights at ``speaker_encoder_file()`` and return the path.

    ``wheel`` is a local copy of its wheel (``$TORTOISE_LAB_SPEAKER_WHEEL`` otherwise); without one it is downloaded
    with pip (``--no-deps``: nothing is installed, only the weights are kept). Its sha256 must equal
    ``SPEAKER_WHEEL_SHA256``."""
    target = speaker_encoder_file()
    if target.is_file() and not force:
        return target
    wheel = wheel or os.environ.get("TORTOISE_LAB_SPEAKER_WHEEL")
    with atomic_dir(target.parent, replace=True) as staged:
        download = staged / ".download"
        wheel = Path(wheel) if wheel else _download_speaker_wheel(download)
        if not wheel.is_file():
            raise AssetError(f"{wheel} does not exist; give the path of {SPEAKER_WHEEL}.")
        actual = sha256_file(wheel)
        if actual != SPEAKER_WHEEL_SHA256:
            raise AssetError(f"{wheel} has sha256 {actual}, not the pinned {SPEAKER_WHEEL_SHA256}; it is not the "
                             f"{SPEAKER_REQUIREMENT} wheel, download it again.")
        with zipfile.ZipFile(wheel) as archive, archive.open(_SPEAKER_MEMBER) as source, \
                open(staged / target.name, "wb") as sink:
            shutil.copyfileobj(source, sink)
        if sha256_file(staged / target.name) != SPEAKER_WEIGHTS_SHA256:
            raise AssetError(f"{wheel} holds a different {_SPEAKER_MEMBER} than the one tortoise_lab was tested "
                             "with; download the wheel again.")
        shutil.rmtree(download, ignore_errors=True)
    return target
