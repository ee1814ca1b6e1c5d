"""What each change of the lossless path buys, step by step (``tortoise-lab bench --steps``).

The whole-run benchmark says how fast a synthesis is; this one says where a change pays. In one process, on random
weights of the official sizes (tiny with ``quick``), it times each piece of work a change touches, in its form
before the change (A) and after it (B), alternating A, B, A, B... after an untimed warm-up of each, so a busy
machine slows both alike. Each row gives both medians, their ratio, and the largest difference between the two
outputs (0 where they are bit-identical; fp32 rounding otherwise). With ``profile``, it also records the
``torch.profiler`` table of one AR decode step, plain and prepacked: where the step's time goes.

The pieces: the AR decode step at batch 16 (the diffusion path's sampling) and at batch 1 (the fast path's), with
plain and prepacked weights (``fast.prepack``), and at batch 1 with weights packed for 16 rows and for one; the AR
latent pass of one chosen row; one guided diffusion step as two network calls and as one batch of two
(``diffusion_sampler.sample``'s ``paired``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tortoise_lab.files import write_json, write_text

__all__ = ["StepComparison", "run_step_benchmark", "steps_table"]

CODES = 48  # as the whole-run benchmark: 48 AR codes, batch 16
TEXT_TOKENS = 20  # "The quick brown fox jumps over the lazy dog." is 20-odd tokens
PROFILE_ROWS = 8


@dataclass
class StepComparison:
    piece: str
    before: str
    after: str
    before_ms: float
    after_ms: float
    max_difference: float  # largest absolute difference between the two outputs

    @property
    def speedup(self) -> float:
        return self.before_ms / self.after_ms


def _alternate(before: Callable[[], torch.Tensor], after: Callable[[], torch.Tensor],
               repeats: int) -> tuple[float, float, float]:
    """Median milliseconds of each, timed alternately after one untimed run each; and their outputs' difference."""
    first, second = before(), after()
    difference = float((first.float() - second.float()).abs().max())
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, store in ((before, times[0]), (after, times[1])):
            start = time.perf_counter()
            run()
            store.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1]), difference


def _decode_step(model, batch: int) -> Callable[[], torch.Tensor]:
    """One cached AR step of ``model`` at ``batch`` rows, after a prompt of TEXT_TOKENS and CODES - 1 codes."""
    from tortoise_lab.stages.sampling import decode_one_token, prefill

    generator = torch.Generator().manual_seed(batch)
    config = model.config
    cond = torch.randn(batch, config.model_dim, generator=generator)
    text = torch.randint(1, 200, (batch, TEXT_TOKENS), generator=generator)
    prompt_len = model.prompt_length(TEXT_TOKENS)
    model.setup_caches(batch, prompt_len + CODES)
    prefill(model, cond, text)
    codes = torch.randint(0, 8192, (batch, 1), generator=generator)
    position = torch.tensor([CODES - 1])
    return lambda: decode_one_token(model, codes, position, position + prompt_len - 1)


