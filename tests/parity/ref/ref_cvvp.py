"""Reference side of the CVVP parity tests (runs in .venv-ref).

args: {"mode": "official_keys"} -> writes keys.json ({key: shape}) of the official-size model (as api.py builds it).
args: {"mode": "parity", "config": {...CVVP kwargs...}, "seed": int} with inputs cond_mels (B, 80, T),
      mel_codes (B, Tm), clips (N, 80, T) -> saves cvvp.pth (randomized weights) and writes the upstream scores,
      and the clip-averaged scores computed the way api.py's tts() does.
"""

import json

import torch

from _common import randomize_, read_args, read_inputs, save_state, workdir, write_outputs
from tortoise.models.cvvp import CVVP

OFFICIAL = dict(model_dim=512, transformer_heads=8, dropout=0, mel_codes=8192, conditioning_enc_depth=8,
                cond_mask_percentage=0, speech_enc_depth=8, speech_mask_percentage=0, latent_multiplier=1)


def main():
    args = read_args()
    if args["mode"] == "official_keys":
        with torch.device("meta"):
            model = CVVP(**OFFICIAL)
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        (workdir() / "keys.json").write_text(json.dumps(shapes))
        return
    model = CVVP(**args["config"]).eval()
    randomize_(model, args["seed"])
    save_state(model, "cvvp.pth")
    inputs = read_inputs()
    cond_mels, codes, clips = inputs["cond_mels"], inputs["mel_codes"].long(), inputs["clips"]
    with torch.no_grad():
        scores = model(cond_mels, codes, return_loss=False)
        # api.py: each reference clip repeated over the candidates, scores averaged over the clips.
        total = 0
        for clip in range(clips.shape[0]):
            total = total + model(clips[clip:clip + 1].repeat(codes.shape[0], 1, 1), codes, return_loss=False)
        clip_mean = total / clips.shape[0]
    write_outputs({"scores": scores, "clip_mean_scores": clip_mean})


if __name__ == "__main__":
    main()
