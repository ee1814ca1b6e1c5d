"""A learned code -> mel decoder (``models/code_decoder.py``) trained on a run's (codes, mel) pairs and measured
against the code book it corrects, on the held-out measures.

    python -m tortoise_lab.train codedecoder --run runs/broad --model-dir tortoise_lab/data/embedded \\
        --out-dir runs/broad/codedecoder --threads 2

Two stages, each written into ``out_dir`` and skipped (or resumed) when its output is there:

1. ``train``: the run's training utterances (a seeded subset) are encoded by the model set's own quantiser; the
   decoder learns to map each utterance's true codes to its true mel (MSE in the normalised log-mel scale, whole
   utterances padded to a batch), with the shared seeded, resumable loop; ``code_decoder.safetensors`` (fp32) is
   written at the end.
2. ``compare``: the sentence test (``evaluate_decoders``: the same greedy codes of the model set's frozen AR model
   and the same word-swap renderings for every decoder) for the code book, the decoder, and the decoder with its
   weights rounded to fp16 (what a model set ships); the same through Griffin-Lim, measured on the mel heard in
   the audio; and the paragraph test (``paragraphs.evaluate_paragraphs``) for the code book and the decoder.
   The decoder wins when its DTW distance is lower and its word-swap accuracy is not (``decoders``'s rule), on
   the sentence test and on the paragraph test. Writes ``comparison.json`` and ``comparison.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from tortoise_lab.audio import OUTPUT_SAMPLE_RATE, normalize_univnet_mel
from tortoise_lab.models.code_decoder import CodeDecoder, CodeDecoderConfig
from tortoise_lab.models.quantizer import KMeansQuantizer, code_mel, stack_frames, unstack_frames
from tortoise_lab.train.evaluate import summary_measures
from tortoise_lab.train.experiments import chosen_stages
from tortoise_lab.train.loop import (LoopConfig, latest_step, load_checkpoint, step_generator, train_loop,
                                  training_summary)

__all__ = ["CodeDecoderRunConfig", "CodePairs", "CodeBatch", "prepare_pairs", "code_decoder_loss",
           "new_decoder", "train_code_decoder", "run_code_decoder", "STAGES", "WEIGHTS_FILE"]

STAGES = ("train", "compare")
WEIGHTS_FILE = "code_decoder.safetensors"
PAIRS_FILE = "pairs.safetensors"


@dataclass
class CodeDecoderRunConfig:
    run: str = "runs/embedded"  # the training folder: its corpus (cache), split and test sentences
    model_dir: str = "tortoise_lab/data/embedded"  # the model set whose quantiser makes the codes and whose AR model draws the test codes (both frozen)
    out_dir: str = "runs/embedded/codedecoder"  # everything this makes; rerun the same command here to resume
    seed: int = 0  # the utterances chosen, the weights and the batches all follow it
    stages: str = ",".join(STAGES)  # comma-separated subset of train,compare
    size: str = "embedded"  # the decoder's named size (models/code_decoder.py CODE_DECODER_SIZES)
    utterances: int = 10_000  # training utterances whose (codes, mel) pairs are held in memory
    batch_size: int = 32  # whole utterances per step
    steps: int = 4_000  # optimiser steps
    lr: float = 2e-3  # peak AdamW learning rate (warm-up, then cosine decay)
    warmup_steps: int = 100  # linear warm-up steps
    eval_count: int = 100  # held-out utterances of the sentence test (half from each split, as the run's evaluation)
    paragraphs: bool = True  # also run the paragraph test in the compare stage
    record: bool = False  # when the code decoder wins: ship it in model_dir (weights, sha256, mel_decoder, and this comparison in config.json)
    export_fp16: bool = True  # ship its weights in fp16 (the compare stage measures them too)
    threads: int | None = None  # torch threads (None: torch's default)
    progress: bool = True  # tqdm progress bars

    def stage_list(self) -> list[str]:
        return chosen_stages(self.stages, STAGES)

    def loop_config(self) -> LoopConfig:
        return LoopConfig(steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps, checkpoint_every=250,
                          log_every=10, progress=self.progress)


@dataclass
class CodeBatch:
    codes: torch.Tensor  # (B, L) long, padded with code 0
    mask: torch.Tensor  # (B, L) bool, true at real codes
    mels: torch.Tensor  # (B, 100, stack * L) normalised log mel, fp32


@dataclass
class CodePairs:
    """Each chosen utterance's codes (L,) int16 and normalised mel (100, stack * L) fp16; ``batch(step)`` draws a
    batch as a pure function of (seed, step)."""

    indices: list[int]  # corpus indices
    codes: list[torch.Tensor]
    mels: list[torch.Tensor]
    stack: int
    batch_size: int
    seed: int

    def batch(self, step: int) -> CodeBatch:
        generator = step_generator(self.seed, step)
        picks = torch.randint(len(self.codes), (self.batch_size,), generator=generator).tolist()
        longest = max(len(self.codes[k]) for k in picks)
        codes = torch.zeros(len(picks), longest, dtype=torch.long)
        mask = torch.zeros(len(picks), longest, dtype=torch.bool)
        mels = torch.zeros(len(picks), self.mels[0].shape[0], self.stack * longest)
        for row, k in enumerate(picks):
            length = len(self.codes[k])
            codes[row, :length] = self.codes[k].long()
            mask[row, :length] = True
            mels[row, :, :self.stack * length] = self.mels[k].float()
        return CodeBatch(codes, mask, mels)


def utterance_pair(quantizer: KMeansQuantizer, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A 22.05 kHz rendering (1, N) -> (its codes (L,), its normalised mel (100, stack * L)), the mel's tail padded
    with silence to whole codes as ``stack_frames`` pads it."""
    mel = code_mel(wav)
    stack = quantizer.config.stack
    padded = unstack_frames(stack_frames(mel, stack), stack)  # (100, stack * L)
    return quantizer.encode(mel), normalize_univnet_mel(padded)


