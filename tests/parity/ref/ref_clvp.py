"""Reference side of the CLVP parity tests (runs in .venv-ref).

args: {"mode": "official_keys"} -> writes keys.json ({key: shape}) of the official-size model (as api.py builds it).
args: {"mode": "parity", "config": {...CLVP kwargs...}, "seed": int} with inputs text_tokens (B, Tt), mel_codes (B, Tm)
      -> saves clvp.pth (randomized weights) and writes the upstream scores, plus each side's latents.
"""

import json

import torch
import torch.nn.functional as F

from _common import randomize_, read_args, read_inputs, save_state, workdir, write_outputs
from tortoise.models.clvp import CLVP

OFFICIAL = dict(dim_text=768, dim_speech=768, dim_latent=768, num_text_tokens=256, text_enc_depth=20,
                text_seq_len=350, text_heads=12, num_speech_tokens=8192, speech_enc_depth=20, speech_heads=12,
                speech_seq_len=430, use_xformers=True)


def latents(model, tokens, emb, transformer, to_latent):
    # Upstream forward at eval, one side only: all-true mask, masked mean, projection, unit length.
    mask = torch.ones_like(tokens, dtype=torch.bool)
    encoded = transformer(emb(tokens), mask=mask)
    mean = encoded.masked_fill(~mask[:, :, None], 0.0).sum(dim=1) / mask.sum(dim=1)[..., None]
    return F.normalize(to_latent(mean), p=2, dim=-1)


def main():
    args = read_args()
    if args["mode"] == "official_keys":
        with torch.device("meta"):
            model = CLVP(**OFFICIAL)
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        (workdir() / "keys.json").write_text(json.dumps(shapes))
        return
    model = CLVP(**args["config"], use_xformers=True).eval()
    randomize_(model, args["seed"])
    save_state(model, "clvp.pth")
    inputs = read_inputs()
    text, codes = inputs["text_tokens"].long(), inputs["mel_codes"].long()
    with torch.no_grad():
        scores = model(text, codes, return_loss=False)
        text_latents = latents(model, text, model.text_emb, model.text_transformer, model.to_text_latent)
        speech_latents = latents(model, codes, model.speech_emb, model.speech_transformer, model.to_speech_latent)
    write_outputs({"scores": scores, "text_latents": text_latents, "speech_latents": speech_latents})


if __name__ == "__main__":
    main()
