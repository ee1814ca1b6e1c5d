"""What a model set holds: its networks, built at one size and loaded from the official files or left random, and
the stages that differ between sets (its ranker, its decoder, its sampling quirks, its limits), so the pipeline
asks the set instead of branching on which one it is.

``official_models`` loads the official checkpoints strictly. CVVP and the random-voice generators are only
loaded the first time a run needs them. ``random_models`` builds the same stack with random weights (seeded), so
every command can be tried without weights; what it says is noise. ``embedded_models`` loads the small model
shipped inside the package. ``resolve_models`` is the one place that chooses among them, for the CLI, the
notebooks and the voice tools alike. ``ModelSet.chain`` gives the stages a decoder choice runs (the main chain, or
the HiFiGAN fast path where the set has one).

Longer than 400 lines because each set's builder (official, random, embedded) and the choice among them read best
beside the one dataclass they fill, and each of them knows the files its set loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tortoise_lab.assets import find_weights
from tortoise_lab.checkpoints import FORMATS, load_weights
from tortoise_lab.config import Settings
from tortoise_lab.device import choose_device
from tortoise_lab.stages.decode import CodesGriffinLim, DiffusionVocoder, HifiganVocoder
from tortoise_lab.stages.pacing import SpeechRate
from tortoise_lab.stages.rerank import ClvpRanker, LikelihoodRanker, NoRanking
from tortoise_lab.stages.sampling import NO_QUIRKS, UPSTREAM_QUIRKS, SamplingQuirks
from tortoise_lab.models.clvp import CLVP, CLVPConfig
from tortoise_lab.models.cvvp import CVVP, CVVPConfig
from tortoise_lab.models.diffusion import DiffusionConfig, DiffusionDecoder
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
from tortoise_lab.models.hifigan import HifiganConfig, HifiganDecoder
from tortoise_lab.models.random_latent import RandomLatentConfig, RandomLatentConverter
from tortoise_lab.models.vocoder import UnivNetGenerator, VocoderConfig

__all__ = ["WeightsMissing", "ModelUnavailable", "ModelSet", "Chain", "HIFIGAN_WEIGHTS", "official_models",
           "random_models", "embedded_models",
           "embedded_available", "embedded_description", "EMBEDDED_CHAIN", "EMBEDDED_MEL_DECODERS", "CODE_DECODER_FILE",
           "ALWAYS_NEEDED", "RANDOM_VOICE_WEIGHTS", "CVVP_WEIGHTS", "needed_weights",
           "missing_weights", "EMBEDDED_DIR", "EMBEDDED_DEFAULT_VOICE", "MODEL_CHOICES", "ModelChoice",
           "resolve_models", "TINY_WEIGHTS_SEED"]

# Files every synthesis needs; CVVP (cvvp_amount > 0) and the random-voice generators come on demand.
ALWAYS_NEEDED = ("autoregressive.pth", "diffusion_decoder.pth", "clvp2.pth", "vocoder.pth")
RANDOM_VOICE_WEIGHTS = ("rlg_auto.pth", "rlg_diffuser.pth")
CVVP_WEIGHTS = ("cvvp.pth",)
HIFIGAN_WEIGHTS = "hifidecoder.pth"  # the fast path's decoder (decoder "hifigan"), loaded on first use
MODEL_CHOICES = ("auto", "official", "embedded", "tiny")
TINY_WEIGHTS_SEED = 0  # "tiny" always builds the same random weights, so seeds reproduce across runs


class WeightsMissing(FileNotFoundError):
    """Official weights that have not been downloaded."""


class ModelUnavailable(ValueError):
    """This kind of model set has no such model at all (the embedded set has no CVVP and no random voice)."""


@dataclass(frozen=True)
class Chain:
    """What a decoder choice (``Settings.decoder``) runs after sampling: the ranker and the decoder (stages/)."""

    ranker: ClvpRanker | LikelihoodRanker | NoRanking
    decoder: DiffusionVocoder | CodesGriffinLim | HifiganVocoder


@dataclass
class ModelSet:
    """gpt, diffusion, clvp and vocoder are always there; ``cvvp`` and ``random_latents`` load on first use."""

    size: str
    description: str  # what the audio comes from, for sidecars and notebooks
    fingerprint: str  # identifies the weights (cache keys): file names, sizes and times, or the random seed
    gpt: UnifiedVoice
    diffusion: DiffusionDecoder | None  # None for the embedded model (code decoder + Griffin-Lim instead)
    clvp: CLVP | None
    vocoder: UnivNetGenerator | None
    _cvvp_loader: Callable[[], CVVP] = field(repr=False)
    _rlg_loader: Callable[[], tuple[RandomLatentConverter, RandomLatentConverter]] = field(repr=False)
    kind: str = "official"  # "official" (TorToiSe v2 architecture), "random", or "embedded": for people, not code
    quantizer: object | None = None  # the embedded model's codebook (codes -> mel)
    ranker: ClvpRanker | LikelihoodRanker | None = None  # scores sampled code rows (stages/rerank.py)
    decoder: DiffusionVocoder | CodesGriffinLim | None = None  # chosen rows -> audio (stages/decode.py)
    quirks: SamplingQuirks = UPSTREAM_QUIRKS  # what its sampling reproduces of upstream's generate()
    has_random_voice: bool = True  # whether it has the random-latent generators (the "random" voice)
    # How long a chunk of text may be, (desired, max) characters as text.split_text takes them: None for upstream's
    # lengths. The embedded set says what it was trained on (its manifest's speech profile).
    chunk_lengths: tuple[int, int] | None = None
    # The speaking rates its voices read at: each chunk's duration is checked against it (stages/pacing.py);
    # None where the audio says nothing (random weights).
    speech_rate: SpeechRate | None = None
    # Per preset, what this set draws differently from the preset table (config.PRESETS): its own budget.
    presets: dict[str, dict] = field(default_factory=dict)
    # Builds or loads the fast path's HiFiGAN (decoder "hifigan") on first use; None: this set has none.
    _hifigan_loader: Callable[[], HifiganDecoder] | None = field(default=None, repr=False)
    _cvvp: CVVP | None = field(default=None, repr=False)
    _rlg: tuple[RandomLatentConverter, RandomLatentConverter] | None = field(default=None, repr=False)
    _hifigan: HifiganDecoder | None = field(default=None, repr=False)
    device: torch.device = torch.device("cpu")

    def __post_init__(self):
        if self.ranker is None:
            self.ranker = ClvpRanker(self.clvp, lambda: self.cvvp)
        if self.decoder is None:
            self.decoder = DiffusionVocoder(self.gpt, self.diffusion, self.vocoder)

    @property
    def max_mel_tokens(self) -> int:
        """The most codes its AR model draws for one text."""
        return self.gpt.config.max_mel_tokens

    @property
    def max_text_tokens(self) -> int:
        """The most text tokens its AR model takes, upstream's trailing 0 included."""
        return self.gpt.config.max_text_tokens

    def fit(self, settings: Settings) -> tuple[Settings, list[str]]:
        """``settings`` within what this set can do, and a note for each change. The preset's values become this
        set's own (``presets``) where the user chose none. A default (the preset's) beyond a limit is clamped to
        it; a value the user chose (``settings.explicit``) is refused: ValueError, one sentence naming the
        setting and the limit."""
        own = {k: v for k, v in self.presets.get(settings.preset, {}).items() if k not in settings.explicit}
        if "num_autoregressive_samples" in own:  # never fewer samples than the candidates asked for
            own["num_autoregressive_samples"] = max(own["num_autoregressive_samples"], settings.candidates)
        if own:
            settings = settings.replace(explicit=False, **own)
        settings, notes = self._fit_chain(settings)
        limit = self.max_mel_tokens
        if settings.max_mel_tokens <= limit:
            return settings, notes
        if "max_mel_tokens" in settings.explicit:
            raise ValueError(f"max_mel_tokens {settings.max_mel_tokens} is more than this model can draw; "
                             f"use at most {limit}.")
        note = (f"This model draws at most {limit} codes, so max_mel_tokens is {limit} (the preset asks for "
                f"{settings.max_mel_tokens}).")
        return settings.replace(max_mel_tokens=limit, explicit=False), notes + [note]

    def _fit_chain(self, settings: Settings) -> tuple[Settings, list[str]]:
        """The settings a decoder choice runs with: a chain that draws one sample (the fast path) refuses the
        settings it does not use when the user chose them, and says in one note that the preset's are not used."""
        decoder = self.chain(settings.decoder).decoder  # ModelUnavailable or WeightsMissing now, before any work
        unused = decoder.unused_settings
        if not unused:
            return settings, []
        chosen = [name for name in unused if name in settings.explicit]
        if chosen:
            raise ValueError(f"The {settings.decoder} decoder draws one sample and makes its audio without ranking "
                             f"or diffusion, so it does not use {', '.join(chosen)}; leave "
                             f"{'it' if len(chosen) == 1 else 'them'} out.")
        note = (f"The {settings.decoder} decoder draws one sample and turns its latents straight into audio "
                f"(upstream's fast path), so the preset's {settings.num_autoregressive_samples} samples, ranking "
                "and diffusion settings are not used.")
        return settings.replace(explicit=False, num_autoregressive_samples=1, candidates=1), [note]

    def chain(self, decoder: str = "diffusion") -> Chain:
        """The stages ``decoder`` (one of ``config.DECODERS``) runs on this set: "diffusion", its main chain (ranker
        and decoder), or "hifigan", the fast path (no ranking, HiFiGAN; loads hifidecoder.pth on first use)."""
        if decoder == "hifigan":
            return Chain(NoRanking(), HifiganVocoder(self.gpt, self.hifigan))
        return Chain(self.ranker, self.decoder)

    @property
    def has_hifigan(self) -> bool:
        """Whether this kind of set has the fast path's HiFiGAN (its weights may still be missing)."""
        return self._hifigan_loader is not None

    @property
    def hifigan(self) -> HifiganDecoder:
        """The fast path's decoder, loaded on first use; ModelUnavailable for a set without one."""
        if self._hifigan_loader is None:
            raise ModelUnavailable(f"Decoder 'hifigan' needs the official model's HiFiGAN, and {self.description} "
                                   "has none; use decoder 'diffusion' (its own chain) or the official weights.")
        if self._hifigan is None:
            self._hifigan = self._hifigan_loader().eval().to(self.device)
        return self._hifigan

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
        return (names + (["cvvp"] if self._cvvp is not None else []) + (["random_latents"] if self._rlg else [])
                + (["hifigan"] if self._hifigan is not None else []))

    def to(self, device: str | torch.device | None = None) -> "ModelSet":
        """Move every loaded network to ``device`` (None: ``device.choose_device``'s choice)."""
        self.device = choose_device(None if device is None else str(device))
        for module in (self.gpt, self.diffusion, self.clvp, self.vocoder, self._cvvp, self._hifigan,
                       *(self._rlg or ())):
            if module is not None:
                module.to(self.device)
        return self


