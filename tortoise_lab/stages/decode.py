"""Stage: the chosen code rows -> waveforms. A model set carries its decoder; both have one interface:

- ``finish_codes(codes)`` -> (codes as they are ranked and decoded, whether every row reached its stop code);
- ``decode(best, text_tokens, latents, settings, generator, timer, progress, on_step)`` -> one (1, N) 24 kHz waveform
  per row; ``on_step`` (optional) hears ("diffusion" or "decoding", done, total) as the rows are decoded.

``DiffusionVocoder`` (the official chain): upstream's fix-up of the codes, the AR model's latents for the chosen
rows, the diffusion decoder (``diffusion_sampler``) to a 100-band mel, and UnivNet to audio.
``CodesGriffinLim`` (the embedded model's chain, chosen by measurement, see the README): the rows up to their
stop code through a mel decoder (the learned code decoder, ``models/code_decoder.py``, or the k-means code book
itself) to a mel, and Griffin-Lim to audio.
``HifiganVocoder`` (the fast path, upstream's ``api_fast``): the rows up to and including their stop code, their AR
latents, and HiFiGAN straight to audio; ``open_stream`` decodes the same audio piece by piece (``stages.streaming``).

``needs_diffusion_latent`` says whether the chain reads the voice's diffusion conditioning latent (a random voice
draws one only for the chains that do, as upstream's fast path draws only the AR one). ``reads_drawn_latents`` says
whether the chain can decode the AR latents its one sample's steps computed (``decode_latents``), so that the
pipeline draws with them (``sampling.sample_with_latents``) instead of running the teacher-forced pass again.
"""

from __future__ import annotations

import torch

from tortoise_lab.audio import denormalize_univnet_mel
from tortoise_lab.config import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, Settings
from tortoise_lab.fast import autocast_context
from tortoise_lab.models.code_decoder import CodeDecoder
from tortoise_lab.models.diffusion import DiffusionDecoder
from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.models.griffin_lim import GRIFFIN_LIM_ITERATIONS, griffin_lim
from tortoise_lab.models.hifigan import HifiganDecoder
from tortoise_lab.models.quantizer import KMeansQuantizer
from tortoise_lab.models.vocoder import UnivNetGenerator
from tortoise_lab.stages.conditioning import ConditioningLatents
from tortoise_lab.stages.diffusion_sampler import sample
from tortoise_lab.stages.rerank import CALM_TOKEN
from tortoise_lab.stages.sampling import StepCallback, codes_until_stop, prepacked_if_asked
from tortoise_lab.stages.streaming import FIRST_CHUNK_CODES, CHUNK_CODES, IncrementalHifigan
from tortoise_lab.stages.timing import StageTimer

__all__ = ["END_CODES", "CALM_RUN_TO_TRIM", "fix_autoregressive_output", "trim_at_calm", "diffusion_frames",
           "codes_audio", "chosen_latents", "DiffusionVocoder", "CodesGriffinLim", "MelDecoder", "HifiganVocoder"]

END_CODES = (45, 45, 248)  # what the DVAE gives for the end of zero-padded audio; ends every fixed-up row
CALM_RUN_TO_TRIM = 8  # after more than this many calm codes in a row, the diffusion input is cut


def fix_autoregressive_output(codes: torch.Tensor, stop_token: int) -> tuple[torch.Tensor, bool]:
    """Upstream's fix-up of one row of sampled codes (T,): from the first stop token on, calm codes, and the last
    three positions the DVAE's end-of-audio codes. Returns (fixed codes, whether a stop token was found)."""
    stops = (codes == stop_token).nonzero()
    if len(stops) == 0:
        return codes, False
    fixed = codes.clone()
    fixed[int(stops[0])] = CALM_TOKEN
    fixed[int(stops.min()):] = CALM_TOKEN
    fixed[-len(END_CODES):] = torch.tensor(END_CODES, dtype=codes.dtype, device=codes.device)
    return fixed, True


def trim_at_calm(codes: torch.Tensor) -> int:
    """How many latents to keep for diffusion: up to the code where more than CALM_RUN_TO_TRIM calm codes run."""
    run = 0
    for index, code in enumerate(codes.tolist()):
        run = run + 1 if code == CALM_TOKEN else 0
        if run > CALM_RUN_TO_TRIM:
            return index
    return codes.shape[-1]


def diffusion_frames(latent_len: int) -> int:
    """Output mel frames for a latent length: 4 mel frames per code at 22.05 kHz, re-timed to 24 kHz."""
    return latent_len * 4 * OUTPUT_SAMPLE_RATE // INPUT_SAMPLE_RATE


MelDecoder = KMeansQuantizer | CodeDecoder  # each has decode: (L,) codes -> (100, 4 L) log mel


