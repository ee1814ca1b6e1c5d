"""Reference side of tests/parity/test_audio.py: upstream's audio loading and its two mel front-ends.

inputs: "cond/<name>" (1, N) 22.05 kHz clips, "univnet/<name>" (1, N) 24 kHz clips, "diffusion/<name>" (1, N)
22.05 kHz clips, "mel/denorm" any tensor.
args: {"crop_seed": int, "files": {name: [path, sample_rate]}}
outputs: the same keys with upstream's results ("cond/<name>" (80, T), "cond_start/<name>" the crop start it
drew, "univnet/<name>" (100, T), "diffusion/<name>" (100, 401), "mel/denorm"), and "file/<name>" (1, N).
"""

import random

import torch
import torchaudio
from tortoise.api import format_conditioning, pad_or_truncate
from tortoise.utils.audio import denormalize_tacotron_mel, load_audio, wav_to_univnet_mel

from _common import read_args, read_inputs, write_outputs

args = read_args()
inputs = read_inputs()
outputs = {}
with torch.no_grad():
    for key, clip in inputs.items():
        kind, name = key.split("/", 1)
        if kind == "cond":
            gap = clip.shape[-1] - 132300
            random.seed(args["crop_seed"])
            start = random.randint(0, gap) if gap > 0 else 0
            random.seed(args["crop_seed"])  # format_conditioning draws the same start again
            outputs[key] = format_conditioning(clip, device="cpu")[0]  # (80, T)
            outputs[f"cond_start/{name}"] = torch.tensor(start)
        elif kind == "univnet":
            outputs[key] = wav_to_univnet_mel(clip, do_normalization=False, device="cpu")[0]
            outputs[f"univnet_norm/{name}"] = wav_to_univnet_mel(clip, do_normalization=True, device="cpu")[0]
        elif kind == "diffusion":
            # What TextToSpeech.get_conditioning_latents does to each voice clip before the diffusion model.
            sample = torchaudio.functional.resample(clip, 22050, 24000)
            sample = pad_or_truncate(sample, 102400)
            outputs[key] = wav_to_univnet_mel(sample, do_normalization=False, device="cpu")[0]
        elif kind == "mel":
            outputs[key] = denormalize_tacotron_mel(clip)
    for name, (path, rate) in args["files"].items():
        outputs[f"file/{name}"] = load_audio(path, rate)
write_outputs(outputs)
