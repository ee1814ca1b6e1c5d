"""The flags speak and read share (voices and output, the model and the run, tuning and speed) and the model flags
``voices match`` takes too. Each flag's value reaches ``Settings`` through ``common.overrides``."""

from __future__ import annotations

import argparse

from tortoise_lab.cli.common import DEFAULT_OUTPUT_DIR, TUNING_OPTIONS, seed_value
from tortoise_lab.config import DECODERS, DEFAULT_BATCH_SIZE, PRESETS, SAMPLERS, SEED_RANGE
from tortoise_lab.model_set import MODEL_CHOICES

__all__ = ["add_synthesis_options", "add_model_options"]


def _text_split(value: str) -> tuple[int, int]:
    parts = value.split(",")
    try:
        desired, maximum = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected desired,max characters like 200,300, got {value!r}") from None
    return desired, maximum


def add_synthesis_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """Options speak and read share: voices, presets, outputs, the model, and every tuning knob."""
    _add_voice_options(parser, verb)
    _add_run_options(parser)
    _add_tuning_options(parser)


def _add_voice_options(parser: argparse.ArgumentParser, verb: str) -> None:
    flag = argparse.BooleanOptionalAction
    voices = parser.add_argument_group("voices and output")
    voices.add_argument("-v", "--voice", default="random", metavar="VOICE",
                        help="voice name; a&b blends voices; several separated by commas are spoken in turn; "
                             "'all' is every available voice (default: random)")
    voices.add_argument("-V", "--voices-dir", action="append", default=None, metavar="DIR",
                        help="a folder of extra voices (one sub-folder of clips per voice), searched first; "
                             "repeat for several")
    voices.add_argument("-l", "--list-voices", action=flag, default=False,
                        help="print every available voice with its folder, and exit")
    voices.add_argument("-p", "--preset", default="fast", metavar="PRESET",
                        help=f"quality/speed preset: {', '.join(PRESETS)} (default: fast)")
    voices.add_argument("-O", "--output-dir", "--output-path", dest="output_path", default=DEFAULT_OUTPUT_DIR,
                        metavar="DIR", help=f"folder for the WAV files and their JSON sidecars "
                                            f"(default: {DEFAULT_OUTPUT_DIR}/; --output-path is an older spelling)")
    voices.add_argument("--candidates", type=int, default=None, metavar="K",
                        help="how many of the best-ranked takes to turn into audio; the best is the main file, the "
                             "others are saved beside it as *_candidateN.wav (default: 1)")
    skip_help = ("keep outputs that already exist instead of redoing them" if verb == "speak" else
                 "keep every chunk whose WAV exists, even if it was made with other settings")
    voices.add_argument("--skip-existing", action=flag, default=False, help=skip_help)
    voices.add_argument("-P", "--play", action=flag, default=False,
                        help="play the result with aplay, paplay, ffplay or afplay if one is installed")
    voices.add_argument("-q", "--quiet", action=flag, default=False,
                        help="no progress bars or chatter: print only where outputs went, the seed, and notes")
    voices.add_argument("--produce-debug-state", action=flag, default=False,
                        help="also save <output>.debug.safetensors (codes, ranking scores, candidates) and "
                             "<output>.debug.json (seed, settings, text) beside each output")


def add_model_options(group) -> None:
    """--models-dir, --model, --tiny and --device: what ``open_models`` (and ``voices match``) hand to
    ``model_set.resolve_models``."""
    group.add_argument("--models-dir", default=None, metavar="DIR",
                       help="folder holding the official .pth files (default: $TORTOISE_LAB_MODELS_DIR, else the "
                            "huggingface_hub cache)")
    group.add_argument("--model", choices=[c for c in MODEL_CHOICES if c != "tiny"], default="auto",
                       help="which model speaks: the official weights, the small embedded model shipped in the "
                            "package (trained on espeak-ng speech), or auto: official when downloaded, else embedded "
                            "(default: auto)")
    group.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=False,
                       help="use small random weights instead of the official ones: runs in seconds without "
                            "downloads, and the audio is noise")
    group.add_argument("--device", default=None, metavar="DEVICE",
                       help="cpu, cuda, cuda:N or mps (default: $TORTOISE_LAB_DEVICE, else the best available)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    flag = argparse.BooleanOptionalAction
    run = parser.add_argument_group("model and run")
    run.add_argument("--seed", type=seed_value, default=None,
                     help=f"random seed, 0 to {SEED_RANGE - 1}; the same seed and settings give the same audio "
                          "(default: drawn, and printed)")
    add_model_options(run)
    run.add_argument("--text-split", type=_text_split, default=None, metavar="DESIRED,MAX",
                     help="split text into chunks of about DESIRED and at most MAX characters (default: 200,300; "
                          "speak only splits texts longer than 300 characters)")
    run.add_argument("--disable-redaction", action=flag, default=None,
                     help="speak [bracketed] text too; normally it guides the delivery and is cut from the audio")
    run.add_argument("--latent-cache", action=flag, default=None,
                     help="reuse a clip voice's conditioning latents saved beside its clips (default: on)")
    run.add_argument("--decoder", choices=DECODERS, default=None,
                     help="how codes become audio: diffusion (the model's main chain: many samples ranked, diffusion, "
                          "vocoder) or hifigan (upstream's fast path, read_fast for read: one sample's latents "
                          "straight to audio; needs hifidecoder.pth) (default: diffusion)")
    run.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="autoregressive samples drawn at once; lower it if you run out of memory "
                          f"(default: {DEFAULT_BATCH_SIZE})")


def _add_tuning_options(parser: argparse.ArgumentParser) -> None:
    flag = argparse.BooleanOptionalAction
    tuning = parser.add_argument_group("tuning (unset options take the preset's values)")
    for option, kind, metavar, text in TUNING_OPTIONS:
        tuning.add_argument(option, type=kind, default=None, metavar=metavar, help=text)
    tuning.add_argument("--cond-free", action=flag, default=None,
                        help="conditioning-free diffusion guidance: two passes per step, much more natural audio "
                             "(default: on, except in ultra_fast)")
    tuning.add_argument("--sampler", choices=SAMPLERS, default=None,
                        help="diffusion sampler (default: ddpm, as upstream)")

    speed = parser.add_argument_group("inference (same audio, different speed)")
    speed.add_argument("--kv-cache", action=flag, default=None,
                       help="reuse attention keys and values while decoding; off gives the same audio, slowly "
                            "(default: on)")
    speed.add_argument("--half", action=flag, default=None,
                       help="half precision on CUDA (faster, slightly different audio; ignored elsewhere)")
    speed.add_argument("--deepspeed", action=flag, default=None,
                       help="DeepSpeed's fused decoder kernels (CUDA with the deepspeed extra; noted and ignored "
                            "elsewhere)")
    speed.add_argument("--compile", action=flag, default=None,
                       help="torch.compile the decode step (pays off on long runs)")
    speed.add_argument("--prepack", action=flag, default=None,
                       help="fp32 decoder weights laid out once for oneDNN's CPU kernels: the same audio within fp32 "
                            "rounding, about twice as fast a decoding step (default: on; CPU only)")
    speed.add_argument("--int8", action=flag, default=None,
                       help="int8 decoder and CLVP on CPU: several times faster, and lossy (different audio)")
