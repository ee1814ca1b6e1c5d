"""``run_training(TrainConfig)``: corpus -> quantiser -> AR model -> evaluation -> an exportable model set.

Every stage writes into ``out_dir`` and is skipped when its output is already there, so re-running the same
command after an interruption continues where it stopped (the AR stage from its last checkpoint)::

    out_dir/quantizer.safetensors   k-means codebook (its config in the metadata)
    out_dir/codes.safetensors       every utterance's codes (concatenated) and lengths
    out_dir/ar/                     the training loop's checkpoints, loss.csv, loss.png
    out_dir/eval.json               held-out measures (overall, and per split: held_out / unseen)
    out_dir/embedded/               the model set to ship: autoregressive.safetensors, quantizer.safetensors,
                                    config.json (sizes, token ids, data recipe, seed, times, evaluation)
"""

from __future__ import annotations

import dataclasses
import json
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tortoise_lab.files import atomic_path
from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.text import Tokenizer
from tortoise_lab.train.ar import ARConfig, ar_loss, prepare_ar_data
from tortoise_lab.train.corpus import (TEST_VOICES, VOICES, build_corpus, profile_indices, renderer, speech_profile,
                                       synthesize)
from tortoise_lab.train.sentences import ADJECTIVES, NOUNS, Sentences, join_sentences, make_sentences
from tortoise_lab.train.evaluate import evaluate_ar, summarize
from tortoise_lab.train.loop import LoopConfig, train_loop
from tortoise_lab.models.quantizer import KMeansQuantizer, QuantizerConfig, code_mel

__all__ = ["TrainConfig", "TrainResult", "run_training", "run_corpus", "prepare_corpus", "recipe_sentences", "evaluation_items", "evaluate_run", "EMBEDDED_FILES"]

EMBEDDED_FILES = ("autoregressive.safetensors", "quantizer.safetensors", "config.json")


