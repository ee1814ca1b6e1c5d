"""A small VQ-VAE over the 100-band mel, measured against the k-means code book as the embedded model's quantiser.

The issue left the quantiser open ("a small VQ-VAE in the role of TorToiSe's dVAE, or k-means; pick by
measurement"). This trains the VQ-VAE and measures both on the same thing: the codes' **ceiling**, the DTW log-mel
distance between a held-out rendering and its own codes decoded (what any AR model predicting those codes can
reach at best), plus how many codes are in use. Both quantisers use 512 codes, one code per 4 mel frames::

    python -m tortoise_lab.train vqvae --run runs/broad --out-dir runs/broad/vqvae

The network: two convolutions and a stride-4 convolution down to one 32-wide unit vector per 4 frames, the nearest
(cosine) of 512 unit code vectors (straight-through gradients, the codebook and commitment losses of van den Oord et
al., codes initialised from encoder outputs), and the mirror image up again, trained on normalised mel crops (L1
loss). Low-dimensional unit-length codes are the ViT-VQGAN remedy for codebook collapse.

Measured on the broad run (2,000 steps, 80 s each; 100 evaluation renderings; README): k-means uses 510 codes,
ceiling 0.604; this VQ-VAE 112 codes, ceiling 0.873; the same with 256-wide Euclidean codes 31 codes, 0.805.
So the embedded model keeps k-means.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.audio import denormalize_univnet_mel, normalize_univnet_mel
from tortoise_lab.models.quantizer import code_mel, stack_frames, unstack_frames
from tortoise_lab.train.loop import step_generator

__all__ = ["VQVAEConfig", "MelVQVAE", "vqvae_loss", "compare_quantizers"]

COMMITMENT = 0.25  # weight of the commitment loss (van den Oord et al.)


@dataclass
class VQVAEConfig:
    codes: int = 512  # as the k-means code book
    stack: int = 4  # mel frames per code, as the k-means code book
    hidden: int = 256  # channels of the encoder and the decoder
    code_dim: int = 32  # code vectors: low-dimensional and unit-length (cosine lookup), which keeps codes in use
    bands: int = 100


class MelVQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        h = config.hidden
        self.encoder = nn.Sequential(nn.Conv1d(config.bands, h, 3, padding=1), nn.GELU(),
                                     nn.Conv1d(h, h, config.stack, stride=config.stack), nn.GELU(),
                                     nn.Conv1d(h, config.code_dim, 3, padding=1))
        self.codebook = nn.Parameter(torch.randn(config.codes, config.code_dim))
        self.decoder = nn.Sequential(nn.Conv1d(config.code_dim, h, 3, padding=1), nn.GELU(),
                                     nn.ConvTranspose1d(h, h, config.stack, stride=config.stack), nn.GELU(),
                                     nn.Conv1d(h, config.bands, 3, padding=1))

    def codes_table(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=1)  # (codes, code_dim), unit length

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(B, code_dim, L) unit-length encoder outputs -> (B, L) code indices (highest cosine)."""
        flat = z.transpose(1, 2).reshape(-1, z.shape[1])  # (B*L, code_dim)
        return (flat @ self.codes_table().T).argmax(1).reshape(z.shape[0], z.shape[2])

    def encoded(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, 100, F) normalised mels -> (B, code_dim, F / stack) unit-length encodings."""
        return F.normalize(self.encoder(mels), dim=1)

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """(100, F) log mel -> (ceil(F / stack),) codes (the tail padded as the k-means quantiser pads it)."""
        padded = unstack_frames(stack_frames(mel, self.config.stack), self.config.stack)  # silence-padded to L*stack
        return self.nearest(self.encoded(normalize_univnet_mel(padded).unsqueeze(0)))[0]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(L,) codes -> (100, L * stack) log mel."""
        vectors = self.codes_table()[codes].T.unsqueeze(0)  # (1, code_dim, L)
        return denormalize_univnet_mel(self.decoder(vectors)[0].clamp(-1, 1))