def codes_audio(mel_decoder: MelDecoder, codes: torch.Tensor,
                iterations: int = GRIFFIN_LIM_ITERATIONS) -> torch.Tensor:
    """(L,) codes without the stop code -> (1, N) 24 kHz audio: ``mel_decoder``'s mel (the code decoder's, or the
    code book's), then Griffin-Lim."""
    if len(codes) == 0:
        return torch.zeros(1, 0)
    return griffin_lim(mel_decoder.decode(codes.cpu()), iterations)


def chosen_latents(gpt: UnifiedVoice, best: torch.Tensor, text_tokens: torch.Tensor, latents: ConditioningLatents,
                   settings: Settings, timer: StageTimer) -> torch.Tensor:
    """The AR model's latents for the chosen rows ``best`` (k, T): (k, T, C) fp32, teacher-forced on their codes
    (under autocast with ``half``; with prepacked weights where the run's options use them), timed as the
    "ar_latents" stage. What both decoders decode from."""
    k = best.shape[0]
    gpt = prepacked_if_asked(gpt, settings.inference, best.device)  # (half precision is CUDA-only: fp32 on a CPU)
    with timer.stage("ar_latents"), autocast_context(best.device, settings.inference.half):
        return gpt.latents(latents.autoregressive.expand(k, -1), text_tokens.expand(k, -1), best).float()


class DiffusionVocoder:
    """The official chain: AR latents -> diffusion decoder -> 100-band mel -> UnivNet."""

    needs_diffusion_latent = True
    reads_drawn_latents = False  # it ranks many samples and decodes the chosen ones' latents (chosen_latents)
    unused_settings: tuple[str, ...] = ()

    def __init__(self, gpt: UnifiedVoice, diffusion: DiffusionDecoder, vocoder: UnivNetGenerator):
        self.gpt, self.diffusion, self.vocoder = gpt, diffusion, vocoder

    def finish_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, bool]:
        rows = [fix_autoregressive_output(row, self.gpt.config.stop_mel_token) for row in codes]
        return torch.stack([row for row, _ in rows]), all(stopped for _, stopped in rows)

    @torch.no_grad()
    def decode(self, best: torch.Tensor, text_tokens: torch.Tensor, latents: ConditioningLatents,
               settings: Settings, generator: torch.Generator, timer: StageTimer,
               progress: bool = False, on_step: StepCallback | None = None) -> list[torch.Tensor]:
        k = best.shape[0]
        ar_latents = chosen_latents(self.gpt, best, text_tokens, latents, settings, timer)  # (k, T, C)
        wavs = []
        for i in range(k):
            # the i-th row's steps, counted among all k rows' (a chain's length is the same for every row)
            report = None if on_step is None else (
                lambda done, total, i=i: on_step("diffusion", i * total + done, k * total))
            with timer.stage("diffusion_and_vocoder"):
                wavs.append(self.decode_one(best[i], ar_latents[i], latents, settings, generator, progress, report))
        return wavs

    def decode_one(self, codes: torch.Tensor, ar_latents: torch.Tensor, latents: ConditioningLatents,
                   settings: Settings, generator: torch.Generator, progress: bool = False,
                   on_step=None) -> torch.Tensor:
        """One candidate: codes (T,), AR latents (T, C) -> waveform (1, N)."""
        keep = trim_at_calm(codes)
        ar_latents = ar_latents[None, :keep]  # (1, keep, C)
        frames = diffusion_frames(ar_latents.shape[1])
        diffusion = self.diffusion
        conditioned = diffusion.timestep_independent(ar_latents, latents.diffusion, frames, False)
        free = (diffusion.timestep_independent(ar_latents, latents.diffusion, frames, True)
                if settings.cond_free else None)

        def denoiser(x, timesteps, conditioning_free):
            return diffusion(x, timesteps, free if conditioning_free else conditioned)

        both = None if free is None else torch.cat([conditioned, free])  # (2, C, frames)

        def paired(x, timesteps):  # a guided step's two passes as one batch of two: a tenth faster on a CPU
            return diffusion(x.repeat(2, 1, 1), timesteps.repeat(2), both).chunk(2)

        noise = torch.randn((1, diffusion.config.in_channels, frames), generator=generator,
                            device=generator.device).to(ar_latents.device) * settings.diffusion_temperature
        mel = sample(denoiser, noise, settings.diffusion_iterations, settings.sampler,
                     cond_free_k=settings.cond_free_k if settings.cond_free else None, generator=generator,
                     progress=progress, on_step=on_step, paired=paired)
        mel = denormalize_univnet_mel(mel)[:, :, :frames]
        return self.vocoder.inference(mel, generator=generator)[0]  # (1, N)


