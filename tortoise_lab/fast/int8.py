"""int8 dynamic quantization of linear layers on CPU: a new module, several times faster there, and lossy."""

from __future__ import annotations

from torch import nn

__all__ = ["INT8_CPU_ONLY", "quantize_int8"]

INT8_CPU_ONLY = "int8 quantization uses CPU kernels; on {device} the model runs unquantized."


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose linear layers compute in int8 (dynamic quantization: int8 weights, activations
    quantized per batch). On CPU it makes the AR decoder's matrix products several times faster; it is lossy, so
    the output changes (measured by the benchmark). Uses torch.ao's eager dynamic quantization, deprecated upstream
    but present in the torch release this project pins.

    Memory: the copy shares every non-linear parameter with ``module`` and quantizes one linear layer at a time,
    so it costs the int8 weights, not a second fp32 model.
    """
    import copy

    shared = {id(tensor): tensor for tensor in module.parameters()}  # deepcopy reuses these instead of copying
    quantized = copy.deepcopy(module, memo=shared).eval()
    _quantize_linears(quantized)
    return quantized


def _quantize_linears(module: nn.Module) -> None:
    """Replace every linear layer (nn.Linear, or GPT-2-layout [in, out] ones) by a dynamic int8 one, in place."""
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import default_dynamic_qconfig

    from tortoise_lab.models.gpt import InOutLinear

    for name, child in module.named_children():
        if isinstance(child, (nn.Linear, InOutLinear)):
            weight = child.weight.t() if isinstance(child, InOutLinear) else child.weight  # (out, in)
            float_linear = nn.Linear(weight.shape[1], weight.shape[0], bias=child.bias is not None)
            float_linear.weight = nn.Parameter(weight.detach().float().cpu(), requires_grad=False)
            if child.bias is not None:
                float_linear.bias = nn.Parameter(child.bias.detach().float().cpu(), requires_grad=False)
            float_linear.qconfig = default_dynamic_qconfig
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao's deprecation notices, once per layer
                setattr(module, name, DynamicInt8Linear.from_float(float_linear))
        else:
            _quantize_linears(child)
