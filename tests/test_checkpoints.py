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


# --------------------------------------------------------------------------- hifidecoder.pth (weight-normed, flat)


@pytest.fixture(scope="module")
def tiny_hifigan_file_state() -> dict[str, torch.Tensor]:
    """A tiny HifiganDecoder's weights in hifidecoder.pth's form: every conv but cond_layer as a weight-norm pair."""
    from tortoise_lab.models.hifigan import HifiganConfig, HifiganDecoder

    state = {}
    for key, value in HifiganDecoder(HifiganConfig.from_name("tiny")).state_dict().items():
        if key.endswith(".weight") and not key.startswith("cond_layer."):
            # direction 2w with magnitude ||w|| (norm over every dim but the first, weight norm's dim 0) folds to w
            state[key + "_v"] = 2 * value
            state[key + "_g"] = torch.linalg.vector_norm(value, dim=tuple(range(1, value.dim())), keepdim=True)
        else:
            state[key] = value
    return state


def _tiny_hifigan():
    from tortoise_lab.models.hifigan import HifiganConfig, HifiganDecoder

    return HifiganDecoder(HifiganConfig.from_name("tiny"))


def test_hifigan_file_loads_with_its_weight_norm_folded(tiny_hifigan_file_state, tmp_path):
    path = save(tiny_hifigan_file_state, tmp_path / "hifidecoder.pth")
    model = load_weights(_tiny_hifigan(), path, "hifigan")
    torch.testing.assert_close(model.ups[1].weight, tiny_hifigan_file_state["ups.1.weight_v"] / 2)
    torch.testing.assert_close(model.cond_layer.weight, tiny_hifigan_file_state["cond_layer.weight"], rtol=0, atol=0)


@pytest.mark.parametrize("removed, named", [
    ("conv_post.bias", ["missing keys: conv_post.bias"]),
    # Half a weight-norm pair: the orphan is named as unexpected, the weight it would have made as missing.
    ("resblocks.3.convs1.2.weight_v", ["missing keys: resblocks.3.convs1.2.weight", "resblocks.3.convs1.2.weight_g"]),
    ("ups.0.weight_g", ["missing keys: ups.0.weight", "unexpected keys: ups.0.weight_v"]),
])
def test_hifigan_file_missing_a_key_is_refused_by_name(tiny_hifigan_file_state, tmp_path, removed, named):
    state = {k: v for k, v in tiny_hifigan_file_state.items() if k != removed}
    path = save(state, tmp_path / "hifidecoder.pth")
    with pytest.raises(CheckpointError) as error:
        load_weights(_tiny_hifigan(), path, "hifigan")
    assert path in str(error.value) and all(text in str(error.value) for text in named), str(error.value)


@pytest.mark.parametrize("key", [
    "speaker_encoder.fc.weight",  # a module the decoder does not have
    "cond_layer.weight_g",  # half a pair beside a plain weight
    "conv_post.weight_g",  # a plain weight beside its pair: which one is meant? neither is taken silently
])
def test_hifigan_file_with_an_unexpected_key_is_refused_by_name(tiny_hifigan_file_state, tmp_path, key):
    state = dict(tiny_hifigan_file_state)
    if key == "conv_post.weight_g":
        state["conv_post.weight"] = _tiny_hifigan().conv_post.weight.detach().clone()
    else:
        state[key] = torch.zeros(1)
    path = save(state, tmp_path / "hifidecoder.pth")
    with pytest.raises(CheckpointError, match="unexpected keys") as error:
        load_weights(_tiny_hifigan(), path, "hifigan")
    assert path in str(error.value) and key in str(error.value)


def test_load_hifigan_without_the_file_says_how_to_fetch_it(tmp_path):
    from tortoise_lab.assets import AssetError
    from tortoise_lab.models.hifigan import load_hifigan

    with pytest.raises(AssetError, match=f"tortoise-lab download --files hifidecoder.pth --models-dir {tmp_path}"):
        load_hifigan(tmp_path, device="cpu", size="tiny")
