"""Half precision: autocast to bfloat16/float16 on CUDA; float32 elsewhere, with a sentence saying why."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

__all__ = ["half_dtype", "half_precision_note", "autocast_to", "autocast_context"]


def half_dtype(device: torch.device | str) -> torch.dtype | None:
    """The reduced-precision dtype used on ``device``, or None where half precision is not used (fp32 stays).

    On CUDA: bfloat16 where the GPU supports it (Ampere and newer): it is as fast as float16 on those GPUs and has
    float32's exponent range, so large activations cannot overflow; float16 on older GPUs. Elsewhere: None, since
    CPU float16 matmuls are slow or unsupported, and autocast on MPS has not been validated for these models.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    with torch.cuda.device(device):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def half_precision_note(device: torch.device | str) -> str | None:
    """Why half precision is not used on ``device`` (one sentence), or None where it is used (CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        return ("Half precision is not used on CPU (float16 matrix products there are slow or unsupported), "
                "so this run stays in float32.")
    return (f"Half precision is used only on CUDA (autocast on {device.type} is not validated for TorToiSe), "
            "so this run stays in float32.")


def autocast_to(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """Autocast to ``dtype`` on ``device``; None: a context that changes nothing (float32)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def autocast_context(device: torch.device | str, enabled: bool) -> ContextManager:
    """Autocast to ``half_dtype(device)`` when ``enabled`` on CUDA; a context that changes nothing otherwise.

    Weights stay float32; matrix products run in half precision, norms and softmax in float32 (autocast's lists).
    """
    device = torch.device(device)
    return autocast_to(device, half_dtype(device) if enabled else None)
