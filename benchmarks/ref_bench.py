"""Reference side of ``tortoise-lab bench``: upstream tortoise-tts 3.0.0, run with the reference environment's python.

Two jobs, each given a JSON spec written by ``tortoise_lab.tools.bench``:

    python benchmarks/ref_bench.py weights SPEC.json   # make the shared random weights (official file formats)
    python benchmarks/ref_bench.py run SPEC.json       # time upstream's TextToSpeech.tts on them; print one record

``run`` times api.py's ``tts`` (the diffusion path), or with ``"api": "fast"`` / ``"stream"`` in the spec's options
api_fast.py's ``tts`` / ``tts_stream`` (the HiFiGAN path), with the time to the first audio and each HiFiGAN call.

``weights`` builds upstream's networks at the sizes in the spec, gives every parameter a random, well-scaled value
(``randomize_`` of the parity suite), and saves them as the official files are saved; both implementations then
load the same files. ``run`` builds upstream's TextToSpeech around those networks by hand (its constructor only
loads official-size files from the model hub), times each stage by wrapping the upstream functions that do it, and
prints ``BENCH_RECORD {json}`` as its last line. Nothing here imports tortoise_lab: the two sides meet through files.
"""

import contextlib
import json
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "parity" / "ref"))
# The parity suite's weight randomizer and its CUDA-less HiFiGAN shim, shared on purpose.
from _common import cuda_means_cpu, randomize_, tame_kernel_predictors_  # noqa: E402

RECORD_PREFIX = "BENCH_RECORD "
# Files the benchmark needs (a clip voice and no CVVP: the random-voice and CVVP weights are never loaded).
WEIGHT_FILES = ("autoregressive.pth", "diffusion_decoder.pth", "clvp2.pth", "vocoder.pth", "hifidecoder.pth")
STAGES = ("conditioning", "autoregressive", "ranking", "ar_latents", "diffusion", "vocoder", "hifigan")


