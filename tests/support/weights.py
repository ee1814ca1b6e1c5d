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