def _eval(module: nn.Module) -> nn.Module:
    return module.eval().requires_grad_(False)


def official_models(models_dir: str | Path | None = None, device: str | torch.device | None = None,
                    size: str = "tortoise-v2") -> ModelSet:
    """Load the official checkpoints (strict keys, weights-only). Raises ``WeightsMissing`` naming what to get.

    ``size`` other than tortoise-v2 loads files of the official names and format saved at that size (tests).
    """
    missing = missing_weights(models_dir)
    if missing:
        raise WeightsMissing(missing_weights_message(missing, models_dir))

    def load(module: nn.Module, name: str, fmt: str) -> nn.Module:
        path = find_weights(name, models_dir)
        if path is None:
            raise WeightsMissing(missing_weights_message([name], models_dir))
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
        _hifigan_loader=lambda: _load_hifigan(gpt, size, models_dir),
        speech_rate=OFFICIAL_SPEECH_RATE if size == "tortoise-v2" else None,  # other sizes: test files, noise
    ).to(device)


EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / "embedded"
# The voice the embedded model speaks in when none is given (it has no random voice): a project voice made from the
# espeak-ng speaker it was trained on. Its clips ship inside the package too (tortoise_lab/data/voices/, which
# load_voice searches), as do the tokenizer and mel norms it needs (tortoise_lab/data/official/): an installed wheel
# speaks offline.
EMBEDDED_DEFAULT_VOICE = "espeak_us_m3"
# The embedded set's mel decoders, by the name a manifest gives them ("mel_decoder"), and the vocoder they feed:
# what `python -m tortoise_lab.train decoders` and `codedecoder` measured (README). The shipped set runs
# EMBEDDED_CHAIN; a set made before the code decoder names the code book, and runs it.
EMBEDDED_MEL_DECODERS = {"code-decoder": "learned code decoder", "codebook": "codebook mel decoder"}
EMBEDDED_VOCODER = "griffin-lim"
EMBEDDED_CHAIN = ("code-decoder", EMBEDDED_VOCODER)
CODE_DECODER_FILE = "code_decoder.safetensors"  # the code decoder's weights, beside the quantiser's


