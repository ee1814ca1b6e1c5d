"""The paragraph test: held-out sentences gathered into paragraphs, spoken as the pipeline speaks them (the model
set's own chunks, one after another) and measured like the sentence test against espeak-ng's reading of the whole
paragraph by the same speaker.

    python -m tortoise_lab.train paragraphs --model-dir tortoise_lab/data/embedded --out runs/paragraphs.json

Paragraphs: the recipe's held-out sentences (half of them with a word never heard in training), in order, three
to five to a paragraph (seeded), each paragraph read by one of the recipe's speakers in turn. ``--recipe`` names the
model set whose manifest gives the sentences and conditioning clips (default: the evaluated set's own), so that two
sets can be measured on the same paragraphs. The voice is conditioned on the clip the sentence test uses (the
speaker's first training utterance).

Codes are drawn greedily, chunk by chunk, as ``TextToSpeech`` cuts the text for this set at its defaults, then
joined; the set's mel decoder turns them into a mel (for the code book, joining codes joins the mels; the code
decoder reads across the pause between two chunks, where the pipeline decodes each chunk on its own). The measures are the sentence test's
(``evaluate.evaluate_ar``): DTW log-mel distance against the reading, over the different-paragraph baseline
(another paragraph by the same speaker), the codes' own ceiling, length, word swap (one word changed in the
paragraph) and speaker identification among the paragraphs' speakers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path

import torch

from tortoise_lab.files import write_json
from tortoise_lab.train.ar import ARConfig
from tortoise_lab.train.corpus import corpus_plan, pcm_wav, renderer, synthesize
from tortoise_lab.train.evaluate import Draw, evaluate_ar, summarize
from tortoise_lab.train.run import TrainConfig, recipe_sentences, speaker_encoder
from tortoise_lab.train.sentences import ADJECTIVES, NOUNS

__all__ = ["make_paragraphs", "default_chunks", "chunked_draw", "evaluate_paragraphs", "main"]

SHORTEST, LONGEST = 3, 5  # sentences in a paragraph


def make_paragraphs(config: TrainConfig, seed: int = 0) -> list[dict]:
    """The recipe's held-out sentences (both splits, alternating) as paragraphs of 3-5 sentences, each with the
    speaker that reads it (round-robin over the recipe's voices): dicts with "text", "split" ("paragraph") and
    "voice"."""
    sentences = recipe_sentences(config)
    voices = config.voice_list()
    pool = [s for pair in zip(sentences.held_out, sentences.unseen) for s in pair]
    rng = random.Random(f"paragraphs {seed}")
    paragraphs, start = [], 0
    while len(pool) - start >= SHORTEST:
        count = min(rng.randint(SHORTEST, LONGEST), len(pool) - start)
        paragraphs.append({"text": " ".join(pool[start:start + count]), "split": "paragraph",
                           "voice": voices[len(paragraphs) % len(voices)].name, "sentences": count})
        start += count
    return paragraphs


def conditioning_clips(config: TrainConfig) -> dict[str, torch.Tensor]:
    """Per voice, the conditioning mels (1, 80, 517) the sentence test uses: the first training utterance each
    speaker reads in the recipe (``ar.conditioning_pool``'s first clip)."""
    from tortoise_lab.audio import conditioning_mel

    voices = config.voice_list()
    texts, voice_ids, splits = corpus_plan(recipe_sentences(config), len(voices), config.seed)
    first = {}
    for i, (voice, split) in enumerate(zip(voice_ids, splits)):
        if split == "train" and voice not in first:
            first[voice] = i
    order = sorted(first)
    audio = synthesize([(texts[first[v]], voices[v]) for v in order], config.backend)
    clips = {}
    for voice, samples in zip(order, audio):
        clips[voices[voice].name] = conditioning_mel(pcm_wav(samples)).unsqueeze(0)[:ARConfig.cond_clips]
    return clips


def default_chunks(tts, text: str) -> list[str]:
    """The chunks ``tts`` (a ``TextToSpeech``) speaks ``text`` in at its model set's default settings."""
    from tortoise_lab.config import Settings

    settings, _ = tts.models.fit(Settings.from_preset("fast"))
    return tts.chunks(text, settings)[0]


def chunked_draw(tts) -> Draw:
    """Greedy codes for a text cut into ``default_chunks``, joined; stopped only when every chunk emitted its stop
    code."""
    from tortoise_lab.stages.sampling import draw_until_stop

    def draw(model, cond_latent: torch.Tensor, text: str, max_codes: int):
        rows, stopped = [], True
        for chunk in default_chunks(tts, text):
            codes, ok = draw_until_stop(model, cond_latent, tts.text_tokens(chunk))
            rows.append(codes)
            stopped = stopped and ok
        return torch.cat(rows), stopped

    return draw


def evaluate_paragraphs(model_dir: str | Path, recipe_dir: str | Path | None = None, count: int | None = None,
                        seed: int = 0, progress: bool = False, mel_decoder=None) -> dict:
    """The paragraph test of the model set in ``model_dir`` on the paragraphs of ``recipe_dir``'s recipe (default:
    its own): {"summary", "paragraphs" (one result each), "recipe", "chunks" (how many each paragraph took)}.
    ``mel_decoder`` ((L,) codes -> log mel; default: the set's own, its code decoder or its code book)."""
    from tortoise_lab.model_set import embedded_models
    from tortoise_lab.pipeline import TextToSpeech

    recipe_dir = Path(recipe_dir or model_dir)
    config = TrainConfig.from_dict(json.loads((recipe_dir / "config.json").read_text())["train_config"])
    paragraphs = make_paragraphs(config, seed)[:count]
    voices = {v.name: v for v in config.voice_list()}
    readings = synthesize([(p["text"], voices[p["voice"]]) for p in paragraphs], config.backend, config.workers,
                          progress)
    items = [{**p, "wav": pcm_wav(a)} for p, a in zip(paragraphs, readings)]
    tts = TextToSpeech(embedded_models(model_dir), progress=False)
    models = tts.models
    results = evaluate_ar(models.gpt, models.quantizer, items, conditioning_clips(config),
                          renderer(config.voice_list(), config.backend), NOUNS + ADJECTIVES,
                          seed, tts.tokenizer, progress, draw=chunked_draw(tts), speaker_encoder=speaker_encoder(),
                          mel_decoder=mel_decoder or models.decoder.mel_decoder.decode)
    return {"summary": summarize(results).to_dict(), "recipe": str(recipe_dir),
            "chunks": [len(default_chunks(tts, p["text"])) for p in paragraphs],
            "paragraphs": [dict(dataclasses.asdict(r), length_ratio=r.length_ratio) for r in results]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tortoise_lab.train paragraphs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="the model set measured (config.json + safetensors)")
    parser.add_argument("--recipe", default=None, help="the model set whose recipe gives the paragraphs and the "
                                                       "conditioning clips (default: --model-dir)")
    parser.add_argument("--count", type=int, default=None, help="paragraphs measured (default: all, about 25)")
    parser.add_argument("--out", default=None, help="write the result here as JSON (default: stdout only)")
    args = parser.parse_args(argv)
    for folder in (args.model_dir, args.recipe):
        if folder is not None and not (Path(folder) / "config.json").is_file():
            print(f"{Path(folder) / 'config.json'} is missing: give a model set folder.", file=sys.stderr)
            return 2
    result = evaluate_paragraphs(args.model_dir, args.recipe, args.count, progress=True)
    if args.out:
        write_json(args.out, result)
    json.dump(result["summary"], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
