"""Strict checkpoint loading: known dead keys are dropped, anything else that does not fit stops the load."""

from __future__ import annotations

import pytest
import torch

from tortoise_lab.checkpoints import CheckpointError, load_weights
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    """A tiny UnifiedVoice's state dict plus the causal-mask buffers the official autoregressive.pth carries."""
    config = GPTConfig.from_name("tiny")
    state = UnifiedVoice(config).state_dict()
    positions = config.mel_positions + config.text_positions
    for i in range(config.layers):
        state[f"gpt.h.{i}.attn.bias"] = torch.tril(torch.ones(positions, positions, dtype=torch.uint8))[None, None]
        state[f"gpt.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return state


def save(state: dict, path) -> str:
    torch.save(state, path)
    return str(path)


def test_official_style_file_loads_without_its_dead_buffers(tiny_state, tmp_path):
    path = save(tiny_state, tmp_path / "autoregressive.pth")
    model = load_weights(UnifiedVoice(GPTConfig.from_name("tiny")), path, "autoregressive")
    torch.testing.assert_close(model.mel_head.weight, tiny_state["mel_head.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.gpt.h[1].attn.c_attn.weight, tiny_state["gpt.h.1.attn.c_attn.weight"],
                               rtol=0, atol=0)


@pytest.mark.parametrize("key", [
    "gpt.h.0.attn.foo",  # not a known dead buffer
    "conditioning_encoder.attn.0.attn.bias",  # the dead-buffer name, but outside the GPT-2 blocks
    "gpt.h.0.attn.bias.extra",
])
def test_unexpected_key_is_refused_by_name(tiny_state, tmp_path, key):
    path = save({**tiny_state, key: torch.zeros(1)}, tmp_path / "autoregressive.pth")
    with pytest.raises(CheckpointError, match="unexpected keys") as error:
        load_weights(UnifiedVoice(GPTConfig.from_name("tiny")), path, "autoregressive")
    assert path in str(error.value) and key in str(error.value)


def test_missing_key_is_refused_by_name(tiny_state, tmp_path):
    state = dict(tiny_state)
    del state["gpt.h.1.mlp.c_fc.bias"]
    path = save(state, tmp_path / "autoregressive.pth")
    with pytest.raises(CheckpointError, match="missing keys: gpt.h.1.mlp.c_fc.bias") as error:
        load_weights(UnifiedVoice(GPTConfig.from_name("tiny")), path, "autoregressive")
    assert path in str(error.value)


def test_wrong_size_is_refused(tiny_state, tmp_path):
    path = save(tiny_state, tmp_path / "autoregressive.pth")
    bigger = GPTConfig(**{**GPTConfig.from_name("tiny").to_dict(), "max_mel_tokens": 61})
    with pytest.raises(CheckpointError, match="mel_pos_embedding.emb.weight"):
        load_weights(UnifiedVoice(bigger), path, "autoregressive")