def prepare_pairs(corpus, train_indices: list[int], quantizer: KMeansQuantizer, utterances: int, batch_size: int,
                  seed: int, cache: Path | None = None, progress: bool = False) -> CodePairs:
    """``utterances`` training utterances (a seeded choice, in corpus order) as (codes, mel) pairs; read back from
    ``cache`` (a safetensors file) when it holds the same choice made by the same code book, else written there."""
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_indices), generator=generator)[:utterances]
    chosen = [train_indices[k] for k in sorted(order.tolist())]
    stack = quantizer.config.stack
    if cache is not None and cache.is_file():
        stored = load_file(str(cache))
        if stored["indices"].tolist() == chosen and torch.equal(stored["codebook"], quantizer.codebook.half()):
            lengths = stored["lengths"].tolist()
            return CodePairs(chosen, list(stored["codes"].split(lengths)),
                             list(stored["mels"].split([stack * n for n in lengths], dim=1)), stack, batch_size, seed)
    codes, mels = [], []
    for index in tqdm(chosen, desc="codes and mels", disable=not progress):
        row, mel = utterance_pair(quantizer, corpus.wav(index))
        codes.append(row.to(torch.int16))
        mels.append(mel.half())
    if cache is not None:
        from tortoise_lab.files import atomic_path

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as scratch:
            save_file({"indices": torch.tensor(chosen), "lengths": torch.tensor([len(c) for c in codes]),
                       "codes": torch.cat(codes), "mels": torch.cat(mels, dim=1).contiguous(),
                       "codebook": quantizer.codebook.half().contiguous()}, str(scratch))
    return CodePairs(chosen, codes, mels, stack, batch_size, seed)


def code_decoder_loss(model: CodeDecoder, batch: CodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean squared error over the real frames of the batch, in the normalised log-mel scale (the DTW distance
    the decoder is measured by is an RMS over bands, in the log scale); its L1 is logged beside it."""
    predicted = model(batch.codes, batch.mask)  # (B, 100, S*L)
    frames = batch.mask.repeat_interleave(model.config.stack, dim=1).unsqueeze(1)  # (B, 1, S*L)
    weight = frames.float().expand_as(predicted)
    error = (predicted - batch.mels) * weight
    count = weight.sum()
    mse = error.pow(2).sum() / count
    return mse, {"l1": float(error.abs().sum().detach() / count)}


def new_decoder(config: CodeDecoderRunConfig, quantizer: KMeansQuantizer) -> CodeDecoder:
    """The decoder at its initial (seeded) weights, sized for ``quantizer``'s code book."""
    size = CodeDecoderConfig.from_name(config.size)
    size.codes, size.stack, size.bands = quantizer.config.codes, quantizer.config.stack, quantizer.config.bands
    torch.manual_seed(config.seed)
    return CodeDecoder(size, quantizer.codebook)


def train_code_decoder(config: CodeDecoderRunConfig, corpus, quantizer: KMeansQuantizer) -> CodeDecoder:
    """The ``train`` stage: resumes from ``out_dir/train``'s checkpoint, writes ``out_dir/code_decoder.safetensors``."""
    out = Path(config.out_dir)
    model = new_decoder(config, quantizer)
    folder = out / "train"
    if latest_step(folder) < config.steps:
        pairs = prepare_pairs(corpus, corpus.indices("train"), quantizer, config.utterances, config.batch_size,
                              config.seed, out / PAIRS_FILE, config.progress)
        train_loop(model, code_decoder_loss, pairs.batch, config.loop_config(), folder)
    else:
        load_checkpoint(folder, model, None)
    model.eval().save(out / WEIGHTS_FILE)
    return model


def trained_decoder(config: CodeDecoderRunConfig, quantizer: KMeansQuantizer) -> CodeDecoder:
    path = Path(config.out_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the train stage first (--stages train).")
    return CodeDecoder.load(path, quantizer.codebook)


def fp16_copy(model: CodeDecoder, codebook: torch.Tensor) -> CodeDecoder:
    """The decoder with its weights rounded to fp16 and computing in fp32: what a model set ships."""
    copy = CodeDecoder(model.config, codebook)
    copy.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()}, strict=True)
    return copy.eval()


