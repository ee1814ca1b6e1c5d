"""Text -> speech over a model set, one stage after another, the same path for every model set:

    text ─► chunks ─► text_tokens ─► conditioning latents (stages/conditioning) ─► codes (stages/sampling)
         ─► ranking (the set's ranker, stages/rerank) ─► the best rows ─► audio (the set's decoder, stages/decode)
         ─► redaction of [bracketed] text (stages/redaction) ─► a duration check (stages/pacing) ─► wav

A chunk whose speech is clearly too short or too long for its words (the set's ``speech_rate``) is drawn once more
with the next seed (the run's seed + chunk number + 1); a note says so, and names the chunk when it stays wrong.

``TextToSpeech.tts`` runs the stages for each chunk of the text and returns one ``Speech``. All randomness
comes from one ``torch.Generator`` seeded with the run's seed, drawn in a fixed order, so the same seed and
settings give the same audio, with the KV cache on or off. ``settings.decoder`` picks the chain after sampling
(``ModelSet.chain``): the set's main one, or "hifigan", upstream's fast path (one sample, no ranking, HiFiGAN).

``TextToSpeech.stream`` is the fast path as the codes are drawn: each piece of audio is decoded from the new AR
latents plus the decoder's context (``stages.streaming``) and handed out at once; the pieces join into the
whole-utterance fast-path audio.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from tortoise_lab.config import (DEFAULT_BATCH_SIZE, OUTPUT_SAMPLE_RATE, SEED_RANGE, TEXT_SPLIT_MAX, InferenceOptions,
                                 Settings, draw_seed)
from tortoise_lab.device import choose_device
from tortoise_lab.model_set import Chain, ModelSet
from tortoise_lab.stages.conditioning import voice_latents
from tortoise_lab.stages.pacing import count_letters, speech_seconds
from tortoise_lab.stages.redaction import parse_redactions
from tortoise_lab.stages.rerank import best_rows
from tortoise_lab.stages.sampling import (PreparedDecoder, StepCallback, prepare_decoder, sample_codes,
                                          sample_with_latents, sampling_options)
from tortoise_lab.stages.streaming import CHUNK_CODES, FIRST_CHUNK_CODES
from tortoise_lab.speech import Speech, SpeechStream, StreamPiece
from tortoise_lab.stages.timing import StageTimer
from tortoise_lab.text import Tokenizer, clean_text, fit_chunks
from tortoise_lab.voices import Voice

__all__ = ["Speech", "SpeechStream", "StreamPiece", "TextToSpeech", "SAMPLE_RATE"]

DECODING_STAGES = ("ar_latents", "diffusion_and_vocoder", "hifigan", "redaction")  # a chunk's audio after its codes

SAMPLE_RATE = OUTPUT_SAMPLE_RATE


class TextToSpeech:
    """The synthesis pipeline over a ``ModelSet``.

    >>> tts = TextToSpeech(official_models())            # doctest: +SKIP
    >>> speech = tts.tts("Hello.", voice=load_voice("tom"), preset="fast", seed=3)  # doctest: +SKIP
    """

    def __init__(self, models: ModelSet, tokenizer: Tokenizer | None = None, aligner=None, progress: bool = True):
        self.models = models
        self.tokenizer = tokenizer or Tokenizer()
        self.aligner = aligner
        self.progress = progress
        self._aligner_error: str | None = None
        self._decoders: dict[tuple[InferenceOptions, int], tuple[PreparedDecoder, list[str]]] = {}  # by rows too

    @property
    def device(self) -> torch.device:
        return self.models.device

    def text_tokens(self, text: str) -> torch.Tensor:
        """(1, T) token ids with upstream's trailing 0; ValueError if nothing is left or it is too long."""
        if not any(ch.isalnum() for ch in clean_text(text)):
            raise ValueError(f"The text {text!r} has nothing pronounceable in it; give words to speak.")
        ids = self.tokenizer.model_ids(text)
        limit = self.models.gpt.config.max_text_tokens
        if len(ids) > limit:
            raise ValueError(f"The text is {len(ids) - 1} tokens long but the model takes at most {limit - 1}; "
                             f"split it (--text-split) or use `tortoise-lab read`.")
        return ids[None].to(self.device)

    def chunks(self, text: str, settings: Settings, marker: str | None = None) -> tuple[list[str], list[str]]:
        """The chunks ``text`` is spoken in (``text.fit_chunks``: each within the model's text limit unless the user
        chose the lengths), and a note when the default lengths had to shrink for this model."""
        limit, trained = self.models.max_text_tokens, self.models.chunk_lengths
        chunks, lengths = fit_chunks(text, settings.text_split,
                                     lambda chunk: len(self.tokenizer.model_ids(chunk)) <= limit, marker, trained)
        if lengths is not None:
            return chunks, [f"The text was split into {len(chunks)} chunks of at most {lengths[1]} characters (not "
                            f"the default {(trained or (0, TEXT_SPLIT_MAX))[1]}) to fit this model's limit of "
                            f"{limit - 1} text tokens."]
        if trained is not None and settings.text_split is None and len(chunks) > 1 and not (marker and marker in text):
            what = "one sentence or less" if trained[0] == 1 else "a few sentences"
            return chunks, [f"The text is spoken in {len(chunks)} chunks of {what} (at most {trained[1]} characters): "
                            "the lengths this model was trained on."]
        return chunks, []

    def prepare(self, settings: Settings) -> tuple[PreparedDecoder, list[str]]:
        """Build, once per option set, what ``settings`` runs with: the AR decoder with its speed-ups (KV cache,
        half, DeepSpeed, compile, int8) and the ranker's int8 copy. Returns the decoder and one sentence per
        option asked for but not used. ``tts`` calls it; call it first to keep the building out of a timing."""
        options, chain = settings.inference, self.models.chain(settings.decoder)
        rows = 1 if chain.decoder.reads_drawn_latents else DEFAULT_BATCH_SIZE  # the fast path draws one sample
        key = (options, rows)
        if key not in self._decoders or self._decoders[key][0].is_stale():  # options toggled back and forth
            self._decoders[key] = prepare_decoder(self.models.gpt, options, rows)
        chain.ranker.prepare(options, self.device)
        return self._decoders[key]

    def tts(self, text: str, voice: Voice | None = None, preset: str = "fast", seed: int | None = None,
            settings: Settings | None = None, on_step: StepCallback | None = None, **overrides) -> Speech:
        """Speak ``text`` in ``voice`` (default: a random voice) with ``settings`` (default: the preset's, with
        ``overrides``). Returns one ``Speech``, whatever the options. ``on_step(stage, done, total)``, if given, hears
        every AR step and every diffusion step ("autoregressive", "diffusion"; "decoding" for a code book decoder;
        ", chunk i/n" added when the text has several chunks, ", drawn again" for a chunk drawn again); an exception
        it raises ends the run, unchanged."""
        settings = settings or Settings.from_preset(preset)
        if overrides:
            settings = settings.replace(**overrides)
        voice = voice or Voice("random")
        seed = draw_seed(seed)
        settings, chain, chunks, decoder, notes = self._start(text, voice, settings)
        # The chunk-by-chunk stream, taken whole: one code path for a take and for its stream.
        stream = SpeechStream(self._stream_chunks(text, voice, seed, settings, chain, chunks, decoder, notes, [],
                                                  on_step), [])
        for _ in tqdm(stream, total=len(chunks), desc="chunks", disable=not self.progress or len(chunks) == 1,
                      leave=False):
            pass
        speech = stream.result
        del speech.timings["first_audio"]  # a whole take's first audio is its end
        return speech

    def _say_chunk(self, chunks, index, seed, latents, ar_mels, settings, chain, decoder, generator, timer, notes,
                   on_step):
        """Chunk ``index`` of a run, drawn once more with its own seed when its length is clearly wrong
        (``_paced``): (k waveforms, (k, T) codes, (N,) scores)."""
        chunk, report = chunks[index], on_step
        if on_step is not None and len(chunks) > 1:
            report = (lambda stage, done, total, label=f", chunk {index + 1}/{len(chunks)}":
                      on_step(stage + label, done, total))

        def speak(chunk_generator, again=False):
            said = report
            if again and report is not None:  # a redraw's steps start from 0 again: say which they are
                said = (lambda stage, done, total: report(stage + ", drawn again", done, total))
            return self._speak_chunk(chunk, latents, ar_mels, settings, chain, decoder, chunk_generator, timer, notes,
                                     said)

        label = f"Chunk {index + 1} of {len(chunks)}" if len(chunks) > 1 else "The speech"
        return self._paced(speak(generator), speak, chunk, label, (seed + index + 1) % SEED_RANGE, settings, notes)

    def _start(self, text: str, voice: Voice, settings: Settings):
        """What every run settles before any work: the settings fitted to the model set (and the device moved),
        the decoder choice's chain, the chunks, the prepared AR decoder and the notes so far."""
        if settings.inference.device is not None and choose_device(settings.inference.device) != self.device:
            self.models.to(choose_device(settings.inference.device))
        settings, notes = self.models.fit(settings)
        chain = self.models.chain(settings.decoder)
        chunks, chunk_notes = self.chunks(text, settings)
        notes += chunk_notes
        if settings.redact:  # unbalanced brackets fail now, not after minutes of sampling
            for piece in [text, *chunks]:
                parse_redactions(piece)
        decoder, option_notes = self.prepare(settings)
        notes += [note for note in option_notes if note not in notes]
        notes += [note for note in voice.notes if note not in notes]  # the voice's clip checks (voices.library)
        return settings, chain, chunks, decoder, notes

    def stream(self, text: str, voice: Voice | None = None, preset: str = "fast", seed: int | None = None,
               settings: Settings | None = None, first_chunk_codes: int = FIRST_CHUNK_CODES,
               chunk_codes: int = CHUNK_CODES, **overrides) -> SpeechStream:
        """Speak ``text``, handing out audio while the rest is still being made.

        With the fast path (decoder "hifigan": the default here for a set that has a HiFiGAN) audio comes as the
        codes are drawn: the first piece once ``first_chunk_codes`` codes are drawn, later ones every ``chunk_codes``
        codes, and the last when the chunk's codes end (``stages.streaming`` explains the sizes); a text of several
        chunks streams them in turn. The pieces join into ``tts(..., decoder="hifigan")``'s audio for the same seed
        (the same codes; the audio within fp32 rounding), except where ``tts`` would draw a chunk again for its
        length: a streamed chunk has been heard already, so the stream only notes it. [Bracketed] text is spoken,
        not cut, in such a stream.

        With any other chain (a set without a HiFiGAN, or decoder "diffusion" asked for) each piece is a whole text
        chunk (a sentence, for a set trained on sentences), handed out as soon as it is made: the pieces join into
        ``tts``'s audio exactly, redraws and cuts included. Setting problems raise here, before the first piece.
        """
        settings = settings or Settings.from_preset(preset)
        if overrides:
            settings = settings.replace(**overrides)
        if settings.decoder != "hifigan" and "decoder" not in settings.explicit and self.models.has_hifigan:
            settings = settings.replace(explicit=False, decoder="hifigan")
        if first_chunk_codes < 1 or chunk_codes < 1:
            raise ValueError("first_chunk_codes and chunk_codes must be at least 1.")
        voice = voice or Voice("random")
        seed = draw_seed(seed)
        settings, chain, chunks, decoder, notes = self._start(text, voice, settings)
        timeline: list[StreamPiece] = []
        if settings.decoder != "hifigan":
            return SpeechStream(self._stream_chunks(text, voice, seed, settings, chain, chunks, decoder, notes,
                                                    timeline), timeline)
        if settings.redact and any("[" in chunk or "]" in chunk for chunk in chunks):
            notes.append("[Bracketed] text is spoken and not cut out in a stream (the cut needs the whole audio); "
                         "use tts for it.")
        return SpeechStream(self._stream(text, voice, seed, settings, chain, chunks, decoder, notes,
                                         (first_chunk_codes, chunk_codes), timeline), timeline)

    def _stream_chunks(self, text, voice, seed, settings, chain, chunks, decoder, notes, timeline, on_step=None):
        """The generator behind ``tts`` and behind ``stream`` for a chain without incremental decoding: the chunks,
        each handed out (and logged in ``timeline``) as soon as it is made; returns the ``Speech``."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        timer, started, first_audio = StageTimer(self.device), time.perf_counter(), None
        with timer.stage("conditioning"), torch.no_grad():
            latents, ar_mels = voice_latents(self.models, voice, generator, want_mels=settings.cvvp_amount > 0,
                                             cache=settings.latent_cache,
                                             diffusion=chain.decoder.needs_diffusion_latent)
        chunk_wavs, all_codes, all_scores = [], [], []
        for index in range(len(chunks)):
            before = sum(timer.seconds.get(stage, 0.0) for stage in DECODING_STAGES)
            with torch.no_grad():
                wavs, best, scores = self._say_chunk(chunks, index, seed, latents, ar_mels, settings, chain, decoder,
                                                     generator, timer, notes, on_step)
            chunk_wavs.append([w.float().cpu() for w in wavs])
            all_codes.append(best.cpu())
            all_scores.append(scores.float().cpu())
            ready = time.perf_counter()
            first_audio = first_audio or ready - started
            decoding = sum(timer.seconds.get(stage, 0.0) for stage in DECODING_STAGES) - before
            timeline.append(StreamPiece(index, ready - started, chunk_wavs[-1][0].shape[-1], best.shape[-1], decoding,
                                        0))
            yield chunk_wavs[-1][0]
        timer.seconds["total"] = time.perf_counter() - started
        timer.seconds["first_audio"] = first_audio or timer.seconds["total"]
        candidates = [torch.cat([chunk[i] for chunk in chunk_wavs], dim=-1) for i in range(settings.candidates)]
        return Speech(wav=candidates[0], sample_rate=SAMPLE_RATE, seed=seed, text=text, voice=voice.name,
                      settings=settings.to_dict(), candidates=candidates, codes=all_codes, scores=all_scores,
                      chunks=chunks, timings=timer.seconds, model=self.models.description, notes=notes)

    def _stream(self, text, voice, seed, settings, chain, chunks, decoder, notes, sizes, timeline):
        """The generator behind ``stream``: yields (1, n) pieces (each logged in ``timeline``), returns the
        ``Speech``."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        timer, started, first_audio = StageTimer(self.device), time.perf_counter(), None
        pieces, all_codes = [], []
        with timer.stage("conditioning"), torch.no_grad():
            latents, _ = voice_latents(self.models, voice, generator, cache=settings.latent_cache, diffusion=False)
        for index, chunk in enumerate(chunks):
            incremental = chain.decoder.open_stream(latents.autoregressive, *sizes)
            steps = decoder.draw(latents.autoregressive, self.text_tokens(chunk), settings.max_mel_tokens,
                                 **sampling_options(settings, self.models.quirks, generator))
            drawn, start = None, len(pieces)
            while True:
                with timer.stage("autoregressive"):
                    step = next(steps, None)
                decoding = time.perf_counter()
                with timer.stage("hifigan"):
                    piece = (incremental.push(step.latent[0].float()) if step is not None else
                             incremental.finish()).float().cpu()
                if piece.shape[-1]:
                    ready = time.perf_counter()
                    first_audio = first_audio or ready - started
                    pieces.append(piece)
                    timeline.append(StreamPiece(index, ready - started, piece.shape[-1], len(incremental.latents),
                                                ready - decoding, incremental.frames_decoded[-1]))
                    yield piece
                if step is None:
                    break
                drawn = step
            all_codes.append(drawn.codes[:, :drawn.step + 1].cpu())
            if not bool(drawn.done.all()):
                _note_no_stop(drawn.step + 1, notes)
            self._note_pace(chunk, torch.cat(pieces[start:], dim=-1), index, len(chunks), notes)
        timer.seconds["total"] = time.perf_counter() - started
        timer.seconds["first_audio"] = first_audio or timer.seconds["total"]
        wav = torch.cat(pieces, dim=-1) if pieces else torch.zeros(1, 0)
        return Speech(wav=wav, sample_rate=SAMPLE_RATE, seed=seed, text=text, voice=voice.name,
                      settings=settings.to_dict(), candidates=[wav], codes=all_codes,
                      scores=[torch.zeros(1) for _ in chunks], chunks=chunks, timings=timer.seconds,
                      model=self.models.description, notes=notes)

    def _note_pace(self, chunk: str, wav: torch.Tensor, index: int, count: int, notes: list[str]) -> None:
        """A streamed chunk's duration check (``stages.pacing``): a note, since it cannot be drawn again."""
        rate = self.models.speech_rate
        verdict = None if rate is None else rate.judge(chunk, wav, SAMPLE_RATE)
        if verdict is not None:
            label = f"Chunk {index + 1} of {count}" if count > 1 else "The speech"
            notes.append(f"{label} ({chunk[:50]!r}) came out too {verdict} ({speech_seconds(wav, SAMPLE_RATE):.1f} s "
                         "of speech); a stream cannot draw it again: listen to it, or try another seed.")

    def _paced(self, take, speak, chunk: str, label: str, redraw_seed: int, settings: Settings, notes: list[str]):
        """``take`` (k waveforms, codes, scores), or ``speak(generator)``'s redraw with ``redraw_seed`` when the best
        waveform's speech is clearly too short or too long for the chunk (``stages.pacing``); a note either way."""
        rate = self.models.speech_rate
        if rate is None:
            return take
        heard = chunk
        if settings.redact and self.aligner is not None and ("[" in chunk or "]" in chunk):
            plan = parse_redactions(chunk)  # the audio was cut to the kept spans
            heard = " ".join(plan.spoken_text[first:last + 1] for first, last in plan.kept)
        verdict = rate.judge(heard, take[0][0], SAMPLE_RATE)
        if verdict is None:
            return take
        again = speak(torch.Generator(device=self.device).manual_seed(redraw_seed), again=True)
        shortest, longest = rate.needed_seconds(heard)
        expected = f"where {shortest:.1f}-{longest:.1f} s were expected for {count_letters(heard)} letters"
        first = speech_seconds(take[0][0], SAMPLE_RATE)
        if rate.judge(heard, again[0][0], SAMPLE_RATE) is None:
            notes.append(f"{label} came out too {verdict} ({first:.1f} s of speech {expected}) and was drawn again "
                         f"with seed {redraw_seed}.")
            return again
        second = speech_seconds(again[0][0], SAMPLE_RATE)
        miss = lambda seconds: max(shortest - seconds, seconds - longest)  # noqa: E731 - how far outside the range
        kept, seconds = (take, first) if miss(first) <= miss(second) else (again, second)
        notes.append(f"{label} ({chunk[:50]!r}) is too {rate.judge(heard, kept[0][0], SAMPLE_RATE)}: {seconds:.1f} s "
                     f"of speech {expected}, also when drawn again with seed {redraw_seed}; listen to it, and split "
                     "the text or try another seed.")
        return kept

    def _speak_chunk(self, chunk, latents, ar_mels, settings, chain: Chain, decoder, generator, timer, notes,
                     on_step=None):
        """One chunk through sampling, ranking, decoding and redaction: (k waveforms, (k, T) codes, (N,) scores)."""
        models = self.models
        text_tokens = self.text_tokens(chunk)
        drawn_latents = None  # (1, T, C): the fast path's one sample's latents, as its steps computed them
        with timer.stage("autoregressive"):
            if chain.decoder.reads_drawn_latents:
                codes, drawn_latents = sample_with_latents(decoder, latents.autoregressive, text_tokens, settings,
                                                           models.quirks, generator, self.progress, on_step)
            else:
                codes = sample_codes(decoder, latents.autoregressive, text_tokens, settings, models.quirks,
                                     generator, self.progress, on_step)
        codes, all_stopped = chain.decoder.finish_codes(codes)
        if not all_stopped:
            _note_no_stop(codes.shape[1], notes)
        with timer.stage("ranking"):
            scores = chain.ranker.score(codes, text_tokens, latents, ar_mels, settings)
        best = best_rows(codes, scores, settings.candidates)  # (k, T)
        if drawn_latents is not None:
            wavs = chain.decoder.decode_latents(best, drawn_latents, latents, timer, on_step)
        else:
            wavs = chain.decoder.decode(best, text_tokens, latents, settings, generator, timer, self.progress,
                                        on_step)
        if settings.redact and ("[" in chunk or "]" in chunk):
            with timer.stage("redaction"):
                wavs = [self._redact(wav, chunk, notes) for wav in wavs]
        return wavs, best, scores

    def _redact(self, wav: torch.Tensor, text: str, notes: list[str]) -> torch.Tensor:
        aligner = self._load_aligner()
        if aligner is None:
            note = f"[Bracketed] text was spoken but not cut out: {self._aligner_error}"
            if note not in notes:
                notes.append(note)
            return wav
        return aligner.redact(wav, text, SAMPLE_RATE)

    def _load_aligner(self):
        """The wav2vec2 aligner: given at construction, else loaded once on first use (None if it cannot be)."""
        if self.aligner is None and self._aligner_error is None:
            from tortoise_lab.stages.redaction import Aligner, AlignerUnavailableError

            try:
                self.aligner = Aligner.from_pretrained(device=self.device)
            except AlignerUnavailableError as error:
                self._aligner_error = str(error)
        return self.aligner


def _note_no_stop(max_mel_tokens: int, notes: list[str]) -> None:
    """The note for samples that reached ``max_mel_tokens`` without a stop token, once per run."""
    if not any("stop token" in n for n in notes):
        notes.append(f"Some samples reached max_mel_tokens ({max_mel_tokens}) without a stop token: the speech "
                     "may be cut short; split the text or raise max_mel_tokens.")