@dataclass
class TrainConfig:
    """Everything one training run depends on; ``python -m tortoise_lab.train --help`` lists the same fields."""

    out_dir: str = "runs/embedded"  # everything the run makes; rerun the same command here to resume
    seed: int = 0  # sentences, corpus split, k-means, weights and batches all follow it
    # corpus
    backend: str = "espeak"  # "espeak" (espeak-ng speech) or "tones" (pure-torch stand-in, for tests)
    sentences: int = 20_000  # training sentences
    held_out: int = 50  # held-out sentences made of training words
    unseen: int = 50  # held-out sentences each with a word never seen in training
    broad_fraction: float = 0.5  # share of sentences from the broad word lists (wonderwords; needs the train extra)
    multi_sentence: float = 0.0  # share of training sentences spoken two or three to an utterance (0: one each)
    voices: str = "all"  # comma-separated voice names from corpus.VOICES, or "all"
    workers: int = 2  # parallel espeak-ng processes
    cache_dir: str | None = None  # where synthesised corpora are cached (default: out_dir/cache)
    # quantiser
    codes: int = 512  # k-means code book size (the AR model's mel vocabulary)
    stack: int = 4  # mel frames per code (4 x 256 samples, as the official DVAE)
    kmeans_iterations: int = 25  # Lloyd iterations
    fit_utterances: int = 2_000  # utterances whose frames the k-means is fitted on
    # AR model and training (defaults: the probe, 3.5 M parameters)
    layers: int = 4  # transformer blocks of the AR model
    model_dim: int = 256  # its width
    heads: int = 4  # attention heads
    conditioning_blocks: int = 2  # attention blocks of the voice-conditioning encoder
    batch_size: int = 32  # utterances per step
    steps: int = 4_000  # optimiser steps
    lr: float = 1e-3  # peak AdamW learning rate (warm-up, then cosine decay)
    warmup_steps: int = 200  # linear warm-up steps
    checkpoint_every: int = 250  # steps between (atomic) checkpoints
    log_every: int = 10  # steps between loss-log rows
    # evaluation and export
    eval_count: int = 100  # held-out utterances evaluated (both splits together; 0 skips evaluation)
    samples: int = 3  # held-out sentences written as WAVs (ours and espeak-ng's) with a spectrogram plot
    export_fp16: bool = True  # ship the weights in fp16 (half the size)
    threads: int | None = None  # torch threads (None: torch's default)
    progress: bool = True  # tqdm progress bars

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The config a run recorded (``train_config.json``, a manifest's ``train_config``); fields it does not know
        (from other versions) are left out, fields it lacks take today's defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def voice_list(self):
        pool = TEST_VOICES if self.backend == "tones" else VOICES
        if self.voices == "all":
            return pool
        by_name = {v.name: v for v in pool}
        unknown = [n for n in self.voices.split(",") if n not in by_name]
        if unknown:
            raise ValueError(f"Unknown voice {unknown[0]!r}. Available: {', '.join(by_name)}.")
        return tuple(by_name[n] for n in self.voices.split(","))

    def quantizer_config(self) -> QuantizerConfig:
        return QuantizerConfig(codes=self.codes, stack=self.stack, iterations=self.kmeans_iterations, seed=self.seed)

    def ar_config(self) -> ARConfig:
        return ARConfig(layers=self.layers, model_dim=self.model_dim, heads=self.heads,
                        conditioning_blocks=self.conditioning_blocks, batch_size=self.batch_size)

    def loop_config(self) -> LoopConfig:
        return LoopConfig(steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps,
                          checkpoint_every=self.checkpoint_every, log_every=self.log_every, progress=self.progress)


@dataclass
class TrainResult:
    out_dir: Path
    model: UnifiedVoice
    quantizer: KMeansQuantizer
    losses: list[float]  # this call's per-step losses
    evaluation: dict | None
    timings: dict[str, float] = field(default_factory=dict)


def _fit_or_load_quantizer(config: TrainConfig, corpus, train_indices: list[int], out: Path) -> KMeansQuantizer:
    path = out / "quantizer.safetensors"
    if path.is_file():
        return KMeansQuantizer.load(path)
    rng = random.Random(config.seed)
    fit_on = sorted(rng.sample(train_indices, min(config.fit_utterances, len(train_indices))))
    quantizer = KMeansQuantizer.fit([code_mel(corpus.wav(i)) for i in fit_on], config.quantizer_config())
    quantizer.save(path)
    return quantizer


def _encode_or_load_codes(corpus, indices: list[int], quantizer: KMeansQuantizer, out: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file, save_file

    path = out / "codes.safetensors"
    if path.is_file():
        stored = load_file(str(path))
        if stored["indices"].tolist() == indices:
            return list(stored["codes"].long().split(stored["lengths"].tolist()))
    codes = [quantizer.encode(code_mel(corpus.wav(i))) for i in indices]
    with atomic_path(path) as scratch:
        save_file({"indices": torch.tensor(indices), "lengths": torch.tensor([len(c) for c in codes]),
                   "codes": torch.cat(codes).to(torch.int16)}, str(scratch))
    return codes


def recipe_sentences(config: TrainConfig) -> Sentences:
    """The sentences of a run's recipe: drawn (``make_sentences``), then joined where the recipe asks for
    multi-sentence utterances (``join_sentences``)."""
    sentences = make_sentences(config.sentences, config.held_out, config.unseen, seed=config.seed,
                               broad_fraction=config.broad_fraction)
    return join_sentences(sentences, config.multi_sentence, config.seed)


def run_corpus(config: TrainConfig):
    """The run's corpus (``corpus.Corpus``): its recipe's sentences spoken, or read back from the cache."""
    out = Path(config.out_dir)
    return build_corpus(recipe_sentences(config), config.voice_list(), config.backend, config.cache_dir or out / "cache",
                        config.workers, config.seed, progress=config.progress)


def prepare_corpus(config: TrainConfig):
    """Only the corpus stage: ``train_config.json`` and the cached corpus in ``out_dir``, no training. What
    experiments that need the run's audio and test sentences but not a new AR model start from (``--corpus-only``);
    the full command, run later in the same folder, reads the corpus back and goes on."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=1))
    return run_corpus(config)


def run_training(config: TrainConfig) -> TrainResult:
    """Run (or continue) every stage of a training run; see the module docstring for what lands where."""
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=1))
    before = _previous_timings(out)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    corpus = run_corpus(config)
    timings["corpus_s"] = time.perf_counter() - clock
    train_indices = corpus.indices("train")

    clock = time.perf_counter()
    quantizer = _fit_or_load_quantizer(config, corpus, train_indices, out)
    codes = _encode_or_load_codes(corpus, train_indices, quantizer, out)
    timings["quantizer_s"] = time.perf_counter() - clock

    tokenizer = Tokenizer()
    data, dropped = prepare_ar_data(corpus, quantizer, train_indices, config.ar_config(), tokenizer, config.seed, codes)
    torch.manual_seed(config.seed)  # the model's initial weights
    model = UnifiedVoice(data.gpt_config)
    loop = train_loop(model, lambda m, b: ar_loss(m, b, data.config.text_weight), data.batch, config.loop_config(),
                      out / "ar")
    # The loop's checkpoints carry the training time across interruptions (also of calls killed before they
    # wrote timings.json); a checkpoint from before they did holds none: then add the previous calls' timings.
    if loop.resumed_from and not loop.resumed_seconds:
        timings["training_s"] = loop.seconds + before.get("training_s", 0.0)
    else:
        timings["training_s"] = loop.total_seconds
    # A stage read back from disk keeps the time it took when it ran.
    for stage in ("corpus_s", "quantizer_s"):
        timings[stage] = before.get(stage, timings[stage])

    evaluation = None
    if config.eval_count:
        clock = time.perf_counter()
        evaluation = evaluate_run(config, model, quantizer, corpus, data.cond_pool, data.config.cond_clips, tokenizer)
        (out / "eval.json").write_text(json.dumps(evaluation, indent=1))
        timings["evaluation_s"] = time.perf_counter() - clock
    if config.samples:
        write_samples(out / "samples", model, quantizer, corpus, data.cond_pool, data.config.cond_clips, tokenizer,
                      config.samples)
    (out / TIMINGS_FILE).write_text(json.dumps(timings, indent=1))
    measured = [train_indices[i] for i in profile_indices(len(train_indices))]
    speech = speech_profile([corpus.texts[i] for i in measured], [corpus.audio[i] for i in measured])
    export_embedded(out / "embedded", model, quantizer, config, evaluation, timings, speech,
                    dropped=dropped, corpus_hours=corpus.hours)
    return TrainResult(out, model, quantizer, loop.losses, evaluation, timings)


TIMINGS_FILE = "timings.json"


def _previous_timings(out: Path) -> dict[str, float]:
    """Seconds per stage of earlier calls on this folder: timings.json, else an exported manifest's."""
    if (out / TIMINGS_FILE).is_file():
        return json.loads((out / TIMINGS_FILE).read_text())
    manifest = out / "embedded" / "config.json"
    if manifest.is_file():
        return dict(json.loads(manifest.read_text()).get("timings_s", {}))
    return {}


def write_samples(folder: Path, model: UnifiedVoice, mel_decoder, corpus, cond_pool: dict[int, torch.Tensor],
                  cond_clips: int, tokenizer, count: int) -> list[dict]:
    """Greedy outputs for ``count`` held-out sentences (alternating the two held-out splits, different voices),
    their codes decoded by ``mel_decoder`` (the code book, or a code decoder) and Griffin-Lim: ``NN.wav`` (ours,
    24 kHz), ``NN-espeak.wav`` (the rendering, 22.05 kHz), ``spectrograms.png`` (each pair) and ``samples.json``
    (text, split, voice, files). Each voice is conditioned on the first ``cond_clips`` clips of its pool."""
    from tortoise_lab.audio import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, save_audio
    from tortoise_lab.tools.compare import plot_spectrogram
    from tortoise_lab.stages.decode import codes_audio
    from tortoise_lab.stages.sampling import draw_until_stop

    folder.mkdir(parents=True, exist_ok=True)
    pools = [corpus.indices("held_out"), corpus.indices("unseen")]
    chosen, used_voices = [], set()
    for k in range(max(len(p) for p in pools)):
        for pool in pools:
            if k < len(pool) and corpus.voice_ids[pool[k]] not in used_voices and len(chosen) < count:
                chosen.append(pool[k])
                used_voices.add(corpus.voice_ids[pool[k]])
    rows, audio = [], []
    for n, index in enumerate(chosen, start=1):
        voice_id = corpus.voice_ids[index]
        cond = model.conditioning_latent(cond_pool[voice_id][:cond_clips].float().unsqueeze(0))
        codes, stopped = draw_until_stop(model, cond, tokenizer.model_ids(corpus.texts[index]).unsqueeze(0))
        wav = codes_audio(mel_decoder, codes)
        ours, theirs = f"{n:02d}.wav", f"{n:02d}-espeak.wav"
        save_audio(folder / ours, wav, OUTPUT_SAMPLE_RATE, subtype="PCM_16")
        save_audio(folder / theirs, corpus.wav(index), INPUT_SAMPLE_RATE, subtype="PCM_16")
        audio.append(((wav, OUTPUT_SAMPLE_RATE, "embedded model"), (corpus.wav(index), INPUT_SAMPLE_RATE, "espeak-ng")))
        rows.append({"text": corpus.texts[index], "split": corpus.splits[index],
                     "voice": corpus.voices[voice_id].name, "stopped": stopped, "ours": ours, "espeak": theirs})
    if rows:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(len(rows), 2, figsize=(12, 2.6 * len(rows)), squeeze=False,
                                    constrained_layout=True)
        for pair_axes, row, pair in zip(axes, rows, audio):
            for axis, (wav, rate, label) in zip(pair_axes, pair):
                plot_spectrogram(wav, rate, axis=axis)
                axis.set_title(f"{label} · {row['voice']} · {row['split']}\n{row['text']}", fontsize=9)
        figure.savefig(folder / "spectrograms.png", dpi=80)
        plt.close(figure)
    (folder / "samples.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def evaluation_items(config: TrainConfig, corpus, cond_pool: dict[int, torch.Tensor], cond_clips: int):
    """What a run is evaluated on: (items, cond_mels, speak) for ``evaluate_ar``/``evaluate_decoders``. The items
    are the first ``eval_count`` held-out utterances of ``corpus`` (half from each split), each voice conditioned
    on the first ``cond_clips`` clips of its pool; ``speak`` renders a word-swapped sentence."""
    names = {i: v.name for i, v in enumerate(corpus.voices)}
    per_split = max(1, config.eval_count // 2)
    chosen = corpus.indices("held_out")[:per_split] + corpus.indices("unseen")[:per_split]
    items = [{"text": corpus.texts[i], "split": corpus.splits[i], "voice": names[corpus.voice_ids[i]],
              "wav": corpus.wav(i)} for i in chosen]
    cond = {names[v]: pool[:cond_clips] for v, pool in cond_pool.items()}
    return items, cond, renderer(corpus.voices, config.backend)


def speaker_encoder():
    """The speaker encoder for the evaluation's second speaker test, or None (with a warning) where it cannot run."""
    import warnings

    from tortoise_lab.voices.similarity import SimilarityUnavailable, measure

    try:
        return measure("encoder")
    except SimilarityUnavailable as error:
        warnings.warn(f"{error} The speaker test by d-vectors is left out.", stacklevel=2)
        return None


def evaluate_run(config: TrainConfig, model: UnifiedVoice, quantizer: KMeansQuantizer, corpus,
                 cond_pool: dict[int, torch.Tensor], cond_clips: int, tokenizer: Tokenizer,
                 mel_decoder=None) -> dict:
    """The held-out measures of ``model`` (with its own ``quantizer``) on ``evaluation_items``; ``mel_decoder``
    ((L,) codes -> log mel) replaces the code book (``evaluate_ar``)."""
    items, cond, speak = evaluation_items(config, corpus, cond_pool, cond_clips)
    results = evaluate_ar(model, quantizer, items, cond, speak, NOUNS + ADJECTIVES, seed=config.seed,
                          tokenizer=tokenizer, progress=config.progress, speaker_encoder=speaker_encoder(),
                          mel_decoder=mel_decoder)
    return {"summary": summarize(results).to_dict(),
            "utterances": [dict(dataclasses.asdict(r), length_ratio=r.length_ratio) for r in results]}


def command_line(config, module: str = "tortoise_lab.train") -> str:
    """The command that reruns ``config`` (a dataclass whose fields are ``module``'s flags)."""
    flags = []
    for name, value in asdict(config).items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        elif value is not None:
            flags.append(f"--{flag} {value}")
    return f"python -m {module} " + " ".join(flags)


def export_embedded(folder: Path, model: UnifiedVoice, quantizer: KMeansQuantizer, config: TrainConfig,
                    evaluation: dict | None, timings: dict, speech: dict, **recipe) -> Path:
    """The files a model set needs (``EMBEDDED_FILES``), with sha256 of the weight files in config.json, and the
    training corpus's ``speech`` profile (``corpus.speech_profile``: the text lengths the model can say, the
    speaking rates it learned), which sets how ``embedded_models`` chunks text and checks durations."""
    import hashlib

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if config.export_fp16 else torch.float32
    weights = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / "autoregressive.safetensors") as scratch:
        save_file(weights, str(scratch))
    quantizer.save(folder / "quantizer.safetensors", dtype)
    sha = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
           for name in ("autoregressive.safetensors", "quantizer.safetensors")}
    manifest = {
        "gpt_config": model.config.to_dict(),
        "quantizer_config": asdict(quantizer.config),
        "mel_decoder": "codebook", "vocoder": "griffin-lim",
        "train_config": asdict(config),
        "command": command_line(config),
        "recipe": recipe,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "evaluation": evaluation["summary"] if evaluation else None,
        "speech": speech,
        "sha256": sha,
    }
    with atomic_path(folder / "config.json") as scratch:
        scratch.write_text(json.dumps(manifest, indent=1))
    return folder
