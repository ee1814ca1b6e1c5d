"""Reference renderings for tests/test_embedded.py: espeak-ng (speaker us-m3) saying two sentences the embedded
model never trained on (its held-out split, same recipe as the shipped model). Run from the repository root:
`.venv/bin/python tests/data/embedded/make_reference.py` (needs espeak-ng)."""

import json
from pathlib import Path

import numpy as np
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE, save_audio
from tortoise_lab.model_set import EMBEDDED_DIR
from tortoise_lab.train.corpus import VOICES, synthesize
from tortoise_lab.train.sentences import make_sentences


def main() -> None:
    recipe = json.loads((EMBEDDED_DIR / "config.json").read_text())["train_config"]
    sentences = make_sentences(recipe["sentences"], recipe["held_out"], recipe["unseen"], seed=recipe["seed"],
                               broad_fraction=recipe.get("broad_fraction", 0.0))
    held_out = sorted(sentences.held_out, key=len)
    chosen = {"same": held_out[len(held_out) // 2], "other": held_out[len(held_out) // 2 + 1]}
    speaker = next(v for v in VOICES if v.name == "us-m3")
    here = Path(__file__).resolve().parent
    for name, text in chosen.items():
        audio = synthesize([(text, speaker)])[0]
        save_audio(here / f"{name}.wav", torch.from_numpy(audio.astype(np.float32) / 32768).unsqueeze(0),
                   INPUT_SAMPLE_RATE, subtype="PCM_16")
    (here / "texts.json").write_text(json.dumps(chosen, indent=1) + "\n")
    print(chosen)


if __name__ == "__main__":
    main()
