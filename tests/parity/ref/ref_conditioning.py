"""Reference side of tests/parity/test_conditioning.py: upstream's get_conditioning_latents on given clips.

args: {"gpt": UnifiedVoice kwargs, "diffusion": DiffusionTts kwargs, "seed": int, "starts": [int per clip]}
inputs: clip_0, clip_1, ... (1, N) at 22.05 kHz
writes: autoregressive.pth, diffusion_decoder.pth (randomized), outputs: autoregressive, diffusion latents
"""

import random

import torch
import torchaudio
from _common import randomize_, read_args, read_inputs, save_state, write_outputs
from tortoise import api
from tortoise.models.autoregressive import UnifiedVoice
from tortoise.models.diffusion_decoder import DiffusionTts
from tortoise.utils.audio import wav_to_univnet_mel

args = read_args()
inputs = read_inputs()
clips = [inputs[f"clip_{i}"] for i in range(len(inputs))]

gpt = UnifiedVoice(**args["gpt"], checkpointing=False, train_solo_embeddings=False).eval()
randomize_(gpt, args["seed"])
save_state(gpt, "autoregressive.pth")
diffusion = DiffusionTts(**args["diffusion"], dropout=0, use_fp16=False, layer_drop=0,
                         unconditioned_percentage=0).eval()
randomize_(diffusion, args["seed"] + 1)
save_state(diffusion, "diffusion_decoder.pth")

# format_conditioning crops long clips at random.randint(0, gap): replay the starts the test chose.
starts = list(args["starts"])
api.random.randint = lambda low, high: starts.pop(0)

with torch.no_grad():
    # TextToSpeech.get_conditioning_latents, step by step (its constructor would load the official files).
    auto_conds = torch.stack([api.format_conditioning(clip, device="cpu") for clip in clips], dim=1)
    auto_latent = gpt.get_conditioning(auto_conds)
    diffusion_conds = []
    for clip in clips:
        clip = torchaudio.functional.resample(clip, 22050, 24000)
        clip = api.pad_or_truncate(clip, 102400)
        diffusion_conds.append(wav_to_univnet_mel(clip, do_normalization=False, device="cpu"))
    diffusion_latent = diffusion.get_conditioning(torch.stack(diffusion_conds, dim=1))
write_outputs({"autoregressive": auto_latent, "diffusion": diffusion_latent})
