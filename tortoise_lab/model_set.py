"""The networks one synthesis uses, built at one size and loaded from the official files or left random.

``official_models`` loads the official checkpoints strictly. CVVP and the random-voice generators are only
loaded the first time a run needs them. ``random_models`` builds the same stack with random weights (seeded), so
every command can be tried without weights; what it says is noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tortoise_lab.assets import WEIGHT_FILES, find_weights
from tortoise_lab.checkpoints import FORMATS, load_weights
from tortoise_lab.models.clvp import CLVP, CLVPConfig
from tortoise_lab.models.cvvp import CVVP, CVVPConfig
from tortoise_lab.models.diffusion import DiffusionConfig, DiffusionDecoder
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
from tortoise_lab.models.random_latent import RandomLatentConfig, RandomLatentConverter
from tortoise_lab.models.vocoder import UnivNetGenerator, VocoderConfig

__all__ = ["WeightsMissing", "ModelUnavailable", "ModelSet", "official_models", "random_models", "embedded_models", "embedded_available",
           "ALWAYS_NEEDED", "EMBEDDED_DIR"]

# Files every synthesis needs; CVVP (cvvp_amount > 0) and the random-voice generators come on demand.
ALWAYS_NEEDED = ("autoregressive.pth", "diffusion_decoder.pth", "clvp2.pth", "vocoder.pth")


class WeightsMissing(FileNotFoundError):
    """Official weights that have not been downloaded."""


class ModelUnavailable(ValueError):
    """This kind of model set has no such model at all (the embedded set has no CVVP and no random voice)."""


@dataclass
class ModelSet:
    """gpt, diffusion, clvp and vocoder are always there; ``cvvp`` and ``random_latents`` load on first use."""

    size: str
    description: str  # what the audio comes from, for sidecars and notebooks
    fingerprint: str  # identifies the weights (cache keys): file names, sizes and times, or the random seed
    gpt: UnifiedVoice
    diffusion: DiffusionDecoder | None  # None for the embedded model (codebook decoder + Griffin-Lim instead)
    clvp: CLVP | None
    vocoder: UnivNetGenerator | None
    _cvvp_loader: Callable[[], CVVP] = field(repr=False)
    _rlg_loader: Callable[[], tuple[RandomLatentConverter, RandomLatentConverter]] = field(repr=False)
    kind: str = "official"  # "official" (TorToiSe v2 architecture), "random", or "embedded"
    quantizer: object | None = None  # the embedded model's codebook (codes -> mel)
    _cvvp: CVVP | None = field(default=None, repr=False)
    _rlg: tuple[RandomLatentConverter, RandomLatentConverter] | None = field(default=None, repr=False)
    device: torch.device = torch.device("cpu")

    @property
    def cvvp(self) -> CVVP:
        if self._cvvp is None:
            self._cvvp = self._cvvp_loader().eval().to(self.device)
        return self._cvvp

    def has_cvvp(self) -> bool:
        """Whether a CVVP model can be had: loaded (on first use), or False when its weights are missing or this
        model set has none."""
        try:
            self.cvvp
        except (FileNotFoundError, ModelUnavailable):  # WeightsMissing is a FileNotFoundError
            return False
        return True

    @property
    def random_latents(self) -> tuple[RandomLatentConverter, RandomLatentConverter]:
        """(autoregressive, diffusion) random-latent generators."""
        if self._rlg is None:
            self._rlg = tuple(m.eval().to(self.device) for m in self._rlg_loader())
        return self._rlg

    @property
    def loaded(self) -> list[str]:
        names = ["gpt", "diffusion", "clvp", "vocoder"]
        return names + (["cvvp"] if self._cvvp is not None else []) + (["random_latents"] if self._rlg else [])

    def to(self, device: torch.device) -> "ModelSet":
        self.device = torch.device(device)
        for module in (self.gpt, self.diffusion, self.clvp, self.vocoder, self._cvvp, *(self._rlg or ())):
            if module is not None:
                module.to(self.device)
        return self


def _eval(module: nn.Module) -> nn.Module:
    return module.eval().requires_grad_(False)


def official_models(models_dir: str | Path | None = None, device: str | torch.device = "cpu",
                    size: str = "tortoise-v2") -> ModelSet:
    """Load the official checkpoints (strict keys, weights-only). Raises ``WeightsMissing`` naming what to get.

    ``size`` other than tortoise-v2 loads files of the official names and format saved at that size (tests).
    """
    missing = [name for name in ALWAYS_NEEDED if find_weights(name, models_dir) is None]
    if missing:
        where = f"--models-dir {models_dir}" if models_dir else "the model-hub cache"
        raise WeightsMissing(
            f"The official weights {', '.join(missing)} are not in {where}: run `tortoise-lab download"
            f"{' --models-dir ' + str(models_dir) if models_dir else ''}` (about 4 GB), or use --tiny to try "
            f"the pipeline on random weights."
        )

    def load(module: nn.Module, name: str, fmt: str) -> nn.Module:
        path = find_weights(name, models_dir)
        if path is None:
            raise WeightsMissing(f"{name} ({WEIGHT_FILES[name]}) is not downloaded: run `tortoise-lab download`.")
        return _eval(load_weights(module, path, FORMATS[fmt]))

    gpt = load(UnifiedVoice(GPTConfig.from_name(size)), "autoregressive.pth", "autoregressive")
    diffusion = load(DiffusionDecoder(DiffusionConfig.from_name(size)), "diffusion_decoder.pth", "diffusion")

    def rlg() -> tuple[RandomLatentConverter, RandomLatentConverter]:
        widths = _random_latent_configs(gpt, diffusion)
        return (load(RandomLatentConverter(widths[0]), "rlg_auto.pth", "rlg_auto"),
                load(RandomLatentConverter(widths[1]), "rlg_diffuser.pth", "rlg_diffuser"))

    return ModelSet(
        size=size,
        description="the official TorToiSe v2 weights" if size == "tortoise-v2" else f"{size} weights from {models_dir}",
        fingerprint=_files_fingerprint([find_weights(n, models_dir) for n in ("autoregressive.pth", "diffusion_decoder.pth")]),
        gpt=gpt,
        diffusion=diffusion,
        clvp=load(CLVP(CLVPConfig.from_name(size)), "clvp2.pth", "clvp"),
        vocoder=load(UnivNetGenerator(VocoderConfig.from_name(size)), "vocoder.pth", "vocoder"),
        _cvvp_loader=lambda: load(CVVP(CVVPConfig.from_name(size)), "cvvp.pth", "cvvp"),
        _rlg_loader=rlg,
    ).to(device)


EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / "embedded"
# The voice the embedded model speaks in when none is given (it has no random voice): a project voice made from the
# espeak-ng speaker it was trained on.
EMBEDDED_DEFAULT_VOICE = "espeak_us_m3"
# The embedded set's mel decoder and vocoder: what `python -m tortoise_lab.train.decoders` measured best (README).
EMBEDDED_CHAIN = ("codebook", "griffin-lim")
EMBEDDED_DESCRIPTION = "the embedded tiny model (trained on espeak-ng speech; codebook mel decoder + Griffin-Lim)"


def embedded_available(folder: str | Path | None = None) -> bool:
    return (Path(folder or EMBEDDED_DIR) / "config.json").is_file()


def embedded_models(folder: str | Path | None = None, device: str | torch.device = "cpu") -> ModelSet:
    """The small model shipped inside the package (see ``tortoise_lab.train``): its AR model and code book, each
    file checked against the sha256 in its manifest."""
    import json

    from tortoise_lab.assets import sha256_file
    from tortoise_lab.checkpoints import CheckpointError, check_keys, read_state_dict
    from tortoise_lab.models.quantizer import KMeansQuantizer

    folder = Path(folder or EMBEDDED_DIR)
    if not embedded_available(folder):
        raise WeightsMissing(f"The embedded model is not in {folder}; train it with `python -m tortoise_lab.train` "
                             "or use the official weights (`tortoise-lab download`).")
    manifest = json.loads((folder / "config.json").read_text())
    chain = (manifest.get("mel_decoder"), manifest.get("vocoder"))
    if chain != EMBEDDED_CHAIN:
        raise CheckpointError(f"{folder / 'config.json'} asks for mel decoder {chain[0]!r} and vocoder {chain[1]!r}; "
                              f"this version runs embedded sets with {EMBEDDED_CHAIN[0]!r} and {EMBEDDED_CHAIN[1]!r} "
                              "only: update tortoise_lab or use a set it made.")
    for name, expected in manifest["sha256"].items():
        actual = sha256_file(folder / name)
        if actual != expected:
            raise CheckpointError(f"{folder / name} has sha256 {actual}, not {expected} from its manifest; "
                                  "the embedded model files are damaged: reinstall the package.")
    gpt = UnifiedVoice(GPTConfig(**manifest["gpt_config"]))
    state = {k: v.float() for k, v in read_state_dict(folder / "autoregressive.safetensors").items()}
    check_keys(gpt, state, str(folder / "autoregressive.safetensors"))
    gpt.load_state_dict(state, strict=True)

    def unavailable(what: str):
        def refuse():
            raise ModelUnavailable(f"The embedded model has no {what}; use a voice with clips (e.g. espeak_en_us) "
                             "or the official weights.")
        return refuse

    return ModelSet(
        size="embedded", kind="embedded", description=EMBEDDED_DESCRIPTION,
        fingerprint=manifest["sha256"]["autoregressive.safetensors"][:16],
        gpt=_eval(gpt), diffusion=None, clvp=None, vocoder=None,
        _cvvp_loader=unavailable("CVVP model"), _rlg_loader=unavailable("random-voice generator"),
        quantizer=KMeansQuantizer.load(folder / "quantizer.safetensors"),
    ).to(device)


def _files_fingerprint(paths: list[Path]) -> str:
    """Cheap identity of weight files (hashing 2 GB on every run would cost more than the cache saves)."""
    import hashlib

    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _random_latent_configs(gpt: UnifiedVoice, diffusion: DiffusionDecoder) -> tuple[RandomLatentConfig, ...]:
    """The generators' widths follow the latents they stand in for (1024 and 2048 at the official size)."""
    return RandomLatentConfig(gpt.config.model_dim), RandomLatentConfig(2 * diffusion.config.model_channels)


def random_models(size: str = "tiny", seed: int = 0, device: str | torch.device = "cpu") -> ModelSet:
    """The whole stack at ``size`` with seeded random weights: every command works, the audio is noise."""
    torch.manual_seed(seed)  # module initialisers draw from the global generator; seed it for repeatable weights
    gpt = _eval(UnifiedVoice(GPTConfig.from_name(size)))
    diffusion = _eval(DiffusionDecoder(DiffusionConfig.from_name(size)))
    rlg = tuple(_eval(RandomLatentConverter(config)) for config in _random_latent_configs(gpt, diffusion))
    cvvp = _eval(CVVP(CVVPConfig.from_name(size)))
    return ModelSet(
        size=size,
        kind="random",
        description=f"random {size} weights (noise, for trying the pipeline)",
        fingerprint=f"random:{size}:{seed}",
        gpt=gpt,
        diffusion=diffusion,
        clvp=_eval(CLVP(CLVPConfig.from_name(size))),
        vocoder=_eval(UnivNetGenerator(VocoderConfig.from_name(size))),
        _cvvp_loader=lambda: cvvp,
        _rlg_loader=lambda: rlg,
    ).to(device)
