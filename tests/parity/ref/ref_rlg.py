"""Reference side of tests/parity/test_random_latent.py (runs in .venv-ref).

args: {"channels": [int, ...], "seed": int, "noise_seed": int, "batch": int}
inputs: noise_C (B, C) for each C
writes: rlg_C.pth for each C (randomized, official-style), official_shapes.json ({"auto": {key: shape},
        "diffuser": {...}} at the official widths), outputs.safetensors
"""

import json

import torch
from _common import randomize_, read_args, read_inputs, save_state, workdir, write_outputs
from tortoise.models.random_latent_generator import RandomLatentConverter

# api.py: rlg_auto.pth is RandomLatentConverter(1024), rlg_diffuser.pth RandomLatentConverter(2048).
OFFICIAL = {"auto": 1024, "diffuser": 2048}

args = read_args()
inputs = read_inputs()

shapes = {}
for name, channels in OFFICIAL.items():
    with torch.device("meta"):
        shapes[name] = {k: list(v.shape) for k, v in RandomLatentConverter(channels).state_dict().items()}
(workdir() / "official_shapes.json").write_text(json.dumps(shapes))

outputs = {}
for channels in args["channels"]:
    model = RandomLatentConverter(channels).eval()
    randomize_(model, args["seed"] + channels)
    save_state(model, f"rlg_{channels}.pth")
    with torch.no_grad():
        outputs[f"from_noise_{channels}"] = model.layers(inputs[f"noise_{channels}"])
        # api.py's call: the argument only gives the batch size; the noise comes from the global RNG.
        torch.manual_seed(args["noise_seed"])
        outputs[f"seeded_{channels}"] = model(torch.zeros(args["batch"]))
write_outputs(outputs)
