"""Stage, streamed: AR latents -> audio piece by piece while the codes are still being drawn (the fast path's stream).

HiFiGAN is a stack of convolutions over frames, so an output frame depends only on the stretched latents within
``receptive_radius`` frames of it, and a stretched frame only on the two latents its position falls between. Each
piece is therefore decoded from the latents it needs plus that much context on either side, and only frames whose
whole context has been drawn are kept: a piece costs what its own frames cost (plus a fixed margin), however long
the utterance is, and the pieces join into the whole-utterance audio with no crossfade. Upstream's ``tts_stream``
instead decodes every latent drawn so far at each piece (work that grows with the utterance), crossfades 1024
samples and never emits the last 1024.

The pieces equal ``HifiganVocoder.decode`` of the same latents up to the rounding of convolutions run over windows of
other lengths (about 1e-7 here; ``tests/test_streaming.py`` holds the bound). The stretch itself reproduces
``F.interpolate(mode="linear")``'s arithmetic (its source positions rounded once, as its fused multiply-add does), so
frames computed from a window are the frames the whole-utterance stretch makes.

Sizes: a frame's samples are final once the latents ``lookahead_codes`` past it are drawn (5 codes at the official
size: 15 frames of receptive field, about 3.4 codes, plus the stretch's next latent). The first piece is decoded
after ``FIRST_CHUNK_CODES`` = 8 codes, the earliest point with a useful amount of final audio (17 frames, 0.18 s, where
upstream waits for 60 codes); later pieces every ``CHUNK_CODES`` = 20 codes (87 frames, 0.93 s of audio), where the
fixed context (2 x 15 frames) adds about a third to the piece's own work. Both are arguments of
``TextToSpeech.stream``.
"""

from __future__ import annotations

import math

import torch

from tortoise_lab.models.hifigan import (MEL_FRAMES_PER_CODE, OUTER_CONV_KERNEL, RESAMPLE_RATIO, HifiganConfig,
                                         HifiganDecoder, frames_for_latents)

__all__ = ["FIRST_CHUNK_CODES", "CHUNK_CODES", "receptive_radius", "lookahead_codes", "stretch_frames",
           "IncrementalHifigan"]

FIRST_CHUNK_CODES = 8  # codes drawn before the first piece is decoded
CHUNK_CODES = 20  # codes drawn between later pieces