def vqvae_loss(model: MelVQVAE, mels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """mels: (B, 100, F) normalised, F a multiple of stack."""
    z = model.encoded(mels)  # (B, code_dim, L)
    quantized = model.codes_table()[model.nearest(z)].transpose(1, 2)  # (B, code_dim, L)
    codebook_loss = F.mse_loss(quantized, z.detach())
    commitment = F.mse_loss(z, quantized.detach())
    straight_through = z + (quantized - z).detach()
    reconstruction = F.l1_loss(model.decoder(straight_through), mels)
    loss = reconstruction + codebook_loss + COMMITMENT * commitment
    return loss, {"reconstruction": float(reconstruction.detach()), "codebook": float(codebook_loss.detach())}


def _crops(mels: list[torch.Tensor], step: int, seed: int, batch: int, frames: int) -> torch.Tensor:
    generator = step_generator(seed, step)
    eligible = [m for m in mels if m.shape[1] >= frames]
    out = []
    for pick in torch.randint(len(eligible), (batch,), generator=generator).tolist():
        mel = eligible[pick]
        start = int(torch.randint(mel.shape[1] - frames + 1, (1,), generator=generator))
        out.append(mel[:, start:start + frames])
    return torch.stack(out)


def compare_quantizers(run: str, model_dir: str, out_dir: str, steps: int = 2000, utterances: int = 2000,
                       batch: int = 16, frames: int = 128, lr: float = 1e-3, seed: int = 0, eval_count: int = 100,
                       progress: bool = False) -> dict:
    """Train the VQ-VAE (resumable) on ``run``'s training utterances, then measure it and ``model_dir``'s k-means
    code book on the run's evaluation renderings. Writes ``out_dir/quantizers.json``."""
    from tortoise_lab.model_set import embedded_models
    from tortoise_lab.train.experiments.crosseval import load_run
    from tortoise_lab.train.evaluate import dtw_log_mel_distance
    from tortoise_lab.train.loop import LoopConfig, train_loop
    from tortoise_lab.train.run import evaluation_items

    run_config, corpus = load_run(run, eval_count)
    kmeans = embedded_models(model_dir).quantizer
    train = corpus.indices("train")
    generator = torch.Generator().manual_seed(seed)
    chosen = sorted(torch.randperm(len(train), generator=generator)[:utterances].tolist())
    mels = [normalize_univnet_mel(code_mel(corpus.wav(train[k]))) for k in chosen]
    torch.manual_seed(seed)
    model = MelVQVAE(VQVAEConfig(codes=kmeans.config.codes, stack=kmeans.config.stack))
    with torch.no_grad():  # codes start as encoder outputs, so none starts dead
        z = model.encoded(_crops(mels, -1, seed, 64, frames)).transpose(1, 2).reshape(-1, model.config.code_dim)
        model.codebook.copy_(z[torch.randperm(len(z), generator=generator)[:model.config.codes]])
    loop = train_loop(model, vqvae_loss, lambda step: _crops(mels, step, seed, batch, frames),
                      LoopConfig(steps=steps, lr=lr, warmup_steps=100, progress=progress), Path(out_dir))
    model.eval()
    items, _, _ = evaluation_items(run_config, corpus, {}, 0)  # the renderings only: no conditioning needed
    result = {}
    for name, quantizer in (("k-means", kmeans), ("vq-vae", model)):
        ceilings, used = [], set()
        for item in items:
            mel = code_mel(item["wav"])
            codes = quantizer.encode(mel)
            used.update(codes.tolist())
            ceilings.append(dtw_log_mel_distance(quantizer.decode(codes), mel))
        result[name] = {"ceiling": float(np.mean(ceilings)), "codes_used": len(used)}
    result["vq-vae"]["training_s"] = round(loop.total_seconds, 1)
    result["vq-vae"]["config"] = asdict(model.config)
    result["settings"] = {"run": run, "steps": steps, "utterances": utterances, "batch": batch, "frames": frames,
                          "lr": lr, "seed": seed, "eval_count": len(items)}
    (Path(out_dir) / "quantizers.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tortoise_lab.train vqvae", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the AR training folder (its corpus and evaluation items)")
    parser.add_argument("--model-dir", default="tortoise_lab/data/embedded", help="the set whose k-means code book to compare")
    parser.add_argument("--out-dir", required=True, help="checkpoints, loss log and quantizers.json")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (default: 2000)")
    parser.add_argument("--utterances", type=int, default=2000, help="training utterances (default: 2000)")
    parser.add_argument("--eval-count", type=int, default=100, help="evaluation renderings (default: 100)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    result = compare_quantizers(args.run, args.model_dir, args.out_dir, steps=args.steps, utterances=args.utterances,
                                eval_count=args.eval_count)
    json.dump(result, sys.stdout, indent=1)
    print(f"\n{time.perf_counter() - clock:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
