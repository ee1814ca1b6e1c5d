"""Strict, safe checkpoint loading, and the one map from official key names to ours.

Every official TorToiSe file is read with ``torch.load(weights_only=True)`` (no pickled code runs) or from
``.safetensors``. Keys are translated by the table ``FORMATS`` below and then must match the model exactly:
a missing or unexpected key stops the load with a message naming the file and the keys.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tortoise_lab.files import atomic_path

__all__ = [
    "CheckpointError",
    "CheckpointFormat",
    "FORMATS",
    "read_state_dict",
    "to_our_keys",
    "load_weights",
    "save_safetensors",
]

_SHOWN_KEYS = 8  # how many mismatching keys an error message lists


class CheckpointError(RuntimeError):
    """A weights file that cannot be read, or whose keys or shapes do not fit the model."""


@dataclass(frozen=True)
class CheckpointFormat:
    """How one official weights file maps onto one of our modules."""

    filename: str
    # The official file wraps its state dict under this key (vocoder.pth: {"model_g": ...}).
    nested: str | None = None
    # (regex on an official key, replacement) applied in order; keys that match none keep their name.
    renames: tuple[tuple[str, str], ...] = ()
    # Keys an official file holds that no current model has. Named exactly, never a catch-all:
    # anything else unexpected is an error.
    dead_keys: tuple[str, ...] = ()
    # Fold ``weight_g``/``weight_v`` pairs (torch weight norm, dim 0) into a plain ``weight``.
    fold_weight_norm: bool = False
    # Official keys whose tensor is stored transposed relative to ours (after renaming), by regex.
    transposed: tuple[str, ...] = field(default_factory=tuple)


# Inside an x-transformers encoder (CLVP, CVVP) upstream nests each sub-layer as ``layers.<i>.0.0`` (its
# pre-norm), ``layers.<i>.1`` (the branch, wrapped once more in ``.wrap`` by CLVP's checkpointing) and
# ``layers.<i>.2`` (a residual without parameters). Our TransformerEncoder keeps the index <i> (even:
# attention, odd: feed-forward) and puts the norm inside the sub-layer.
_XTRANSFORMER_RENAMES: tuple[tuple[str, str], ...] = (
    (r"(.+)\.layers\.(\d+)\.0\.0\.g", r"\1.layers.\2.norm.g"),
    (r"(.+)\.layers\.(\d+)\.1\.(?:wrap\.)?(to_q|to_k|to_v|to_out)\.(weight|bias)", r"\1.layers.\2.\3.\4"),
    (r"(.+)\.layers\.(\d+)\.1\.(?:wrap\.)?net\.0\.proj\.(weight|bias)", r"\1.layers.\2.proj_in.\3"),
    (r"(.+)\.layers\.(\d+)\.1\.(?:wrap\.)?net\.3\.(weight|bias)", r"\1.layers.\2.proj_out.\3"),
    (r"(.+)\.rotary_pos_emb\.inv_freq", r"\1.rotary.inv_freq"),
)

# The one visible key-translation map. Our modules mostly keep the official names, so most entries are empty.
FORMATS: dict[str, CheckpointFormat] = {
    # autoregressive.pth was saved by an old transformers whose GPT-2 attention kept its causal mask and
    # masked-bias constant as persistent buffers; they carry no learned information.
    "autoregressive": CheckpointFormat(
        filename="autoregressive.pth",
        dead_keys=(r"gpt\.h\.\d+\.attn\.bias", r"gpt\.h\.\d+\.attn\.masked_bias"),
    ),
    "diffusion": CheckpointFormat(filename="diffusion_decoder.pth"),
    # CLVP's two encoders sit three wrappers deep upstream (checkpointing wrapper, x-transformers wrapper,
    # attention layers); ours are plain TransformerEncoders.
    "clvp": CheckpointFormat(
        filename="clvp2.pth",
        renames=(
            (r"(text|speech)_transformer\.transformer\.attn_layers\.(.+)", r"\1_transformer.\2"),
            (r"(text|speech)_transformer\.transformer\.norm\.(weight|bias)", r"\1_transformer.norm.\2"),
            *_XTRANSFORMER_RENAMES,
        ),
    ),
    # CVVP's pooling encoders keep their ``transformer`` attribute (a TransformerEncoder) beside ``pre_combiner``.
    "cvvp": CheckpointFormat(
        filename="cvvp.pth",
        renames=(
            (r"(conditioning|speech)_transformer\.transformer\.attn_layers\.(.+)", r"\1_transformer.transformer.\2"),
            # Upstream wraps the code embedding in a module that only permutes its output.
            (r"speech_emb\.emb\.weight", "speech_emb.weight"),
            *_XTRANSFORMER_RENAMES,
        ),
    ),
    "vocoder": CheckpointFormat(filename="vocoder.pth", nested="model_g", fold_weight_norm=True),
    # The fast path's HiFiGAN decoder: a flat state dict (no wrapper) of weight-normed convs, folded like the vocoder's.
    "hifigan": CheckpointFormat(filename="hifidecoder.pth", fold_weight_norm=True),
    # The redaction aligner is a transformers Wav2Vec2ForCTC (the hub's pytorch_model.bin). Files written by
    # torch before parametrized weight norm name the positional convolution's norm pair weight_g/weight_v.
    "aligner": CheckpointFormat(
        filename="pytorch_model.bin",
        renames=(
            (r"(.+)\.weight_g", r"\1.parametrizations.weight.original0"),
            (r"(.+)\.weight_v", r"\1.parametrizations.weight.original1"),
        ),
    ),
    "rlg_auto": CheckpointFormat(filename="rlg_auto.pth"),
    # Not TorToiSe's: Resemblyzer 0.1.4's speaker encoder (voices/similarity.py), its training checkpoint. The two
    # scalars of the GE2E loss (the scale and offset of its similarity matrix) are training state, not the encoder.
    "speaker_encoder": CheckpointFormat(filename="pretrained.pt", nested="model_state",
                                        dead_keys=("similarity_weight", "similarity_bias")),
    "rlg_diffuser": CheckpointFormat(filename="rlg_diffuser.pth"),
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth`` file of plain tensors; refuse pickled objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {path} does not exist; run `tortoise-lab download` or check --models-dir.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        # Memory-mapped where the file allows it (torch's zip format); files in the legacy format read whole.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise CheckpointError(
            f"{path} is not a plain-tensor checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "tortoise_lab only loads weights-only files and never runs pickled code."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a dict of tensors.")
    return state


def _fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    folded: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        stem, _, half = key.rpartition("_")
        # A pair folds only when both halves are there and no plain weight of the same name is; anything else (an
        # orphaned half, a pair beside a plain weight) stays as it is, so check_keys names it.
        if not (stem.endswith(".weight") and half in ("g", "v") and f"{stem}_g" in state and f"{stem}_v" in state
                and stem not in state):
            folded[key] = value
        elif half == "g":
            # torch's weight norm at its default dim 0, for every layer type (Conv1d, and ConvTranspose1d, whose
            # dim 0 is the *input* channel): weight = v * g / ||v||, the norm over every dim but the first.
            # torch's own kernel, so the folded weights equal upstream's remove_weight_norm bit for bit (a
            # hand-written g * v / norm differs by an ulp, which random-weight UnivNets amplify to ~1e-2).
            folded[stem] = torch._weight_norm(state[f"{stem}_v"], value, 0)
    return folded


def to_our_keys(fmt: CheckpointFormat, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate an official state dict into our key names (the dead keys of ``fmt`` dropped)."""
    if fmt.nested is not None and fmt.nested in state and isinstance(state[fmt.nested], dict):
        state = state[fmt.nested]
    dead = [re.compile(pattern) for pattern in fmt.dead_keys]
    state = {k: v for k, v in state.items() if not any(p.fullmatch(k) for p in dead)}
    if fmt.fold_weight_norm:
        state = _fold_weight_norm(state)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new_key = key
        for pattern, replacement in fmt.renames:
            new_key = re.sub(f"^{pattern}$", replacement, new_key)
        if any(re.fullmatch(p, new_key) for p in fmt.transposed):
            value = value.transpose(0, 1)
        renamed[new_key] = value
    return renamed


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (and {len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def check_keys(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ``CheckpointError`` unless ``state`` has exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__} ({'; '.join(parts)}). "
            "Is it the right file for this model and size?"
        )
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in expected if state[k].shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{source} has tensors of the wrong shape for {type(model).__name__}: {_describe(wrong)}.")


def load_weights(model: nn.Module, path: str | Path, fmt: CheckpointFormat | str | None = None) -> nn.Module:
    """Load ``path`` into ``model`` with strict keys and shapes; official names are translated by ``fmt``.

    ``fmt`` may be a ``FORMATS`` key, a ``CheckpointFormat``, or None for a file already in our key names
    (what ``save_safetensors`` writes).
    """
    if isinstance(fmt, str):
        fmt = FORMATS[fmt]
    state = read_state_dict(path)
    if fmt is not None:
        state = to_our_keys(fmt, state)
    check_keys(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model


def save_safetensors(model_or_state: nn.Module | dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict (contiguous, our key names) as safetensors, atomically."""
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    path = Path(path)
    with atomic_path(path) as scratch:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(scratch))
    return path