def run_step_benchmark(quick: bool = False, repeats: int = 5, profile: bool = True, out_dir: str | Path | None = None,
                       log: Callable[[str], None] = print) -> tuple[list[StepComparison], dict[str, str]]:
    """Time every piece before and after its change; returns the comparisons and (with ``profile``) the profiler
    tables of one decode step, plain and prepacked. With ``out_dir``: ``bench-steps.json`` and ``bench-steps.md``."""
    from tortoise_lab.fast import prepack_linears
    from tortoise_lab.models.diffusion import DiffusionConfig, DiffusionDecoder
    from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
    from tortoise_lab.stages.decode import diffusion_frames

    if repeats < 1:
        raise ValueError("--repeats must be at least 1.")
    size = "tiny" if quick else "tortoise-v2"
    torch.manual_seed(0)
    log(f"Building random {size} networks...")
    gpt = UnifiedVoice(GPTConfig.from_name(size)).eval()
    packed = prepack_linears(gpt, 16)  # as the main path packs (its batch)
    single = prepack_linears(gpt, 1)  # as the fast path packs (one sample)
    diffusion = DiffusionDecoder(DiffusionConfig.from_name(size)).eval()
    rows: list[StepComparison] = []
    profiles: dict[str, str] = {}
    with torch.no_grad():
        for batch, copy in ((16, packed), (1, single)):
            log(f"AR decode step, batch {batch}...")
            plain_step, packed_step = _decode_step(gpt, batch), _decode_step(copy, batch)
            rows.append(StepComparison(f"AR decode step, batch {batch}", "plain weights",
                                       f"prepacked weights (for {batch} row{'s' if batch > 1 else ''})",
                                       *_alternate(plain_step, packed_step, repeats)))
            if profile and batch == 16:
                profiles = {name: _profile(step) for name, step in (("plain", plain_step), ("prepacked", packed_step))}
        log("AR decode step, batch 1, weights packed for 16 rows and for 1...")
        rows.append(StepComparison("AR decode step, batch 1", "prepacked for 16 rows", "prepacked for 1 row",
                                   *_alternate(_decode_step(packed, 1), _decode_step(single, 1), repeats)))
        for model in (gpt, packed, single):
            model.clear_caches()

        log("AR latent pass of the chosen row...")
        config = gpt.config
        cond, text = torch.randn(1, config.model_dim), torch.randint(1, 200, (1, TEXT_TOKENS))
        codes = torch.randint(0, 8192, (1, CODES))
        rows.append(StepComparison(f"AR latent pass, 1 row of {CODES} codes", "plain weights", "prepacked weights",
                                   *_alternate(lambda: gpt.latents(cond, text, codes),
                                               lambda: packed.latents(cond, text, codes), repeats)))

        log("Guided diffusion step...")
        frames = diffusion_frames(CODES)
        dconfig = diffusion.config
        latents = torch.randn(1, CODES, dconfig.in_latent_channels)
        voice = 0.1 * torch.randn(1, 2 * dconfig.model_channels)
        conditioned = diffusion.timestep_independent(latents, voice, frames)
        free = diffusion.timestep_independent(latents, voice, frames, conditioning_free=True)
        both = torch.cat([conditioned, free])
        x, timesteps = torch.randn(1, dconfig.in_channels, frames), torch.tensor([2000])
        two_calls = lambda: torch.cat([diffusion(x, timesteps, conditioned), diffusion(x, timesteps, free)])
        one_call = lambda: diffusion(x.repeat(2, 1, 1), timesteps.repeat(2), both)
        rows.append(StepComparison(f"guided diffusion step, {frames} frames", "two calls", "one batch of two",
                                   *_alternate(two_calls, one_call, repeats)))
    if out_dir is not None:
        out = Path(out_dir)
        write_json(out / "bench-steps.json", {"size": size, "repeats": repeats, "torch": torch.__version__,
                                              "threads": torch.get_num_threads(),
                                              "rows": [{**vars(row), "speedup": row.speedup} for row in rows],
                                              "profiles": profiles})
        write_text(out / "bench-steps.md", steps_table(rows, size, repeats, profiles))
    return rows, profiles


def _profile(step: Callable[[], torch.Tensor]) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        for _ in range(3):
            step()
    return recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=PROFILE_ROWS)


def steps_table(rows: list[StepComparison], size: str, repeats: int, profiles: dict[str, str]) -> str:
    lines = [f"Random {size} weights, medians of {repeats} alternating runs in one process, "
             f"{torch.get_num_threads()} threads.", "",
             "| piece | before | after | before ms | after ms | speed-up | max difference |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.piece} | {r.before} | {r.after} | {r.before_ms:.2f} | {r.after_ms:.2f} | {r.speedup:.2f}× | "
              f"{r.max_difference:.2g} |" for r in rows]
    for name, table in profiles.items():
        lines += ["", f"One AR decode step at batch 16, {name} weights (3 steps, `torch.profiler`):", "", "```",
                  table.strip(), "```"]
    return "\n".join(lines) + "\n"
