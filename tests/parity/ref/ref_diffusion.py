"""Reference side of tests/parity/test_diffusion.py (runs in .venv-ref).

args: {"config": DiffusionTts kwargs (small), "seed": int}
inputs: cond_mels (B, n_clips, 100, Tc), latents (B, S, in_latent_channels), codes (B, S) int64,
        x (B, 100, L), timesteps (B,) int64
writes: diffusion.pth (randomized, official-style), official_shapes.json ({key: shape} of the official-size
        model), outputs.safetensors
"""

import json

import torch
from _common import randomize_, read_args, read_inputs, save_state, workdir, write_outputs
from tortoise.models.diffusion_decoder import DiffusionTts

# api.py's inference-time options; the sizes come from args (or the official ones for the key dump).
INFERENCE_OPTIONS = dict(dropout=0, use_fp16=False, layer_drop=0, unconditioned_percentage=0)
OFFICIAL = dict(model_channels=1024, num_layers=10, in_channels=100, out_channels=200, in_latent_channels=1024,
                in_tokens=8193, num_heads=16)

args = read_args()
inputs = read_inputs()

with torch.device("meta"):
    official = DiffusionTts(**OFFICIAL, **INFERENCE_OPTIONS)
(workdir() / "official_shapes.json").write_text(
    json.dumps({k: list(v.shape) for k, v in official.state_dict().items()})
)

model = DiffusionTts(**args["config"], **INFERENCE_OPTIONS).eval()
randomize_(model, args["seed"])
save_state(model, "diffusion.pth")

x, timesteps = inputs["x"], inputs["timesteps"]
length = x.shape[-1]
with torch.no_grad():
    cond = model.get_conditioning(inputs["cond_mels"])
    emb = model.timestep_independent(inputs["latents"], cond, length, False)
    emb_codes = model.timestep_independent(inputs["codes"], cond, length, False)
    # The calls the upstream sampler makes (model_kwargs={'precomputed_aligned_embeddings': ...}).
    out = model(x, timesteps, precomputed_aligned_embeddings=emb)
    out_free = model(x, timesteps, precomputed_aligned_embeddings=emb, conditioning_free=True)
    out_codes = model(x, timesteps, precomputed_aligned_embeddings=emb_codes)
    # The non-precomputed path computes the embeddings itself; it must agree with the precomputed one.
    out_direct = model(x, timesteps, aligned_conditioning=inputs["latents"], conditioning_latent=cond)

write_outputs(dict(cond=cond, emb=emb, emb_codes=emb_codes, out=out, out_free=out_free, out_codes=out_codes,
                   out_direct=out_direct))
