"""Which mel decoder and vocoder the embedded model uses, decided by measurement on held-out sentences.

    python -m tortoise_lab.train decoders --run runs/broad --model-dir tortoise_lab/data/embedded \\
        --out-dir runs/broad/decoders

Three stages, each written into ``out_dir`` and skipped (or resumed) when its output is there:

1. ``diffusion``: a tiny ``DiffusionDecoder`` trained on the frozen AR model's latents (``diffusion.py``);
2. ``vocoder``: a tiny UnivNet generator trained on the corpus's audio (``vocoder.py``);
3. ``compare``: ``evaluate_decoders`` on the run's held-out sentences, with the same greedy codes and word-swap
   renderings for every chain. Mel decoders (code book, diffusion) are measured on the mel they produce;
   vocoders (Griffin-Lim, UnivNet) on the mel *heard* in their audio (``code_mel`` of the 24 kHz output), after
   the better mel decoder. A candidate replaces the simpler choice only when its DTW distance is lower and its
   word-swap accuracy is not. Writes ``comparison.json`` and ``comparison.md`` (the table and the decision).

``--stages`` runs a subset, so the two trainings can run side by side (one thread each) and be compared after.

Longer than 400 lines because it is one experiment's whole command (its three resumable stages, the comparison,
the example figure and the record it writes into the manifest); its networks' training lives in ``diffusion.py``
and ``vocoder.py`` beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tortoise_lab.audio import OUTPUT_SAMPLE_RATE
from tortoise_lab.models.diffusion import DiffusionDecoder
from tortoise_lab.models.griffin_lim import griffin_lim
from tortoise_lab.models.quantizer import code_mel
from tortoise_lab.models.vocoder import UnivNetGenerator
from tortoise_lab.text import Tokenizer
from tortoise_lab.train.ar import ARConfig, conditioning_pool
from tortoise_lab.train.experiments import chosen_stages
from tortoise_lab.train.experiments.diffusion import (DiffusionTrainConfig, diffusion_conditioning_pool,
                                                      diffusion_loss, init_for_training, prepare_diffusion_data,
                                                      sample_mel)
from tortoise_lab.train.experiments.vocoder import VocoderTrainConfig, prepare_vocoder_data, vocoder_loss
from tortoise_lab.train.evaluate import summary_measures
from tortoise_lab.train.loop import LoopConfig, latest_step, load_checkpoint, train_loop, training_summary

__all__ = ["DecoderRunConfig", "run_decoders", "STAGES"]

STAGES = ("diffusion", "vocoder", "compare")


@dataclass
class DecoderRunConfig:
    run: str = "runs/embedded"  # the AR training folder: its corpus, split and codes
    model_dir: str = "tortoise_lab/data/embedded"  # the model set whose AR model and code book are used (frozen)
    out_dir: str = "runs/embedded/decoders"  # everything this makes; rerun the same command here to resume
    seed: int = 0  # weights, batches and sampling noise all follow it
    stages: str = ",".join(STAGES)  # comma-separated subset of diffusion,vocoder,compare
    # diffusion decoder
    diffusion_channels: int = 128  # model width (official: 1024)
    diffusion_layers: int = 4  # main diffusion layers (official: 10)
    diffusion_steps: int = 4_000  # optimiser steps
    diffusion_lr: float = 1e-3  # peak AdamW learning rate
    diffusion_batch_size: int = 16  # crops of 32 codes (1.4 s) per step
    diffusion_utterances: int = 4_000  # training utterances whose AR latents are computed and held in memory
    sampling_steps: int = 30  # DDIM steps at evaluation
    cond_free_k: str = "0,2"  # guidance strengths compared (comma-separated; 0 is none, 2 the official default)
    # vocoder
    vocoder_channels: int = 16  # UnivNet channel size (official: 32)
    vocoder_steps: int = 4_000  # optimiser steps
    vocoder_lr: float = 1e-3  # peak AdamW learning rate
    vocoder_batch_size: int = 8  # segments of 32 frames (0.34 s) per step
    vocoder_utterances: int = 2_000  # training utterances held in memory as 24 kHz audio
    # evaluation
    record: bool = False  # write the comparison and the decision into model_dir's config.json (the manifest)
    eval_count: int = 100  # held-out utterances compared (half from each split; the run's evaluation uses 100)
    threads: int | None = None  # torch threads (None: torch's default)
    progress: bool = True  # tqdm progress bars

    def stage_list(self) -> list[str]:
        return chosen_stages(self.stages, STAGES)

    def guidance(self) -> list[float]:
        return [float(k) for k in self.cond_free_k.split(",") if k]

    def diffusion_config(self) -> DiffusionTrainConfig:
        return DiffusionTrainConfig(model_channels=self.diffusion_channels, num_layers=self.diffusion_layers,
                                    batch_size=self.diffusion_batch_size, utterances=self.diffusion_utterances)

    def vocoder_config(self) -> VocoderTrainConfig:
        return VocoderTrainConfig(channel_size=self.vocoder_channels, batch_size=self.vocoder_batch_size,
                                  utterances=self.vocoder_utterances)

    def loop_config(self, steps: int, lr: float) -> LoopConfig:
        return LoopConfig(steps=steps, lr=lr, warmup_steps=min(200, steps // 10 + 1), checkpoint_every=250,
                          log_every=10, progress=self.progress)


class _Context:
    """What every stage reads: the run's corpus and codes, the frozen AR model, conditioning per voice."""

    def __init__(self, config: DecoderRunConfig):
        from tortoise_lab.model_set import embedded_models
        from tortoise_lab.train.experiments.crosseval import load_run

        self.run_config, self.corpus = load_run(config.run, config.eval_count)
        models = embedded_models(config.model_dir)
        self.gpt, self.quantizer = models.gpt.eval(), models.quantizer
        self.train_indices = self.corpus.indices("train")
        self.cond_pool = conditioning_pool(self.corpus, self.train_indices, ARConfig.pool_size)
        with torch.no_grad():
            self.cond_latents = {v: self.gpt.conditioning_latent(pool[:ARConfig.cond_clips].float().unsqueeze(0))
                                 for v, pool in self.cond_pool.items()}  # voice -> (1, C)
        self._codes = None
        self._run = Path(config.run)

    def codes(self) -> list[torch.Tensor]:
        """The training utterances' codes: the run's codes.safetensors when it matches, else encoded now."""
        if self._codes is None:
            from safetensors.torch import load_file

            path = self._run / "codes.safetensors"
            stored = load_file(str(path)) if path.is_file() else None
            if stored is not None and stored["indices"].tolist() == self.train_indices:
                self._codes = list(stored["codes"].long().split(stored["lengths"].tolist()))
            else:
                self._codes = [self.quantizer.encode(code_mel(self.corpus.wav(i))) for i in self.train_indices]
        return self._codes


