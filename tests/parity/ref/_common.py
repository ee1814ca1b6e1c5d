"""Shared helpers for the reference-side scripts.

These scripts run inside the reference environment (``.venv-ref``: tortoise-tts 3.0.0, transformers 4.31) as
``python tests/parity/ref/<script>.py WORKDIR``. They read ``WORKDIR/args.json`` and, when present,
``WORKDIR/inputs.safetensors``, and write ``WORKDIR/outputs.safetensors`` plus any weight files the test asked
for. They import nothing from tortoise_lab: the two implementations meet only through files.
"""

import contextlib
import json
import math
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

warnings.filterwarnings("ignore")


def workdir() -> Path:
    return Path(sys.argv[1])


def read_args() -> dict:
    return json.loads((workdir() / "args.json").read_text())


def read_inputs() -> dict:
    path = workdir() / "inputs.safetensors"
    return load_file(str(path)) if path.exists() else {}


def write_outputs(outputs: dict) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in outputs.items()}, str(workdir() / "outputs.safetensors"))


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every float parameter and buffer a random, well-scaled value, so that no path is trivially zero.

    Freshly built models zero some output layers (diffusion's ``zero_module``); comparing those would prove
    nothing. Matrices get std 1/sqrt(fan_in), norm scales 1 +- 0.1, vectors std 0.1.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            if tensor.dim() >= 2:
                fan_in = tensor[0].numel()
                value = noise / math.sqrt(fan_in)
            elif name.endswith("weight") or name.endswith("weight_g") or name.endswith(".g") or name.endswith("gamma"):
                value = 1 + 0.1 * noise
            else:
                value = 0.1 * noise
            tensor.copy_(value.to(tensor.dtype))
    return module


def save_state(module: torch.nn.Module, name: str, wrap: str = None) -> Path:
    """Save a state dict the way the official files are saved (a torch pickle of plain tensors)."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if wrap is not None:
        state = {wrap: state}
    path = workdir() / name
    torch.save(state, path)
    return path


def tame_kernel_predictors_(model):
    """Scale each predicted LVC kernel to a weight-like size, 1/sqrt(fan-in) of the LVC (in channels x kernel).

    With plain random weights the predicted kernels are ~sqrt(fan-in) times too large and the full-size generator
    becomes chaotic: a 1e-7 relative change of its input moves the waveform by ~0.08, so a one-ulp difference
    in summation order would fail any parity test. Scaled, the same change moves it by ~2e-6.
    """
    with torch.no_grad():
        for block in model.res_stack:
            predictor = block.kernel_predictor
            scale = 1 / math.sqrt(predictor.conv_in_channels * predictor.conv_kernel_size)
            predictor.kernel_conv.weight_g.mul_(scale)
            predictor.kernel_conv.bias.mul_(scale)


@contextlib.contextmanager
def cuda_means_cpu():
    """api_fast's HifiganGenerator.inference ends with ``.to("cuda")``; on a CUDA-less machine let that mean the CPU,
    so the method itself runs unchanged (its interpolation and its speaker reshaping are part of what is compared)."""
    plain_to = torch.Tensor.to

    def to(self, *a, **kw):
        return plain_to(self, *(("cpu",) + a[1:] if a and a[0] == "cuda" else a), **kw)

    torch.Tensor.to = to
    try:
        yield
    finally:
        torch.Tensor.to = plain_to