def _better(candidate: dict, incumbent: dict) -> bool:
    """The rule ``decoders`` applies: lower DTW distance, and word-swap accuracy not lower."""
    return candidate["distance"] < incumbent["distance"] and candidate["swap_accuracy"] >= incumbent["swap_accuracy"]


def compare(config: CodeDecoderRunConfig, run_config, corpus, models, decoder: CodeDecoder) -> dict:
    """The ``compare`` stage (see the module docstring); writes comparison.json and comparison.md."""
    from tortoise_lab.models.griffin_lim import griffin_lim
    from tortoise_lab.text import Tokenizer
    from tortoise_lab.train.ar import ARConfig, conditioning_pool
    from tortoise_lab.train.evaluate import evaluate_decoders, summarize
    from tortoise_lab.train.run import evaluation_items
    from tortoise_lab.train.sentences import ADJECTIVES, NOUNS

    out = Path(config.out_dir)
    gpt, quantizer = models.gpt.eval(), models.quantizer
    pool = conditioning_pool(corpus, corpus.indices("train"), ARConfig.pool_size)
    items, cond, speak = evaluation_items(run_config, corpus, pool, ARConfig.cond_clips)
    half = fp16_copy(decoder, quantizer.codebook)
    mel_decoders = {"codebook": quantizer.decode, "code decoder": decoder.decode,
                    "code decoder (fp16 weights)": half.decode}
    timings: dict[str, float] = {}

    def measure(decoders: dict) -> dict:
        with torch.no_grad():
            results = evaluate_decoders(gpt, quantizer, items, cond, speak, NOUNS + ADJECTIVES,
                                        {name: (lambda codes, item, d=d: d(codes)) for name, d in decoders.items()},
                                        seed=run_config.seed, tokenizer=Tokenizer(), progress=config.progress)
        return {name: summarize(r).to_dict() for name, r in results.items()}

    clock = time.perf_counter()
    sentences = measure(mel_decoders)
    timings["sentence_test_s"] = time.perf_counter() - clock

    def heard(decode):
        return lambda codes: code_mel(griffin_lim(decode(codes)), OUTPUT_SAMPLE_RATE)

    clock = time.perf_counter()
    griffin = measure({f"{name} -> griffin-lim": heard(mel_decoders[name]) for name in ("codebook", "code decoder")})
    timings["griffin_lim_s"] = time.perf_counter() - clock
    paragraphs = {}
    if config.paragraphs:
        from tortoise_lab.train.experiments.paragraphs import evaluate_paragraphs

        clock = time.perf_counter()
        for name in ("codebook", "code decoder"):
            paragraphs[name] = evaluate_paragraphs(config.model_dir, progress=config.progress,
                                                   mel_decoder=mel_decoders[name])["summary"]
        timings["paragraph_test_s"] = time.perf_counter() - clock
    wins = _better(sentences["code decoder"], sentences["codebook"]) and (
        not paragraphs or _better(paragraphs["code decoder"], paragraphs["codebook"]))
    result = {
        "config": asdict(config),
        "decoder": {"config": asdict(decoder.config), "parameters": decoder.parameter_count()},
        "sentence_test": sentences, "griffin_lim_heard": griffin, "paragraph_test": paragraphs,
        "decision": {"mel_decoder": "code decoder" if wins else "codebook",
                     "rule": "the code decoder wins when its DTW distance is lower and its word-swap accuracy is "
                             "not, on the sentence test and on the paragraph test"},
        "training": training_summary(out / "train"),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    (out / "comparison.json").write_text(json.dumps(_finite(result), indent=1))
    (out / "comparison.md").write_text(comparison_table(result))
    if config.record:
        record_in_model_set(Path(config.model_dir), decoder, result, config)
    return result


def _finite(value):
    """``value`` with every NaN (a measure a test does not make, e.g. no speaker encoder) as None: strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and value != value else value


def record_in_model_set(model_dir: Path, decoder: CodeDecoder, result: dict, config: CodeDecoderRunConfig) -> None:
    """Ship the decoder in the model set: its weights (``model_set.CODE_DECODER_FILE``, fp16 with
    ``export_fp16``), their sha256, ``mel_decoder`` "code-decoder", and under ``code_decoder`` the command that
    trained and measured it, its size and the comparison. Refused (ValueError) when the comparison chose the code
    book."""
    import hashlib

    from tortoise_lab.files import atomic_path
    from tortoise_lab.model_set import CODE_DECODER_FILE
    from tortoise_lab.train.run import command_line

    if result["decision"]["mel_decoder"] != "code decoder":
        raise ValueError(f"The comparison chose the code book, not the code decoder; {model_dir} is left as it is.")
    manifest_path = model_dir / "config.json"
    manifest = json.loads(manifest_path.read_text())
    decoder.save(model_dir / CODE_DECODER_FILE, torch.float16 if config.export_fp16 else torch.float32)
    manifest["sha256"][CODE_DECODER_FILE] = hashlib.sha256((model_dir / CODE_DECODER_FILE).read_bytes()).hexdigest()
    manifest["mel_decoder"] = "code-decoder"
    manifest["code_decoder"] = {
        # Both stages: the command that trains the decoder and measures it (a finished train stage is read back).
        "command": command_line(replace(config, stages=",".join(STAGES), record=False, progress=False),
                                "tortoise_lab.train codedecoder"),
        "config": result["decoder"]["config"], "parameters": result["decoder"]["parameters"],
        "weights": "fp16" if config.export_fp16 else "fp32",
        **{test: {name: summary_measures(s) for name, s in result[test].items()}
           for test in ("sentence_test", "griffin_lim_heard", "paragraph_test")},
        "decision": result["decision"], "training": result["training"], "timings_s": result["timings_s"],
    }
    with atomic_path(manifest_path) as scratch:
        scratch.write_text(json.dumps(manifest, indent=1))


def comparison_table(result: dict) -> str:
    """The comparison as Markdown: one row per chain and test, the issue's measures, then the decision."""
    def row(test: str, name: str, s: dict) -> str:
        unseen = s["per_split"].get("unseen")  # the paragraphs have no unseen-word split
        unseen_swap = f"{unseen['swap_accuracy']:.2f}" if unseen else "–"
        return (f"| {test} | {name} | {s['distance']:.3f} | {s['distance'] / s['baseline']:.3f} | "
                f"{s['ceiling']:.3f} | {s['swap_accuracy']:.2f} | {unseen_swap} | "
                f"{s['speaker_accuracy']:.2f} ({s['speaker_ceiling']:.2f}) |")

    lines = ["| test | chain | DTW distance | / baseline | ceiling | swap | swap (unseen) | speaker ID (ceiling) |",
             "|---|---|---|---|---|---|---|---|"]
    for test, key in (("sentences", "sentence_test"), ("sentences, heard in Griffin-Lim audio", "griffin_lim_heard"),
                      ("paragraphs", "paragraph_test")):
        lines += [row(test, name, s) for name, s in result[key].items()]
    decision = result["decision"]
    lines += ["", f"Decision ({decision['rule']}): **{decision['mel_decoder']}**.", ""]
    return "\n".join(lines)


def run_code_decoder(config: CodeDecoderRunConfig) -> dict | None:
    """Run the requested stages; returns the comparison when it ran."""
    from tortoise_lab.model_set import embedded_models
    from tortoise_lab.train.experiments.crosseval import load_run

    stages = config.stage_list()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"codedecoder_config.{'-'.join(stages)}.json").write_text(json.dumps(asdict(config), indent=1))
    run_config, corpus = load_run(config.run, config.eval_count)
    models = embedded_models(config.model_dir)
    if "train" in stages:
        decoder = train_code_decoder(config, corpus, models.quantizer)
    else:
        decoder = trained_decoder(config, models.quantizer)
    return compare(config, run_config, corpus, models, decoder) if "compare" in stages else None


def main(argv: list[str] | None = None) -> int:
    from tortoise_lab.train.__main__ import dataclass_main

    return dataclass_main(CodeDecoderRunConfig, "python -m tortoise_lab.train codedecoder",
                          __doc__.split("\n\n")[0], run_code_decoder, comparison_table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