def embedded_description(mel_decoder: str) -> str:
    """What an embedded set whose manifest names ``mel_decoder`` speaks with (sidecars' ``model``)."""
    return (f"the embedded tiny model (trained on espeak-ng speech; {EMBEDDED_MEL_DECODERS[mel_decoder]} + "
            "Griffin-Lim)")


EMBEDDED_DESCRIPTION = embedded_description(EMBEDDED_CHAIN[0])
# A chunk's speech may be this much slower or faster than the slowest (1st percentile) and fastest (99th) rate
# measured before it counts as clearly wrong: drawn speech varies more than espeak-ng's own.
RATE_MARGIN = 1.5
# The official model's voices: upstream's voice clips come without transcripts, so their rates cannot be measured
# here. The range is espeak-ng's on the embedded corpus (11.4-18.7 letters a second, 1st-99th percentile,
# `python -m tortoise_lab.train profile`) widened twice as far as the embedded model's: real speakers vary more.
OFFICIAL_SPEECH_RATE = SpeechRate(11.4 / 2 / RATE_MARGIN, 18.7 * 2 * RATE_MARGIN,
                                  "espeak-ng's rates on the embedded corpus, widened for real speakers")
SHORTEST_CHUNK_LENGTH = 20  # characters: a profile never makes chunks shorter than this
# The embedded set's own sample budgets, from `python -m tortoise_lab.train samples` (README "The embedded model"):
# 1, 2 and 4 samples rank to the same quality within its error, 8 is better and 32 best; 2 keeps the main job
# (fast) under a third of real time on a 2-core CPU, where 4 and 8 do not. Ranking: its own likelihood at every
# budget (it has no CLVP).
EMBEDDED_PRESETS: dict[str, dict] = {
    "ultra_fast": {"num_autoregressive_samples": 1},
    "fast": {"num_autoregressive_samples": 2},
    "standard": {"num_autoregressive_samples": 8},
    "high_quality": {"num_autoregressive_samples": 32},
    "ultra_fast_int8_dpm": {"num_autoregressive_samples": 1},
}


