"""Measure the speech profile of a model set's training corpus and record it in the set's manifest: the text lengths
the model was trained on and the speaking rates it learned (``corpus.speech_profile``, the section training
writes as ``"speech"``). For a set trained before training recorded it:

    python -m tortoise_lab.train profile --model-dir tortoise_lab/data/embedded

The manifest's ``train_config`` gives the recipe (sentences, voices, seed); the same training utterances that
training measures (``corpus.profile_indices``) are spoken again with espeak-ng, so the result is what the training
command would have written. Only ``config.json``'s ``"speech"`` changes; the weights and their sha256 do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tortoise_lab.files import write_text
from tortoise_lab.train.corpus import corpus_plan, profile_indices, speech_profile, synthesize
from tortoise_lab.train.run import TrainConfig, recipe_sentences

__all__ = ["measure_profile", "main"]


def measure_profile(model_dir: str | Path, workers: int = 2, progress: bool = False) -> dict:
    """The ``"speech"`` section for the model set in ``model_dir``, from its manifest's training recipe."""
    manifest = json.loads((Path(model_dir) / "config.json").read_text())
    config = TrainConfig.from_dict(manifest["train_config"])
    sentences = recipe_sentences(config)
    voices = config.voice_list()
    texts, voice_ids, splits = corpus_plan(sentences, len(voices), config.seed)
    train = [i for i, split in enumerate(splits) if split == "train"]
    measured = [train[i] for i in profile_indices(len(train))]
    audio = synthesize([(texts[i], voices[voice_ids[i]]) for i in measured], config.backend, workers, progress)
    return speech_profile([texts[i] for i in measured], audio)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tortoise_lab.train profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="a model set folder (config.json + safetensors)")
    parser.add_argument("--workers", type=int, default=2, help="parallel espeak-ng processes")
    args = parser.parse_args(argv)
    path = Path(args.model_dir) / "config.json"
    if not path.is_file():
        print(f"{path} is missing: --model-dir must be a model set folder.", file=sys.stderr)
        return 2
    speech = measure_profile(args.model_dir, args.workers, progress=True)
    old = json.loads(path.read_text())
    manifest = {}
    for key, value in old.items():  # "speech" goes just before the checksums, where training writes it
        if key == "sha256":
            manifest["speech"] = speech
        if key != "speech":
            manifest[key] = value
    write_text(path, json.dumps(manifest, indent=1))  # the layout export_embedded writes
    json.dump(speech, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
