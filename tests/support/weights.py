"""Weights for unit tests: random but well-scaled, so no branch of a tiny model is trivially zero."""

import torch


def seeded(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random, well-scaled weights: matrices std 1/sqrt(fan_in), vectors 1 +- 0.1 (no zero branches)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5)
            else:
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=generator))
    return model.eval()


def write_official_style(models, folder, legacy_buffers=True):
    """Save a model set the way the official files are laid out (names, nesting, legacy GPT-2 buffers)."""
    gpt_state = dict(models.gpt.state_dict())
    if legacy_buffers:
        for i in range(models.gpt.config.layers):
            gpt_state[f"gpt.h.{i}.attn.bias"] = torch.ones(1, 1, 4, 4, dtype=torch.uint8)
            gpt_state[f"gpt.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(gpt_state, folder / "autoregressive.pth")
    torch.save(models.diffusion.state_dict(), folder / "diffusion_decoder.pth")
    torch.save(models.clvp.state_dict(), folder / "clvp2.pth")
    torch.save({"model_g": models.vocoder.state_dict()}, folder / "vocoder.pth")
