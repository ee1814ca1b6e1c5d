"""torch.compile of the decode step: a new callable, the original left as it was."""

from __future__ import annotations

import torch

__all__ = ["COMPILED_CACHE_BUCKET", "compile_decode_step"]

COMPILED_CACHE_BUCKET = 128  # KV-cache lengths for a compiled decode step are multiples of this


def compile_decode_step(decode_step, device: torch.device | str = "cpu"):
    """A torch.compile'd copy of ``decode_step`` for ``device``; the original is left as it was.

    CUDA uses mode "reduce-overhead" (CUDA graphs: one launch per step instead of one per kernel, which is where
    small-batch decoding loses its time); CPU uses the default mode. ``dynamic=False``: a step's shapes are fixed
    by the static KV cache, so one graph per (batch, cache length) is compiled, the first call being the slow one.
    Only the decode step is compiled; the prefill runs once per utterance and is not worth a compile.
    """
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else "default"
    return torch.compile(decode_step, mode=mode, dynamic=False, fullgraph=True)