def receptive_radius(config: HifiganConfig) -> int:
    """Frames on either side of an output frame that its samples depend on (rounded up): the input conv, then per
    stage the transposed conv (at most ceil(kernel / factor) input samples away) and the widest residual block
    (per dilation a dilated and a plain conv), then the output conv, each in frames at its own rate."""
    block_reach = max(sum(d * (k - 1) // 2 + (k - 1) // 2 for d in dilations)
                      for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilations))
    frames, rate = float(OUTER_CONV_KERNEL // 2), 1  # rate: samples per frame so far
    for factor, kernel in zip(config.upsample_factors, config.upsample_kernel_sizes):
        frames += math.ceil(kernel / factor) / rate
        rate *= factor
        frames += block_reach / rate
    return math.ceil(frames + (OUTER_CONV_KERNEL // 2) / rate)


def _sources(first: int, last: int, scale_factor: float, input_len: int):
    """Where ``F.interpolate(scale_factor=..., mode="linear")`` reads output positions [first, last) from: (i0, i1,
    w0, w1), with i1 clamped to the input; its source position is computed as the kernel does, in one rounding."""
    ratio = torch.tensor(1.0 / scale_factor, dtype=torch.float32).double()
    dst = torch.arange(first, last, dtype=torch.float64)
    src = (ratio * (dst + 0.5) - 0.5).float().clamp(min=0)  # (n,)
    i0 = src.long()
    w1 = (src - i0.float()).clamp(0, 1)
    return i0, (i0 + 1).clamp(max=input_len - 1), 1 - w1, w1


def _blend(x: torch.Tensor, i0, i1, w0, w1) -> torch.Tensor:
    """x (C, n) -> (C, len(i0)): x[i0] * w0 + x[i1] * w1, the first product fused into the sum as the kernel does.

    The fused sum is emulated in float64, which Apple's MPS does not have: there it is computed on the CPU (a piece's
    latents, a few hundred kilobytes) and moved back.
    """
    if x.device.type == "mps":
        return _blend(x.cpu(), i0, i1, w0, w1).to(x.device)
    w0, w1 = w0.to(x.device), w1.to(x.device)
    return ((x[:, i1] * w1).double() + x[:, i0].double() * w0.double()).float()


def _last_needed_latent(frames: torch.Tensor) -> torch.Tensor:
    """For stretched frames (n,), the highest latent index each reads, before any clamping at the end."""
    ratio = torch.tensor(1.0 / RESAMPLE_RATIO, dtype=torch.float32).double()
    src = (ratio * (frames.double() + 0.5) - 0.5).float().clamp(min=0)
    upper_4x = src.long() + 1  # the second 4x frame it blends
    src_4x = (torch.tensor(1.0 / MEL_FRAMES_PER_CODE, dtype=torch.float32).double() * (upper_4x.double() + 0.5)
              - 0.5).float().clamp(min=0)
    return src_4x.long() + 1


def lookahead_codes(config: HifiganConfig) -> int:
    """Codes drawn past a frame's own before its samples are final (the receptive field plus the stretch)."""
    frames_per_code = MEL_FRAMES_PER_CODE * RESAMPLE_RATIO
    return math.ceil(receptive_radius(config) / frames_per_code) + 1


def stretch_frames(latents: torch.Tensor | list[torch.Tensor], first: int, last: int,
                   total_latents: int) -> torch.Tensor:
    """Frames [first, last) of ``HifiganDecoder.inference``'s stretch of ``total_latents`` latents, from ``latents``
    ((total_latents, C), or a list of (C,)): only the ones those frames read are touched -> (1, C, last - first)."""
    count_4x = math.floor(total_latents * float(MEL_FRAMES_PER_CODE))
    i0, i1, w0, w1 = _sources(first, last, RESAMPLE_RATIO, count_4x)
    low, high = int(i0.min()), int(i1.max()) + 1  # the 4x frames these read
    j0, j1, v0, v1 = _sources(low, high, float(MEL_FRAMES_PER_CODE), total_latents)
    start, end = int(j0.min()), int(j1.max()) + 1  # the latents those read
    window = latents[start:end]
    window = (torch.stack(window) if isinstance(window, list) else window).float().T  # (C, end - start)
    up_4x = _blend(window, j0 - start, j1 - start, v0, v1)  # (C, high - low)
    return _blend(up_4x, i0 - low, i1 - low, w0, w1)[None]  # (1, C, last - first)


class IncrementalHifigan:
    """Decodes one utterance's AR latents piece by piece: ``push`` them as they are drawn, ``finish`` at the end.

    ``frames_decoded`` records the frames fed to HiFiGAN for each piece (the work per piece, bounded by the piece).
    """

    def __init__(self, hifigan: HifiganDecoder, speaker: torch.Tensor, first_chunk_codes: int = FIRST_CHUNK_CODES,
                 chunk_codes: int = CHUNK_CODES):
        if first_chunk_codes < 1 or chunk_codes < 1:
            raise ValueError("first_chunk_codes and chunk_codes must be at least 1.")
        self.hifigan, self.speaker = hifigan, speaker  # speaker: (1, C)
        self.first_chunk_codes, self.chunk_codes = first_chunk_codes, chunk_codes
        self.radius = receptive_radius(hifigan.config)
        self.latents: list[torch.Tensor] = []  # (C,) each, in drawing order
        self.emitted = 0  # frames already returned
        self.next_decode = first_chunk_codes  # latents needed before the next piece is decoded
        self.frames_decoded: list[int] = []

    @property
    def hop_length(self) -> int:
        return self.hifigan.config.hop_length

    def push(self, latents: torch.Tensor) -> torch.Tensor:
        """Add latents (k, C) (or one, (C,)); returns the audio now final, (1, N) (N may be 0)."""
        self.latents.extend(latents.reshape(-1, latents.shape[-1]).unbind(0))
        if len(self.latents) < self.next_decode:
            return self._empty()
        self.next_decode = len(self.latents) + self.chunk_codes
        candidates = torch.arange(self.emitted, frames_for_latents(len(self.latents)))
        final = int((_last_needed_latent(candidates) <= len(self.latents) - 1).sum()) + self.emitted
        return self._decode(self.emitted, final - self.radius, final)

    def finish(self) -> torch.Tensor:
        """The rest of the audio, (1, N), once every latent is pushed."""
        total = frames_for_latents(len(self.latents))
        return self._decode(self.emitted, total, total)

    def _decode(self, first: int, last: int, available: int) -> torch.Tensor:
        """Frames [first, last) as audio, decoded from frames [first - radius, last + radius) within [0, available)."""
        if last <= first:
            return self._empty()
        start, end = max(0, first - self.radius), min(available, last + self.radius)
        features = stretch_frames(self.latents, start, end, len(self.latents))  # (1, C, end - start)
        with torch.no_grad():
            wav = self.hifigan(features, self.speaker)[0]  # (1, (end - start) * hop)
        self.frames_decoded.append(end - start)
        self.emitted = last
        hop = self.hop_length
        return wav[:, (first - start) * hop:(last - start) * hop]

    def _empty(self) -> torch.Tensor:
        return torch.zeros(1, 0, device=self.speaker.device)
