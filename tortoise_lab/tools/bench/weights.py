"""The benchmark's random weights made by ours, for a machine without the reference environment (a lent GPU machine,
where upstream's transformers 4.31 cannot be installed).

``tortoise-lab bench`` normally has the reference environment make them (``benchmarks/ref_bench.py weights``). This
applies the same recipe to our own networks: every float tensor of each state dict drawn from its own seed with a
well-scaled value (matrices std 1/sqrt(fan-in), norm scales 1 +- 0.1, other vectors std 0.1: ``randomize_`` of
``tests/parity/ref/_common.py``, which imports nothing from us), UnivNet's predicted kernels tamed to a weight-like
size, and the files saved in the official formats with the stamp ``ensure_weights`` looks for. The bench then loads
them as it loads the reference's, and measures the same work. The values are not the reference's (its networks
draw in another order), so codes and audio compare only with runs on the same files.

    make_weights("tortoise-v2", weights_dir)  # weights_dir / "tortoise-v2-seed1234", about 3.7 GB
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import torch

from tortoise_lab.tools.bench.configs import WEIGHT_FILES, WEIGHTS_SEED, WEIGHTS_STAMP

__all__ = ["make_weights", "weights_folder", "weights_complete", "randomize_"]

MADE_BY = "tortoise_lab.tools.bench.weights"


def weights_folder(size: str, weights_dir: Path | None = None, seed: int = WEIGHTS_SEED) -> Path:
    """Where the shared random weights of ``size`` and ``seed`` live (the reference's or ours)."""
    if weights_dir is None:
        from tortoise_lab.assets import data_dir

        weights_dir = data_dir() / "bench-weights"
    return Path(weights_dir) / f"{size}-seed{seed}"


def weights_complete(folder: Path) -> bool:
    """Whether ``folder`` holds every weight file and the stamp written after them (a finished set)."""
    return (folder / WEIGHTS_STAMP).is_file() and all((folder / name).is_file() for name in WEIGHT_FILES)


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every float tensor of ``module``'s state dict a random, well-scaled value (in place), so that no path is
    trivially zero (fresh networks zero some output layers): matrices std 1/sqrt(fan-in), norm scales 1 +- 0.1,
    other vectors std 0.1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():  # the state dict's tensors share the module's storage
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            if tensor.dim() >= 2:
                value = noise / math.sqrt(tensor[0].numel())
            elif name.endswith(("weight", "weight_g", ".g", "gamma")):
                value = 1 + 0.1 * noise
            else:
                value = 0.1 * noise
            tensor.copy_(value.to(tensor.dtype))
    return module


def _tame_kernel_predictors_(vocoder) -> None:
    """Scale each predicted LVC kernel to 1/sqrt(its fan-in) (in channels x kernel size): with plain random weights
    the predicted kernels are ~sqrt(fan-in) too large and the full-size UnivNet's activations grow into inf."""
    from tortoise_lab.models.vocoder import LVC_KERNEL_SIZE

    with torch.no_grad():
        for block in vocoder.res_stack:
            predictor = block.kernel_predictor
            scale = 1 / math.sqrt(predictor.conv_in_channels * LVC_KERNEL_SIZE)
            predictor.kernel_conv.weight.mul_(scale)
            predictor.kernel_conv.bias.mul_(scale)


def make_weights(size: str, weights_dir: Path | None = None, seed: int = WEIGHTS_SEED,
                 log: Callable[[str], None] = print) -> Path:
    """The folder of random ``size`` weights for ``seed`` (``weights_folder``), made here unless it is complete."""
    from tortoise_lab.files import atomic_dir, write_json
    from tortoise_lab.model_set import random_models

    folder = weights_folder(size, weights_dir, seed)
    if weights_complete(folder):
        return folder
    log(f"Making random {size} weights in {folder} with our networks (no reference environment needed)...")
    models = random_models(size, seed)
    parts = {"autoregressive.pth": (models.gpt, None), "diffusion_decoder.pth": (models.diffusion, None),
             "clvp2.pth": (models.clvp, None), "vocoder.pth": (models.vocoder, "model_g"),
             "hifidecoder.pth": (models.hifigan, None)}
    assert tuple(parts) == WEIGHT_FILES
    with atomic_dir(folder, replace=True) as staged:
        for offset, (name, (module, wrap)) in enumerate(parts.items()):
            randomize_(module, seed + offset)  # each file from its own seed, as the reference makes them
            if name == "vocoder.pth":
                _tame_kernel_predictors_(module)
            state = module.state_dict()
            torch.save({wrap: state} if wrap else state, staged / name)
        write_json(staged / WEIGHTS_STAMP, {"size": size, "seed": seed, "files": list(WEIGHT_FILES),
                                            "made_by": MADE_BY})
    return folder