def embedded_available(folder: str | Path | None = None) -> bool:
    return (Path(folder or EMBEDDED_DIR) / "config.json").is_file()


def embedded_models(folder: str | Path | None = None, device: str | torch.device | None = None) -> ModelSet:
    """The small model shipped inside the package (see ``tortoise_lab.train``): its AR model, code book and mel
    decoder (the learned code decoder, or the code book itself for sets made before it), each file checked against
    the sha256 in its manifest."""
    import json

    from tortoise_lab.assets import sha256_file
    from tortoise_lab.checkpoints import CheckpointError, check_keys, read_state_dict
    from tortoise_lab.models.code_decoder import CodeDecoder
    from tortoise_lab.models.quantizer import KMeansQuantizer

    folder = Path(folder or EMBEDDED_DIR)
    if not embedded_available(folder):
        raise WeightsMissing(f"The embedded model is not in {folder}; train it with `python -m tortoise_lab.train` "
                             "or use the official weights (`tortoise-lab download`).")
    manifest = json.loads((folder / "config.json").read_text())
    mel_name, vocoder = manifest.get("mel_decoder"), manifest.get("vocoder")
    if mel_name not in EMBEDDED_MEL_DECODERS or vocoder != EMBEDDED_VOCODER:
        raise CheckpointError(f"{folder / 'config.json'} asks for mel decoder {mel_name!r} and vocoder {vocoder!r}; "
                              f"this version runs embedded sets with mel decoder "
                              f"{' or '.join(map(repr, EMBEDDED_MEL_DECODERS))} and vocoder {EMBEDDED_VOCODER!r} "
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

    quantizer = KMeansQuantizer.load(folder / "quantizer.safetensors")
    # The code decoder is built around the quantiser's code book and loads strictly (CheckpointError names the file).
    mel_decoder = (CodeDecoder.load(folder / CODE_DECODER_FILE, quantizer.codebook) if mel_name == "code-decoder"
                   else quantizer)
    gpt = _eval(gpt)
    return ModelSet(
        size="embedded", kind="embedded", description=embedded_description(mel_name),
        fingerprint=manifest["sha256"]["autoregressive.safetensors"][:16],
        gpt=gpt, diffusion=None, clvp=None, vocoder=None,
        _cvvp_loader=unavailable("CVVP model"), _rlg_loader=unavailable("random-voice generator"),
        quantizer=quantizer, ranker=LikelihoodRanker(gpt),
        decoder=CodesGriffinLim(mel_decoder, gpt.config.stop_mel_token), quirks=NO_QUIRKS, has_random_voice=False,
        # Its presets draw as many codes as it can (the official 500 would be clamped, with a note, on every run).
        presets={name: {**own, "max_mel_tokens": gpt.config.max_mel_tokens} for name, own in EMBEDDED_PRESETS.items()},
        **_trained_speech(manifest.get("speech")),
    ).to(device)


def _trained_speech(profile: dict | None) -> dict:
    """ModelSet fields from a manifest's speech profile (``train.corpus.speech_profile``): chunks within the text
    lengths it was trained on (at most their 99th percentile; one sentence a chunk for a model trained on single
    sentences, else sentences gathered up to its median length) and the duration check's rates (the corpus's 1st
    to 99th percentile, widened by ``RATE_MARGIN``). Profiles older than the set: ``python -m tortoise_lab.train profile``."""
    if not profile:
        return {}
    rates, lengths = profile["letters_per_second"], profile["text_characters"]
    longest = max(SHORTEST_CHUNK_LENGTH, int(lengths["p99"]))
    desired = 1 if profile.get("most_sentences", 1) == 1 else min(longest, int(lengths["p50"]))
    return {"chunk_lengths": (desired, longest),
            "speech_rate": SpeechRate(rates["p1"] / RATE_MARGIN, rates["p99"] * RATE_MARGIN,
                                      f"its training corpus ({profile['utterances']} utterances)")}


def _hifigan_config(gpt: UnifiedVoice, size: str) -> HifiganConfig:
    """The HiFiGAN of a size, reading latents as wide as the AR model's (1024 at the official size)."""
    width = gpt.config.model_dim
    return dataclasses.replace(HifiganConfig.from_name(size), in_channels=width, cond_channels=width)


def _load_hifigan(gpt: UnifiedVoice, size: str, models_dir: str | Path | None) -> HifiganDecoder:
    path = find_weights(HIFIGAN_WEIGHTS, models_dir)
    if path is None:
        where = f"--models-dir {models_dir}" if models_dir else "the model-hub cache"
        fetch = f"tortoise-lab download --files {HIFIGAN_WEIGHTS}" + (
            f" --models-dir {models_dir}" if models_dir else "")
        raise WeightsMissing(f"decoder 'hifigan' needs {HIFIGAN_WEIGHTS}, which is not in {where}: run `{fetch}` "
                             "first, or use decoder 'diffusion'.")
    return _eval(load_weights(HifiganDecoder(_hifigan_config(gpt, size)), path, FORMATS["hifigan"]))


def _random_hifigan(gpt: UnifiedVoice, size: str, seed: int) -> HifiganDecoder:
    """A seeded random HiFiGAN, built apart from the global generator's stream (built lazily, mid-run)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _eval(HifiganDecoder(_hifigan_config(gpt, size)))


def _files_fingerprint(paths: list[Path]) -> str:
    """Cheap identity of weight files (hashing 2 GB on every run would cost more than the cache saves)."""
    import hashlib

    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _random_latent_configs(gpt: UnifiedVoice, diffusion: DiffusionDecoder) -> tuple[RandomLatentConfig, ...]:
    """The generators' widths follow the latents they stand in for (1024 and 2048 at the official size)."""
    return RandomLatentConfig(gpt.config.model_dim), RandomLatentConfig(2 * diffusion.config.model_channels)


def random_models(size: str = "tiny", seed: int = 0, device: str | torch.device | None = None) -> ModelSet:
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
        _hifigan_loader=lambda: _random_hifigan(gpt, size, seed + 1),
    ).to(device)


