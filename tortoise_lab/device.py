"""Which torch device to run on: the one asked for, checked, or the best one present.

Validation happens here, at the boundary, so a missing GPU is one clear sentence instead of a CUDA stack trace
halfway through synthesis. Unset, the choice is ``$TORTOISE_LAB_DEVICE`` when set (a notebook server or a test
run pinned to one device), else "auto".
"""

from __future__ import annotations

import os

import torch

__all__ = ["DEVICE_CHOICES", "AUTO_PREFERENCE", "DEVICE_VARIABLE", "choose_device"]

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")  # "cuda:N" selects one GPU of several
AUTO_PREFERENCE = ("cuda", "mps", "cpu")  # fastest first for TorToiSe's workload
DEVICE_VARIABLE = "TORTOISE_LAB_DEVICE"  # the device an unset choice means (default: auto)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _is_available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return _mps_available()
    return kind == "cpu"


def choose_device(requested: str | None = None) -> torch.device:
    """The torch.device for ``requested`` ("cuda", "cuda:N", "mps", "cpu"; "auto" picks cuda, mps, cpu; None
    is ``$TORTOISE_LAB_DEVICE`` when set, else auto).

    Raises ValueError, in one sentence, for an unknown name or a device torch cannot see.
    """
    if requested is None:
        requested = os.environ.get(DEVICE_VARIABLE) or "auto"
    name = requested.strip().lower()
    if name == "auto":
        return torch.device(next(kind for kind in AUTO_PREFERENCE if _is_available(kind)))

    kind, _, index = name.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"Unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)} "
                         "(or cuda:N), or leave it unset to pick the best available.")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("cuda requested but torch sees no CUDA device; use --device cpu (or leave --device "
                             "unset to pick the best available).")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"{name} requested but torch sees only {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    if kind == "mps" and not _mps_available():
        raise ValueError("mps requested but torch sees no Apple MPS device; use --device cpu (or leave --device "
                         "unset to pick the best available).")
    return torch.device(name)