def _diffusion_data(config: DecoderRunConfig, context: _Context):
    return prepare_diffusion_data(context.gpt, context.corpus, context.train_indices, context.codes(),
                                  context.cond_latents, config.diffusion_config(), context.quantizer.config.stack,
                                  config.seed, progress=config.progress)


def _diffusion_model(config: DecoderRunConfig, context: _Context) -> DiffusionDecoder:
    torch.manual_seed(config.seed)
    return init_for_training(DiffusionDecoder(config.diffusion_config().model_config(
        context.gpt.config.model_dim, context.quantizer.config.codes)))


def _vocoder_model(config: DecoderRunConfig) -> UnivNetGenerator:
    torch.manual_seed(config.seed)
    return UnivNetGenerator(config.vocoder_config().model_config())


def _trained(model: torch.nn.Module, folder: Path, steps: int) -> torch.nn.Module:
    if latest_step(folder) < steps:
        raise FileNotFoundError(f"{folder} has no finished training ({latest_step(folder)} of {steps} steps); "
                                "run its stage first (--stages diffusion / vocoder).")
    load_checkpoint(folder, model, None)
    return model.eval()


def train_diffusion(config: DecoderRunConfig, context: _Context) -> DiffusionDecoder:
    model = _diffusion_model(config, context)
    if latest_step(Path(config.out_dir) / "diffusion") >= config.diffusion_steps:  # done: skip preparing data
        return _trained(model, Path(config.out_dir) / "diffusion", config.diffusion_steps)
    data = _diffusion_data(config, context)
    train_loop(model, diffusion_loss, data.batch, config.loop_config(config.diffusion_steps, config.diffusion_lr),
               Path(config.out_dir) / "diffusion")
    return model


