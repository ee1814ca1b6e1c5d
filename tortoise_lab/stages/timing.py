"""Seconds per stage, summed over a run's chunks (CUDA work is waited for, so a stage's time is its own)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

__all__ = ["StageTimer"]


class StageTimer:
    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
