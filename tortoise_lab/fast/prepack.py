"""Prepacked fp32 linear layers on CPU: the same products, laid out once for oneDNN's kernels.

A decode step multiplies a few rows (one per sample) by every weight matrix of the model. For that skinny shape
the general matrix product PyTorch calls by default reaches a third of what the CPU can do (measured in
benchmarks/README.md, "The lossless path"), because it re-blocks the weight on every call. oneDNN's inner-product
kernel reads a weight reordered once into its own blocked layout, and runs the same fp32 arithmetic two to three
times faster at batch 1-16. Only the order of the additions changes, so codes and audio stay within fp32 rounding
of the plain path (``tests/test_fast.py`` and the benchmark's ``codes = baseline`` column check it).
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

__all__ = ["prepack_available", "prepack_linears", "PackedLinear"]


def prepack_available() -> tuple[bool, str]:
    """(whether this torch build can prepack fp32 linear weights for oneDNN, why not when it cannot)."""
    if not torch.backends.mkldnn.is_available():
        return False, "this torch build has no oneDNN (mkldnn), so the decoder runs with plain weights."
    if not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False, "this torch build cannot prepack linear weights, so the decoder runs with plain weights."
    return True, ""


class PackedLinear(nn.Module):
    """y = x @ W.T + b with W (out, in) reordered once into oneDNN's blocked layout. Inference only, fp32, CPU."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows_hint: int):
        """weight: (out, in); rows_hint: the rows a call usually has (oneDNN picks the blocking for it; any count
        works)."""
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # A buffer, not a parameter: an opaque oneDNN tensor that state dicts and optimisers must not see.
        self.register_buffer("packed_weight",
                             torch.ops.mkldnn._reorder_linear_weight(weight.detach().float().contiguous(), rows_hint),
                             persistent=False)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if not rows.is_contiguous():
            rows = rows.contiguous()
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed_weight, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)


# One packed copy per model and rows hint, kept while the model lives and its weights are unchanged: every prepared
# decoder of a pipeline (one per option set) decodes with the same copy instead of packing the weights again.
_PACKED: "weakref.WeakKeyDictionary[nn.Module, dict[int, tuple[tuple[int, ...], nn.Module]]]" = (
    weakref.WeakKeyDictionary())


def prepack_linears(module: nn.Module, rows_hint: int) -> nn.Module:
    """A copy of ``module`` whose linear layers (``nn.Linear`` and GPT-2-layout ``InOutLinear``) are ``PackedLinear``.

    Every other parameter is shared with ``module`` (no second copy of embeddings or norms); the packed weights
    are new memory, the size of the fp32 linear weights. ``module`` itself is left as it was. The copy is a
    snapshot of the weights: asked again after they changed (loaded, trained: tensor versions tell), it packs anew;
    asked again with unchanged weights and the same ``rows_hint``, it returns the same copy. Each hint has its own
    copy (the main path packs for its batch, the fast path for one sample): a process running both holds two.
    """
    versions = tuple(tensor._version for tensor in module.parameters())
    copies = _PACKED.setdefault(module, {})
    cached = copies.get(rows_hint)
    if cached is not None and cached[0] == versions:
        return cached[1]
    packed = _packed_copy(module, rows_hint)
    copies[rows_hint] = (versions, packed)
    return packed


def _packed_copy(module: nn.Module, rows_hint: int) -> nn.Module:
    shared = {id(tensor): tensor for tensor in module.parameters()}  # deepcopy reuses these instead of copying
    shared.update({id(tensor): tensor for tensor in module.buffers()})
    packed = copy.deepcopy(module, memo=shared).eval()
    _pack(packed, rows_hint)
    return packed


def _pack(module: nn.Module, rows_hint: int) -> None:
    from tortoise_lab.models.gpt import InOutLinear

    for name, child in module.named_children():
        if isinstance(child, InOutLinear):
            setattr(module, name, PackedLinear(child.weight.t(), child.bias, rows_hint))
        elif isinstance(child, nn.Linear):
            setattr(module, name, PackedLinear(child.weight, child.bias, rows_hint))
        else:
            _pack(child, rows_hint)