class CodesGriffinLim:
    """The embedded chain: codes up to the stop code -> mel (code decoder or code book) -> Griffin-Lim."""

    needs_diffusion_latent = False
    reads_drawn_latents = False  # it decodes codes, not latents
    unused_settings: tuple[str, ...] = ()

    def __init__(self, mel_decoder: MelDecoder, stop_token: int):
        self.mel_decoder, self.stop_token = mel_decoder, stop_token

    def finish_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, bool]:
        return codes, bool((codes == self.stop_token).any(dim=1).all())

    @torch.no_grad()
    def decode(self, best: torch.Tensor, text_tokens: torch.Tensor, latents: ConditioningLatents,
               settings: Settings, generator: torch.Generator, timer: StageTimer,
               progress: bool = False, on_step: StepCallback | None = None) -> list[torch.Tensor]:
        wavs = []
        with timer.stage("diffusion_and_vocoder"):  # here: mel decoder and Griffin-Lim
            for i, row in enumerate(best):
                wavs.append(codes_audio(self.mel_decoder, codes_until_stop(row, self.stop_token)[0]))
                if on_step is not None:
                    on_step("decoding", i + 1, len(best))
        return wavs


class HifiganVocoder:
    """The fast chain: codes up to and including the stop code -> their AR latents -> HiFiGAN -> audio.

    As upstream's ``api_fast.tts``: no fix-up of the codes and no calm trim; the latents are the AR model's
    hidden states for the codes, the stop code included (under autocast with half, as the sampling), and HiFiGAN, in
    fp32, is conditioned on the voice's AR conditioning latent. Upstream computes the latents in a teacher-forced
    pass over the codes after drawing them (``decode`` does so too); the pipeline takes the ones the sampling steps
    computed instead (``decode_latents``): the same numbers up to fp32 summation order (tests/parity/test_tts.py),
    without a second pass through the AR model.
    """

    needs_diffusion_latent = False
    reads_drawn_latents = True
    # Settings it does not use, refused when the user sets them (ModelSet.fit): it draws one sample, ranks nothing
    # and has no diffusion.
    unused_settings = ("num_autoregressive_samples", "candidates", "batch_size", "cvvp_amount",
                       "diffusion_iterations", "cond_free", "cond_free_k", "diffusion_temperature", "sampler")

    def __init__(self, gpt: UnifiedVoice, hifigan: HifiganDecoder):
        self.gpt, self.hifigan = gpt, hifigan

    def length(self, codes: torch.Tensor) -> int:
        """How many of a row's codes (T,) are decoded: up to and including the first stop code, else all."""
        stops = (codes == self.gpt.config.stop_mel_token).nonzero()
        return int(stops[0]) + 1 if len(stops) else codes.shape[0]

    def finish_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, bool]:
        stopped = bool((codes == self.gpt.config.stop_mel_token).any(dim=1).all())
        return codes[:, :max(self.length(row) for row in codes)], stopped

    @torch.no_grad()
    def decode(self, best: torch.Tensor, text_tokens: torch.Tensor, latents: ConditioningLatents,
               settings: Settings, generator: torch.Generator, timer: StageTimer,
               progress: bool = False, on_step: StepCallback | None = None) -> list[torch.Tensor]:
        ar_latents = chosen_latents(self.gpt, best, text_tokens, latents, settings, timer)  # (k, T, C)
        return self.decode_latents(best, ar_latents, latents, timer, on_step)

    @torch.no_grad()
    def decode_latents(self, best: torch.Tensor, ar_latents: torch.Tensor, latents: ConditioningLatents,
                       timer: StageTimer, on_step: StepCallback | None = None) -> list[torch.Tensor]:
        """Rows ``best`` (k, T) whose AR latents (k, >= T', C) are known (``sampling.sample_with_latents`` keeps
        the ones its steps computed, so the pipeline skips the teacher-forced pass) -> k waveforms (1, N)."""
        k = best.shape[0]
        wavs = []
        with timer.stage("hifigan"):
            for i, row in enumerate(best):
                speaker = latents.autoregressive.float()  # (1, C)
                wavs.append(self.hifigan.inference(ar_latents[i:i + 1, :self.length(row)], speaker)[0])  # (1, N)
                if on_step is not None:
                    on_step("decoding", i + 1, k)
        return wavs

    def open_stream(self, speaker: torch.Tensor, first_chunk_codes: int = FIRST_CHUNK_CODES,
                    chunk_codes: int = CHUNK_CODES) -> IncrementalHifigan:
        """An incremental decoder for one utterance in the voice ``speaker`` (1, C): push it the AR latents as they
        are drawn; the pieces it returns join into what ``decode`` makes of the same latents."""
        return IncrementalHifigan(self.hifigan, speaker.float(), first_chunk_codes, chunk_codes)
