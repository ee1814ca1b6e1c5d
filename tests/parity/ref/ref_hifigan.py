"""Reference side of tests/parity/test_hifigan.py (runs in .venv-ref).

args: {"cases": {name: {"config": HifiganGenerator kwargs, "seed": int}}}
inputs: for each case NAME: NAME.latents (B, L, in_channels), NAME.speaker (1, cond_channels)
writes: NAME.pth (the randomized state dict as hifidecoder.pth holds it: flat, weight_g/weight_v, saved with
        torch.save), official_shapes.json ({key: shape} of the generator exactly as api_fast builds it),
        outputs.safetensors: NAME.features (what inference hands to forward), NAME.pre_tanh, NAME.inference
"""

import json

import torch
from _common import cuda_means_cpu, randomize_, read_args, read_inputs, save_state, workdir, write_outputs
from tortoise.models.hifigan_decoder import HifiganGenerator

# api_fast.TextToSpeech's constructor arguments for hifidecoder.pth.
API_FAST = dict(in_channels=1024, out_channels=1, resblock_type="1",
                resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], resblock_kernel_sizes=[3, 7, 11],
                upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=512, upsample_factors=[8, 8, 2, 2],
                cond_channels=1024)


args = read_args()
inputs = read_inputs()

with torch.device("meta"):
    official = HifiganGenerator(**API_FAST)
(workdir() / "official_shapes.json").write_text(
    json.dumps({k: list(v.shape) for k, v in official.state_dict().items()})
)

outputs = {}
for name, case in args["cases"].items():
    model = HifiganGenerator(**case["config"]).eval()  # weight norm kept, as api_fast runs it
    randomize_(model, case["seed"])
    save_state(model, f"{name}.pth")
    seen = {}
    hooks = [
        model.conv_pre.register_forward_pre_hook(lambda m, i: seen.__setitem__("features", i[0])),
        model.conv_post.register_forward_hook(lambda m, i, o: seen.__setitem__("pre_tanh", o)),
    ]
    with torch.no_grad(), cuda_means_cpu():
        outputs[f"{name}.inference"] = model.inference(inputs[f"{name}.latents"], inputs[f"{name}.speaker"])
    for hook in hooks:
        hook.remove()
    outputs[f"{name}.features"] = seen["features"]
    outputs[f"{name}.pre_tanh"] = seen["pre_tanh"]
write_outputs(outputs)