def _huge_pages_mb():
    """MiB of this process on transparent huge pages (Linux), as tortoise_lab's worker records it."""
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            return next(int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages:")) / 1024
    except (OSError, StopIteration):
        return None


def build_models(kwargs: dict):
    """Upstream's four networks at the sizes in ``kwargs`` (random init; weights come from files or randomize_)."""
    from tortoise.models.autoregressive import UnifiedVoice
    from tortoise.models.clvp import CLVP
    from tortoise.models.diffusion_decoder import DiffusionTts
    from tortoise.models.vocoder import UnivNetGenerator

    gpt = UnifiedVoice(**kwargs["gpt"], checkpointing=False, train_solo_embeddings=False).eval()
    diffusion = DiffusionTts(**kwargs["diffusion"], dropout=0, use_fp16=False, layer_drop=0,
                             unconditioned_percentage=0).eval()
    clvp = CLVP(**kwargs["clvp"], use_xformers=True).eval()  # as api.py builds it
    vocoder = UnivNetGenerator(**kwargs["vocoder"])
    return gpt, diffusion, clvp, vocoder


def build_hifigan(kwargs: dict):
    """api_fast's HiFiGAN decoder at the sizes in ``kwargs`` (weight norm kept, as api_fast runs it)."""
    from tortoise.models.hifigan_decoder import HifiganGenerator

    return HifiganGenerator(**kwargs["hifigan"]).eval()


def make_weights(spec: dict) -> None:
    """Every file of WEIGHT_FILES that is not in the folder yet (each from its own seed, so a file made later, as
    hifidecoder.pth was, leaves the others as they were)."""
    out = Path(spec["weights_dir"])
    out.mkdir(parents=True, exist_ok=True)
    seed = spec["seed"]
    gpt, diffusion, clvp, vocoder = build_models(spec["models"])
    parts = [("autoregressive.pth", gpt, None), ("diffusion_decoder.pth", diffusion, None), ("clvp2.pth", clvp, None),
             ("vocoder.pth", vocoder, "model_g"), ("hifidecoder.pth", build_hifigan(spec["models"]), None)]
    for offset, (name, module, wrap) in enumerate(parts):
        if (out / name).is_file():
            continue
        randomize_(module, seed + offset)
        if name == "vocoder.pth":
            # As the parity suite does: with unit-scale kernels the random vocoder's activations grow into inf.
            tame_kernel_predictors_(module)
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        partial = out / (name + ".partial")
        torch.save({wrap: state} if wrap else state, partial)
        partial.replace(out / name)
        del state


class StageTimer:
    """Seconds per stage, accumulated by wrappers around upstream's functions."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = {}

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            return result
        return timed


def read_clips(paths):
    import soundfile

    clips = []
    for path in paths:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        assert rate == 22050, f"{path}: the benchmark's clips are written at 22.05 kHz"
        clips.append(torch.from_numpy(data.T[:1].copy()))  # (1, N)
    return clips


def run(spec: dict) -> dict:
    if spec["options"].get("api") in ("fast", "stream"):
        return run_fast(spec)
    import tortoise.api as api
    from tortoise.api import TextToSpeech
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    device = torch.device(spec["device"])
    notes = []
    loaded = time.perf_counter()
    gpt, diffusion, clvp, vocoder = build_models(spec["models"])
    weights = Path(spec["weights_dir"])
    for module, name in ((gpt, "autoregressive.pth"), (diffusion, "diffusion_decoder.pth"), (clvp, "clvp2.pth")):
        module.load_state_dict(torch.load(weights / name, map_location="cpu", weights_only=True))
    vocoder.load_state_dict(torch.load(weights / "vocoder.pth", map_location="cpu", weights_only=True)["model_g"])
    vocoder.eval(inference=True)
    options = spec["options"]
    half = bool(options.get("half")) and device.type == "cuda"
    deepspeed = bool(options.get("deepspeed")) and device.type == "cuda"
    gpt.post_init_gpt2_config(use_deepspeed=deepspeed, kv_cache=bool(options.get("kv_cache")), half=half)
    tts = TextToSpeech.__new__(TextToSpeech)
    tts.__dict__.update(
        models_dir=None, enable_redaction=False, device=device, tokenizer=VoiceBpeTokenizer(), half=half,
        autoregressive=gpt, diffusion=diffusion, clvp=clvp, cvvp=None, vocoder=vocoder, rlg_auto=None,
        rlg_diffusion=None, autoregressive_batch_size=spec["batch_size"],
    )
    load_s = time.perf_counter() - loaded

    timer = StageTimer(device)
    chosen = {}
    plain_forward = gpt.forward

    def forward(*args, **kwargs):  # the AR model's latent pass: its fourth argument is the chosen codes
        if kwargs.get("return_latent"):
            chosen["codes"] = args[3].clone()
        return plain_forward(*args, **kwargs)

    tts.get_conditioning_latents = timer.wrap("conditioning", tts.get_conditioning_latents)
    gpt.inference_speech = timer.wrap("autoregressive", gpt.inference_speech)
    clvp.forward = timer.wrap("ranking", clvp.forward)
    gpt.forward = timer.wrap("ar_latents", forward)
    api.do_spectrogram_diffusion = timer.wrap("diffusion", api.do_spectrogram_diffusion)
    vocoder.inference = timer.wrap("vocoder", vocoder.inference)

    clips = read_clips(spec["clips"])
    times, stage_times, wav = [], {stage: [] for stage in STAGES}, None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(spec["repeats"]):
        timer.seconds = {}
        start = time.perf_counter()
        wav = tts.tts(spec["text"], voice_samples=clips, k=1, verbose=False, use_deterministic_seed=spec["seed"],
                      **spec["settings"])
        times.append(time.perf_counter() - start)
        for stage in STAGES:
            stage_times[stage].append(timer.seconds.get(stage, 0.0))
    stage_times["diffusion_and_vocoder"] = [d + v for d, v in zip(stage_times["diffusion"], stage_times["vocoder"])]

    wav = wav.reshape(-1).float().cpu()
    if spec.get("wav"):
        import soundfile

        Path(spec["wav"]).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(spec["wav"], wav.numpy(), 24000, subtype="FLOAT")
    if options.get("half") and not half:
        notes.append("upstream's half precision is CUDA autocast only; this run stayed float32")
    if options.get("deepspeed") and not deepspeed:
        notes.append("DeepSpeed needs CUDA; upstream ran its PyTorch decoder")
    record = {
        "impl": "reference",
        "device": str(device),
        "times_s": times,
        "stage_times_s": stage_times,
        "load_s": load_s,
        "audio_s": wav.numel() / 24000,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "huge_pages_mb": _huge_pages_mb(),
        "codes": chosen["codes"].reshape(-1).tolist(),
        "notes": notes,
        "versions": {"torch": torch.__version__, "tortoise-tts": _version("tortoise-tts"),
                     "transformers": _version("transformers")},
    }
    if device.type == "cuda":
        record["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    record["median_s"] = statistics.median(times)
    return record


def run_fast(spec: dict) -> dict:
    """Time api_fast's ``tts`` (options "api": "fast") or ``tts_stream`` ("stream") on the shared weights.

    Upstream's fast ``tts`` ignores ``max_mel_tokens``; ``max_generate_length`` (a keyword it hands on to the AR
    model) sets the number of codes instead. Its stream hard-codes the generator's ``max_length`` (500 positions,
    prompt included), so ``get_generator`` is rebuilt with that one number changed to the prompt plus the codes
    asked for: both sides then draw the same codes. Everything else (its first buffer of 60 codes, chunks of 40,
    the 1024-sample crossfade) is upstream's default.
    """
    from tortoise.api_fast import TextToSpeech as FastTextToSpeech
    from tortoise.models.autoregressive import UnifiedVoice
    from tortoise.utils.tokenizer import VoiceBpeTokenizer

    device = torch.device(spec["device"])
    on_cpu = cuda_means_cpu if device.type != "cuda" else contextlib.nullcontext  # its HiFiGAN's .to("cuda")
    options, settings = spec["options"], dict(spec["settings"])
    codes_wanted = settings.pop("max_generate_length")
    loaded = time.perf_counter()
    gpt = UnifiedVoice(**spec["models"]["gpt"], checkpointing=False, train_solo_embeddings=False).eval()
    hifigan = build_hifigan(spec["models"])
    weights = Path(spec["weights_dir"])
    gpt.load_state_dict(torch.load(weights / "autoregressive.pth", map_location="cpu", weights_only=True))
    hifigan.load_state_dict(torch.load(weights / "hifidecoder.pth", map_location="cpu", weights_only=True))
    gpt.post_init_gpt2_config(kv_cache=bool(options.get("kv_cache")))
    gpt, hifigan = gpt.to(device), hifigan.to(device)
    tts = FastTextToSpeech.__new__(FastTextToSpeech)
    tts.__dict__.update(models_dir=None, enable_redaction=False, device=device, tokenizer=VoiceBpeTokenizer(),
                        half=False, autoregressive=gpt, hifi_decoder=hifigan, rlg_auto=None)
    load_s = time.perf_counter() - loaded

    timer, drawn, decodes = StageTimer(device), {}, []
    plain_forward, plain_inference = gpt.forward, hifigan.inference

    def forward(*args, **kwargs):  # the latent pass after tts's drawing: its fourth argument is the codes
        if kwargs.get("return_latent"):
            drawn["codes"] = args[3].reshape(-1).tolist()
        return plain_forward(*args, **kwargs)

    def get_generator(fake_inputs, **kwargs):  # upstream's, with max_length set to the codes wanted (see above)
        steps = gpt.inference_model.generate_stream(
            fake_inputs, bos_token_id=gpt.start_mel_token, pad_token_id=gpt.stop_mel_token,
            eos_token_id=gpt.stop_mel_token, max_length=fake_inputs.shape[1] + codes_wanted, do_stream=True, **kwargs)
        while True:
            try:
                code, latent = timer.wrap("autoregressive", next)(steps)
            except StopIteration:
                return
            drawn.setdefault("codes", []).extend(code.reshape(-1).tolist())
            yield code, latent

    def inference(latents, speaker):  # every HiFiGAN call: how long, over how many latents
        start = time.perf_counter()
        wav = timer.wrap("hifigan", plain_inference)(latents, speaker)
        decodes.append({"decode_s": time.perf_counter() - start, "codes": latents.shape[1]})
        return wav

    tts.get_conditioning_latents = timer.wrap("conditioning", tts.get_conditioning_latents)
    gpt.inference_speech = timer.wrap("autoregressive", gpt.inference_speech)
    gpt.forward = timer.wrap("ar_latents", forward)
    gpt.get_generator = get_generator
    hifigan.inference = inference
    clips = read_clips(spec["clips"])
    if options.get("conditioning_cached"):  # the voice's latent computed once, before timing (as our latent cache)
        with on_cpu():
            held = FastTextToSpeech.get_conditioning_latents(tts, clips)
        tts.get_conditioning_latents = timer.wrap("conditioning", lambda samples, return_mels=False: held)

    times, first_audio, stage_times, wav, pieces = [], [], {stage: [] for stage in STAGES}, None, None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(spec["repeats"]):
        timer.seconds, drawn, decodes[:] = {}, {}, []
        start, first, ready = time.perf_counter(), None, []
        with on_cpu():
            if options["api"] == "fast":
                wav = tts.tts(spec["text"], voice_samples=clips, k=1, verbose=False,
                              use_deterministic_seed=spec["seed"], max_generate_length=codes_wanted, **settings)
            else:
                chunks = []
                for chunk in tts.tts_stream(spec["text"], voice_samples=clips, k=1, verbose=False,
                                            use_deterministic_seed=spec["seed"], **settings):
                    ready.append(time.perf_counter() - start)
                    first = first if first is not None else ready[-1]
                    chunks.append(chunk.reshape(-1).float().cpu())
                wav = torch.cat(chunks)
                sizes = [chunk.numel() for chunk in chunks]
        times.append(time.perf_counter() - start)
        first_audio.append(first if first is not None else times[-1])
        for stage in STAGES:
            stage_times[stage].append(timer.seconds.get(stage, 0.0))
        if pieces is None and options["api"] == "stream":
            pieces = [dict(call, ready_s=at, samples=n) for call, at, n in zip(decodes, ready, sizes)]
    wav = wav.reshape(-1).float().cpu()
    if spec.get("wav"):
        import soundfile

        Path(spec["wav"]).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(spec["wav"], wav.numpy(), 24000, subtype="FLOAT")
    record = {
        "impl": "reference", "device": str(device), "times_s": times, "first_audio_times_s": first_audio,
        "stage_times_s": stage_times, "load_s": load_s, "audio_s": wav.numel() / 24000,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "huge_pages_mb": _huge_pages_mb(),
        "codes": drawn["codes"],
        "pieces": pieces, "notes": [],
        "versions": {"torch": torch.__version__, "tortoise-tts": _version("tortoise-tts"),
                     "transformers": _version("transformers")},
    }
    if device.type == "cuda":
        record["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    record["median_s"] = statistics.median(times)
    return record


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    mode, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    torch.set_grad_enabled(False)
    if mode == "weights":
        make_weights(spec)
    elif mode == "run":
        print(RECORD_PREFIX + json.dumps(run(spec)), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}; use weights or run")
