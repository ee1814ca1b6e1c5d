"""Reference side of tests/parity/test_vocoder.py (runs in .venv-ref).

args: {"cases": {name: {"config": UnivNetGenerator kwargs, "seed": int, "noise_seed": int}}}
inputs: for each case NAME: NAME.mel (B, 100, T), NAME.noise (B, noise_dim, T),
        NAME.noise_padded (B, noise_dim, T + 10)
writes: NAME.pth ({'model_g': state} with weight_g/weight_v, saved before weight norm is removed),
        official_shapes.json ({key: shape} of UnivNetGenerator() as stored, weight-normed), outputs.safetensors
"""

import json

import torch
from _common import randomize_, read_args, read_inputs, save_state, tame_kernel_predictors_, workdir, write_outputs
from tortoise.models.vocoder import UnivNetGenerator


args = read_args()
inputs = read_inputs()

with torch.device("meta"):
    official = UnivNetGenerator()
(workdir() / "official_shapes.json").write_text(
    json.dumps({k: list(v.shape) for k, v in official.state_dict().items()})
)

outputs = {}
for name, case in args["cases"].items():
    model = UnivNetGenerator(**case["config"])
    randomize_(model, case["seed"])
    tame_kernel_predictors_(model)
    save_state(model, f"{name}.pth", wrap="model_g")
    with torch.no_grad():
        # Weight-normed forward (training form) for the record, then the inference form api.py uses.
        model.eval()
        outputs[f"{name}.wn_forward"] = model(inputs[f"{name}.mel"], inputs[f"{name}.noise"])
        model.eval(inference=True)
        pre_tanh = {}
        hook = model.conv_post[1].register_forward_hook(lambda m, i, o: pre_tanh.__setitem__("value", o))
        outputs[f"{name}.forward"] = model(inputs[f"{name}.mel"], inputs[f"{name}.noise"])
        outputs[f"{name}.pre_tanh"] = pre_tanh["value"]
        hook.remove()
        outputs[f"{name}.inference"] = model.inference(inputs[f"{name}.mel"], inputs[f"{name}.noise_padded"])
        torch.manual_seed(case["noise_seed"])
        outputs[f"{name}.inference_seeded"] = model.inference(inputs[f"{name}.mel"])
write_outputs(outputs)