# ------------------------------------------------------------------------------------------- choosing a set


def needed_weights(random_voice: bool = False, cvvp: bool = False) -> tuple[str, ...]:
    """The official files a run needs: always ``ALWAYS_NEEDED``, plus the random-voice generators and CVVP."""
    return ALWAYS_NEEDED + (RANDOM_VOICE_WEIGHTS if random_voice else ()) + (CVVP_WEIGHTS if cvvp else ())


def missing_weights(models_dir: str | Path | None = None, names: tuple[str, ...] = ALWAYS_NEEDED) -> list[str]:
    """Which of ``names`` are not downloaded (in ``models_dir`` or the model-hub cache)."""
    return [name for name in names if find_weights(name, models_dir) is None]


def missing_weights_message(missing: list[str], models_dir: str | Path | None = None) -> str:
    """The one sentence for official weights that are not here, and what to do."""
    where = f"--models-dir {models_dir}" if models_dir else "the model-hub cache"
    fetch = "tortoise-lab download" + (f" --models-dir {models_dir}" if models_dir else "")
    return (f"speaking with the official model needs its weights, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in {where}: run `{fetch}` (about 4 GB) first, "
            "or add --tiny to try the pipeline on random weights.")


@dataclass
class ModelChoice:
    """The model set a run uses, which one it is, the voice it speaks in by default, and why it was chosen."""

    name: str  # "official", "embedded" or "tiny"
    models: ModelSet
    message: str  # one sentence for the user: which model speaks, and how to get the official one if not it

    @property
    def default_voice(self) -> str:
        """A voice every set of this kind can speak in: the random voice, or the embedded model's own."""
        return "random" if self.models.has_random_voice else EMBEDDED_DEFAULT_VOICE


