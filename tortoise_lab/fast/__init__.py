"""Speed-ups, each a wrapper that takes a model or a function and returns a new one: half precision
(``half``), torch.compile of the decode step (``compile``), int8 linear layers on CPU (``int8``) and DeepSpeed's
fused kernels on CUDA (``deepspeed``) are opt-in; fp32 linear weights prepacked for oneDNN on CPU (``prepack``) are
on by default, since they compute the same numbers faster. Nothing rebinds module globals; optional packages are
imported only when asked for. ``stages.sampling.prepare_decoder`` applies the ones a run's ``InferenceOptions`` asks for and says,
in plain sentences, which were asked for but not used and why.
"""

from tortoise_lab.fast.compile import COMPILED_CACHE_BUCKET, compile_decode_step
from tortoise_lab.fast.deepspeed import (DEEPSPEED_NEEDS_CUDA, PYTORCH_INSTEAD, DeepSpeedDecoder, deepspeed_available,
                                         deepspeed_decoder, deepspeed_off_cuda_note)
from tortoise_lab.fast.half import autocast_context, half_dtype, half_precision_note
from tortoise_lab.fast.int8 import INT8_CPU_ONLY, quantize_int8
from tortoise_lab.fast.prepack import prepack_available, prepack_linears

__all__ = ["COMPILED_CACHE_BUCKET", "compile_decode_step", "DEEPSPEED_NEEDS_CUDA", "PYTORCH_INSTEAD",
           "DeepSpeedDecoder", "deepspeed_available", "deepspeed_decoder", "deepspeed_off_cuda_note",
           "autocast_context", "half_dtype", "half_precision_note", "INT8_CPU_ONLY", "quantize_int8",
           "prepack_available", "prepack_linears"]