def train_vocoder(config: DecoderRunConfig, context: _Context) -> UnivNetGenerator:
    model = _vocoder_model(config)
    if latest_step(Path(config.out_dir) / "vocoder") >= config.vocoder_steps:  # done: skip preparing data
        return _trained(model, Path(config.out_dir) / "vocoder", config.vocoder_steps)
    data = prepare_vocoder_data(context.corpus, context.train_indices, config.vocoder_config(), config.seed,
                                progress=config.progress)
    train_loop(model, vocoder_loss, data.batch, config.loop_config(config.vocoder_steps, config.vocoder_lr),
               Path(config.out_dir) / "vocoder")
    return model



def _better(candidate: dict, incumbent: dict) -> bool:
    """The rule the comparison applies: lower DTW distance, and word-swap accuracy not lower."""
    return candidate["distance"] < incumbent["distance"] and candidate["swap_accuracy"] >= incumbent["swap_accuracy"]


def compare(config: DecoderRunConfig, context: _Context) -> dict:
    from tortoise_lab.train.sentences import ADJECTIVES, NOUNS
    from tortoise_lab.train.evaluate import dtw_log_mel_distance, evaluate_decoders, summarize
    from tortoise_lab.train.run import evaluation_items

    out = Path(config.out_dir)
    diffusion = _trained(_diffusion_model(config, context), out / "diffusion", config.diffusion_steps)
    vocoder = _trained(_vocoder_model(config), out / "vocoder", config.vocoder_steps)
    names = {i: v.name for i, v in enumerate(context.corpus.voices)}
    voice_ids = {name: i for i, name in names.items()}
    diffusion_cond = diffusion_conditioning_pool(context.corpus, context.train_indices, 1, sorted(context.cond_pool))
    tokenizer = Tokenizer()
    items, cond, speak = evaluation_items(context.run_config, context.corpus, context.cond_pool, ARConfig.cond_clips)

    def diffusion_decoder(k: float):
        def decode(codes: torch.Tensor, item: dict) -> torch.Tensor:
            voice = voice_ids[item["voice"]]
            latents = context.gpt.latents(context.cond_latents[voice], tokenizer.model_ids(item["text"]).unsqueeze(0),
                                          codes.long().unsqueeze(0))  # (1, L, C)
            return sample_mel(diffusion, latents, diffusion_cond[voice].float().unsqueeze(0),
                              len(codes) * context.quantizer.config.stack, config.sampling_steps, "ddim",
                              cond_free_k=k or None, seed=config.seed)
        return decode

    mel_decoders = {"codebook": lambda codes, item: context.quantizer.decode(codes)}
    for k in config.guidance():
        mel_decoders[f"diffusion (DDIM {config.sampling_steps}, k={k:g})"] = diffusion_decoder(k)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    mel_results = evaluate_decoders(context.gpt, context.quantizer, items, cond, speak, NOUNS + ADJECTIVES,
                                    mel_decoders, seed=context.run_config.seed, tokenizer=tokenizer,
                                    progress=config.progress)
    timings["mel_decoders_s"] = time.perf_counter() - clock
    mel_summaries = {name: summarize(r).to_dict() for name, r in mel_results.items()}
    best_mel = "codebook"
    for name, summary in mel_summaries.items():
        if name != "codebook" and _better(summary, mel_summaries[best_mel]):
            best_mel = name

    generator = torch.Generator()

    def heard(vocode):
        def decode(codes: torch.Tensor, item: dict) -> torch.Tensor:
            return code_mel(vocode(mel_decoders[best_mel](codes, item)), OUTPUT_SAMPLE_RATE)
        return decode

    def univnet(mel: torch.Tensor) -> torch.Tensor:
        return vocoder.inference(mel.unsqueeze(0), generator.manual_seed(config.seed))[0]  # (1, N)

    vocoders = {"griffin-lim": heard(griffin_lim), "univnet": heard(univnet)}
    clock = time.perf_counter()
    with torch.no_grad():
        audio_results = evaluate_decoders(context.gpt, context.quantizer, items, cond, speak, NOUNS + ADJECTIVES,
                                          vocoders, seed=context.run_config.seed, tokenizer=tokenizer,
                                          progress=config.progress)
    timings["vocoders_s"] = time.perf_counter() - clock
    audio_summaries = {name: summarize(r).to_dict() for name, r in audio_results.items()}
    # Copy synthesis: each rendering's own mel through the vocoder, against that mel (the vocoder alone).
    with torch.no_grad():
        copy_synthesis = {}
        for name, vocode in (("griffin-lim", griffin_lim), ("univnet", univnet)):
            distances = [dtw_log_mel_distance(code_mel(vocode(mel), OUTPUT_SAMPLE_RATE), mel)
                         for mel in (code_mel(item["wav"]) for item in items)]
            copy_synthesis[name] = float(np.mean(distances))
    best_vocoder = "univnet" if _better(audio_summaries["univnet"], audio_summaries["griffin-lim"]) else "griffin-lim"
    result = {
        "config": asdict(config),
        "mel_decoders": mel_summaries, "vocoders": audio_summaries, "copy_synthesis": copy_synthesis,
        "decision": {"mel_decoder": best_mel, "vocoder": best_vocoder,
                     "rule": "a candidate wins when its DTW distance is lower and its word-swap accuracy is not"},
        "training": {stage: training_summary(out / stage) for stage in ("diffusion", "vocoder")},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    (out / "comparison.json").write_text(json.dumps(result, indent=1))
    (out / "comparison.md").write_text(comparison_table(result))
    write_examples(out / "examples", items[:2], {**mel_decoders}, context, cond, tokenizer,
                   {"griffin-lim": griffin_lim, "univnet": univnet})
    if config.record:
        record_in_manifest(Path(config.model_dir), result)
    return result


@torch.no_grad()
def write_examples(folder: Path, items: list[dict], mel_decoders: dict, context: _Context, cond: dict, tokenizer,
                   vocoders: dict) -> None:
    """For each item: ``mels.png`` rows (the espeak-ng rendering's mel, then each mel decoder's mel of the greedy
    codes) and WAVs of every mel decoder through Griffin-Lim and of the code book through each vocoder."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from tortoise_lab.audio import save_audio
    from tortoise_lab.stages.sampling import draw_until_stop

    folder.mkdir(parents=True, exist_ok=True)
    rows = len(mel_decoders) + 1
    figure, axes = plt.subplots(rows, len(items), figsize=(6 * len(items), 1.8 * rows), squeeze=False,
                                constrained_layout=True)
    for column, item in enumerate(items):
        cond_latent = context.gpt.conditioning_latent(cond[item["voice"]].float().unsqueeze(0))
        codes, _ = draw_until_stop(context.gpt, cond_latent, tokenizer.model_ids(item["text"]).unsqueeze(0))
        mels = {"espeak-ng": code_mel(item["wav"])}
        mels.update({name: decode(codes, item) for name, decode in mel_decoders.items()})
        for axis, (name, mel) in zip(axes[:, column], mels.items()):
            axis.imshow(mel.numpy(), origin="lower", aspect="auto", vmin=-11.5, vmax=2.0)
            axis.set_title(f"{name} · {item['voice']}" + (f"\n{item['text']}" if name == "espeak-ng" else ""),
                           fontsize=8)
            axis.set_xticks([]), axis.set_yticks([])
        stem = f"{column + 1:02d}"
        for name, mel in mels.items():
            if name != "espeak-ng":
                save_audio(folder / f"{stem}-{_slug(name)}-griffin-lim.wav", griffin_lim(mel), OUTPUT_SAMPLE_RATE,
                           subtype="PCM_16")
        for name, vocode in vocoders.items():
            if name != "griffin-lim":
                save_audio(folder / f"{stem}-codebook-{name}.wav", vocode(mels["codebook"]), OUTPUT_SAMPLE_RATE,
                           subtype="PCM_16")
    figure.savefig(folder / "mels.png", dpi=80)
    plt.close(figure)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def record_in_manifest(model_dir: Path, result: dict) -> None:
    """Add the comparison (command, measures per chain, decision) to the model set's manifest. The set ships the
    code book and Griffin-Lim; a decision for a trained network is refused here, as its weights are not part of
    the set (export them with the set first)."""
    from tortoise_lab.files import atomic_path
    from tortoise_lab.train.run import command_line

    decision = result["decision"]
    manifest_path = model_dir / "config.json"
    manifest = json.loads(manifest_path.read_text())
    if (decision["mel_decoder"], decision["vocoder"]) != (manifest["mel_decoder"], manifest["vocoder"]):
        raise ValueError(f"The comparison chose {decision['mel_decoder']} + {decision['vocoder']}, but {model_dir} "
                         f"ships {manifest['mel_decoder']} + {manifest['vocoder']}; export the chosen networks with "
                         "the model set before recording.")
    config = DecoderRunConfig(**{**result["config"], "record": False})
    manifest["decoder_comparison"] = {
        "command": command_line(config, "tortoise_lab.train decoders"),
        "mel_decoders": {name: summary_measures(s) for name, s in result["mel_decoders"].items()},
        "vocoders": {name: summary_measures(s) for name, s in result["vocoders"].items()},
        "copy_synthesis": {name: round(d, 4) for name, d in result["copy_synthesis"].items()},
        "decision": decision, "training": result["training"], "timings_s": result["timings_s"],
    }
    with atomic_path(manifest_path) as scratch:
        scratch.write_text(json.dumps(manifest, indent=1))


def comparison_table(result: dict) -> str:
    """The comparison as Markdown: one row per chain, the issue's measures, then the decision."""
    def row(name: str, s: dict) -> str:
        ratio = s["distance"] / s["baseline"]
        return (f"| {name} | {s['distance']:.3f} | {ratio:.2f} | {s['ceiling']:.3f} | {s['swap_accuracy']:.2f} | "
                f"{s['per_split']['unseen']['swap_accuracy']:.2f} | {s['speaker_accuracy']:.2f} |")

    header = ("| chain | DTW distance | / baseline | ceiling | swap | swap (unseen) | speaker ID |\n"
              "|---|---|---|---|---|---|---|")
    decision = result["decision"]
    lines = ["Mel decoders (measured on the mel they produce):", "", header]
    lines += [row(name, s) for name, s in result["mel_decoders"].items()]
    lines += ["", f"Vocoders after the {decision['mel_decoder']} mel (measured on the mel heard in the audio):", "",
              header]
    lines += [row(name, s) for name, s in result["vocoders"].items()]
    copies = ", ".join(f"{name} {d:.3f}" for name, d in result["copy_synthesis"].items())
    lines += ["", f"Copy synthesis (each rendering's own mel through the vocoder; DTW distance to it): {copies}."]
    lines += ["", f"Decision ({decision['rule']}): mel decoder **{decision['mel_decoder']}**, "
                  f"vocoder **{decision['vocoder']}**.", ""]
    return "\n".join(lines)


def run_decoders(config: DecoderRunConfig) -> dict | None:
    """Run the requested stages; returns the comparison when it ran."""
    stages = config.stage_list()
    if config.threads:
        torch.set_num_threads(config.threads)
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(config.out_dir) / f"decoders_config.{'-'.join(stages)}.json").write_text(json.dumps(asdict(config), indent=1))
    context = _Context(config)
    if "diffusion" in stages:
        train_diffusion(config, context)
    if "vocoder" in stages:
        train_vocoder(config, context)
    return compare(config, context) if "compare" in stages else None


def main(argv: list[str] | None = None) -> int:
    from tortoise_lab.train.__main__ import dataclass_main

    return dataclass_main(DecoderRunConfig, "python -m tortoise_lab.train decoders", __doc__.split("\n\n")[0],
                          run_decoders, comparison_table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