def resolve_models(choice: str = "auto", models_dir: str | Path | None = None, device: str | torch.device | None = None,
                   random_voice: bool = False, cvvp: bool = False, size: str = "tortoise-v2") -> ModelChoice:
    """Load the model set ``choice`` names (one of ``MODEL_CHOICES``) on ``device`` (None: the best available).

    auto: the official weights when every file the run needs (``random_voice``, ``cvvp``) is here, else the
    embedded model. official: those weights or ``WeightsMissing`` with the sentence that says how to get them.
    embedded: the small model shipped in the package. tiny: random tiny weights (noise; for trying the pipeline).
    ``size``: official-format files saved at another size (tests).
    """
    if choice not in MODEL_CHOICES:
        raise ValueError(f"Unknown model {choice!r}. Available: {', '.join(MODEL_CHOICES)}.")
    device = choose_device(None if device is None else str(device))
    if choice == "tiny":
        return ModelChoice("tiny", random_models("tiny", seed=TINY_WEIGHTS_SEED, device=device),
                           "Using random tiny weights: the audio is noise, not speech (for trying the pipeline).")
    missing = missing_weights(models_dir, needed_weights(random_voice, cvvp))
    if choice == "official" or (choice == "auto" and not missing):
        if missing:
            raise WeightsMissing(missing_weights_message(missing, models_dir))
        return ModelChoice("official", official_models(models_dir, device, size), "Using the official TorToiSe weights.")
    if not embedded_available():
        if choice == "auto":
            raise WeightsMissing(missing_weights_message(missing, models_dir))
        raise WeightsMissing("the embedded model is not in this installation; train it with "
                             "`python -m tortoise_lab.train` or use the official weights.")
    why = ("Official weights not found: speaking with the embedded tiny model (trained on espeak-ng speech). "
           "`tortoise-lab download` fetches the official model." if choice == "auto" else
           f"Using {EMBEDDED_DESCRIPTION}.")
    return ModelChoice("embedded", embedded_models(device=device), why)
