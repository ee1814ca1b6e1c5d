"""Make the project's espeak-ng voices (voices/espeak_*): three clips each, from the training corpus's speakers.

Run from the repository root: `.venv/bin/python voices/tools/make_espeak_voices.py` (needs espeak-ng). The clips
are deterministic for a given espeak-ng version. The sentences are not among the embedded model's held-out ones.
"""

from pathlib import Path

import numpy as np
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE, save_audio
from tortoise_lab.train.corpus import VOICES, synthesize

SPEAKERS = ("us-m3", "us-f2", "gb-f4", "scot-m5")
SENTENCES = (
    "The old lighthouse keeper wrote a letter to his sister every single morning.",
    "Bring the green umbrella, because the clouds over the harbour look heavy today.",
    "Seven small boats were waiting quietly at the end of the wooden pier.",
)


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    by_name = {voice.name: voice for voice in VOICES}
    for speaker in SPEAKERS:
        folder = root / f"espeak_{speaker.replace('-', '_')}"
        audio = synthesize([(text, by_name[speaker]) for text in SENTENCES])
        for index, clip in enumerate(audio, start=1):
            wav = torch.from_numpy(clip.astype(np.float32) / 32768.0).unsqueeze(0)
            save_audio(folder / f"{index:02d}.wav", wav, INPUT_SAMPLE_RATE, subtype="PCM_16")
        print(folder, len(audio), "clips")


if __name__ == "__main__":
    main()
