"""The fast path's stream (``TextToSpeech.stream``, ``stages.streaming``): pieces as the codes are drawn that join into
the whole-utterance fast-path audio, each decoded from its own latents plus a fixed context (the work per piece does
not grow with the utterance), the first as early as the decoder's context allows."""

from pathlib import Path

import pytest
import torch

from tortoise_lab.models.hifigan import HifiganConfig, HifiganDecoder, frames_for_latents
from tortoise_lab.stages.streaming import (CHUNK_CODES, FIRST_CHUNK_CODES, IncrementalHifigan, lookahead_codes,
                                           receptive_radius, stretch_frames)
from tortoise_lab.voices import Voice
from tests.support.tiny import tts, voice  # noqa: F401 (fixtures)

TEXT = "Hello there, friend."
# fp32: the pieces are HiFiGAN over windows of other lengths than the whole utterance's, so convolutions sum in
# another order. Measured here: 6e-8 (tiny pipeline), 9e-8 (tiny HiFiGAN, 600 latents), 2e-8 (official size).
TOLERANCE = dict(rtol=0, atol=1e-6)


@pytest.mark.parametrize("random_voice, kv_cache", [(False, True), (True, True), (False, False)],
                         ids=["clips", "random_voice", "no_kv_cache"])
def test_the_stream_joins_into_the_whole_utterance_fast_path(tts, voice, random_voice, kv_cache):
    voice = Voice("random") if random_voice else voice
    whole = tts.tts(TEXT, voice=voice, seed=9, decoder="hifigan", max_mel_tokens=59)
    stream = tts.stream(TEXT, voice=voice, seed=9, max_mel_tokens=59, kv_cache=kv_cache)
    pieces = list(stream)
    speech = stream.result
    assert len(pieces) == 4  # after 8 codes, 28 and 48, then the rest at the end (59 codes)
    assert torch.equal(speech.codes[0], whole.codes[0])  # the same draws from the same generator
    assert torch.equal(speech.wav, torch.cat(pieces, dim=-1)) and speech.wav.shape == whole.wav.shape
    torch.testing.assert_close(speech.wav, whole.wav, **TOLERANCE)
    assert speech.seed == 9 and speech.settings["decoder"] == "hifigan"
    assert 0 < speech.timings["first_audio"] <= speech.timings["total"]
    assert whole.notes == speech.notes  # the fast path's note and the missing stop token's, in both
    timeline = stream.timeline  # when each piece was ready and what it cost
    assert [p.samples for p in timeline] == [piece.shape[-1] for piece in pieces]
    assert [p.codes for p in timeline] == [8, 28, 48, 59] and {p.chunk for p in timeline} == {0}
    assert timeline[0].ready_s == speech.timings["first_audio"]
    assert all(a.ready_s < b.ready_s for a, b in zip(timeline, timeline[1:]))
    assert all(0 < p.decode_s < p.ready_s and p.frames > 0 for p in timeline)


def test_the_first_piece_size_is_a_setting(tts, voice):
    early = list(tts.stream(TEXT, voice=voice, seed=9, max_mel_tokens=59, first_chunk_codes=8, chunk_codes=20))
    later = list(tts.stream(TEXT, voice=voice, seed=9, max_mel_tokens=59, first_chunk_codes=30, chunk_codes=20))
    assert early[0].shape[-1] < later[0].shape[-1] and len(early) > len(later)
    torch.testing.assert_close(torch.cat(early, dim=-1), torch.cat(later, dim=-1), **TOLERANCE)


def test_a_text_of_several_chunks_streams_them_in_turn(tts, voice):
    stream = tts.stream("One sentence here. Another sentence there.", voice=voice, seed=2, text_split=(10, 20),
                        max_mel_tokens=20)
    pieces = list(stream)
    assert len(stream.result.chunks) == len(stream.result.codes) == 3  # split at most 20 characters
    assert torch.equal(stream.result.wav, torch.cat(pieces, dim=-1))


def test_another_chain_streams_whole_chunks_equal_to_tts(tts, voice):
    """decoder "diffusion" asked for: each piece is a whole chunk, handed out when made; they join into tts's audio
    exactly (the same draws, redraws and cuts)."""
    text, options = "One sentence here. Another sentence there.", dict(text_split=(10, 20), max_mel_tokens=16,
                                                                       num_autoregressive_samples=2)
    whole = tts.tts(text, voice=voice, seed=4, decoder="diffusion", **options)
    stream = tts.stream(text, voice=voice, seed=4, decoder="diffusion", **options)
    pieces = list(stream)
    assert len(pieces) == len(whole.chunks) == 3 and [p.chunk for p in stream.timeline] == [0, 1, 2]
    assert torch.equal(torch.cat(pieces, dim=-1), whole.wav) and torch.equal(stream.result.wav, whole.wav)
    assert all(torch.equal(a, b) for a, b in zip(stream.result.codes, whole.codes))
    assert stream.result.settings["decoder"] == "diffusion" and stream.result.notes == whole.notes
    timeline = stream.timeline
    assert [p.samples for p in timeline] == [piece.shape[-1] for piece in pieces] and all(p.frames == 0
                                                                                            for p in timeline)
    assert timeline[0].ready_s == stream.result.timings["first_audio"] < stream.result.timings["total"]
    assert all(p.decode_s > 0 for p in timeline)


def test_the_stream_refuses_bad_sizes_and_unused_settings(tts, voice):
    with pytest.raises(ValueError, match="at least 1"):
        tts.stream(TEXT, voice=voice, first_chunk_codes=0)
    with pytest.raises(ValueError, match="does not use num_autoregressive_samples"):  # before the first piece
        tts.stream(TEXT, voice=voice, num_autoregressive_samples=4)


def _stream_pieces(model, latents, speaker, first=FIRST_CHUNK_CODES, every=CHUNK_CODES):
    incremental = IncrementalHifigan(model, speaker, first, every)
    pieces = [incremental.push(latent) for latent in latents] + [incremental.finish()]
    return torch.cat(pieces, dim=-1), incremental


@pytest.mark.parametrize("name", ["tiny", pytest.param("tortoise-v2", marks=pytest.mark.slow)])
@torch.no_grad()
def test_pieces_equal_whole_decoding_and_the_work_per_piece_is_bounded(name):
    torch.manual_seed(0)
    config = HifiganConfig.from_name(name)
    model = HifiganDecoder(config).eval()
    speaker = torch.randn(1, config.cond_channels)
    radius = receptive_radius(config)
    # Most frames a piece may feed HiFiGAN: its share of CHUNK_CODES codes (and the codes drawn since the frames
    # last emitted), plus the context on both sides; the same for a short and a long utterance.
    bound = frames_for_latents(CHUNK_CODES + lookahead_codes(config) + 2) + 2 * radius
    work = {}
    for length in ((60, 160) if name == "tortoise-v2" else (60, 600)):
        latents = torch.randn(length, config.in_channels)
        joined, incremental = _stream_pieces(model, latents, speaker)
        torch.testing.assert_close(joined, model.inference(latents[None], speaker)[0], **TOLERANCE)
        work[length] = max(incremental.frames_decoded)
        assert len(incremental.frames_decoded) >= length // CHUNK_CODES
    assert all(frames <= bound for frames in work.values()), (work, bound)
    # A piece's work does not grow with the utterance (a frame either way: a code is 4.35 frames).
    assert max(work.values()) - min(work.values()) <= 1, work


@torch.no_grad()
def test_a_short_utterance_comes_whole_at_the_end_and_the_first_piece_waits_for_the_context():
    torch.manual_seed(0)
    config = HifiganConfig.from_name("tiny")
    model = HifiganDecoder(config).eval()
    speaker, latents = torch.randn(1, config.cond_channels), torch.randn(3, config.in_channels)
    incremental = IncrementalHifigan(model, speaker, 8, 20)
    assert all(incremental.push(latent).shape == (1, 0) for latent in latents)
    torch.testing.assert_close(incremental.finish(), model.inference(latents[None], speaker)[0], **TOLERANCE)
    # Too few codes past the first frames for any of them to be final: nothing yet, the piece comes later.
    early = IncrementalHifigan(model, speaker, 1, 1)
    assert early.push(latents[0]).shape == (1, 0)


def test_the_stretch_of_a_window_is_the_whole_stretch_there():
    latents = torch.randn(50, 16)
    whole = torch.nn.functional.interpolate(latents.T[None], scale_factor=4.0, mode="linear")
    whole = torch.nn.functional.interpolate(whole, scale_factor=24000 / 22050, mode="linear")
    window = stretch_frames(list(latents.unbind(0)), 40, 120, 50)
    torch.testing.assert_close(window, whole[:, :, 40:120], rtol=0, atol=1e-6)  # bitwise on this CPU


def test_speak_stream_plays_the_pieces_as_they_come_and_writes_the_take(tmp_path, monkeypatch, capsys):
    import os

    import numpy as np
    import soundfile

    from tortoise_lab.cli import main

    played = tmp_path / "played.f32"
    player = tmp_path / "bin" / "aplay"  # the first raw player tried: here it keeps what it is fed
    player.parent.mkdir()
    player.write_text(f'#!/bin/sh\ncat > "{played}"\n')
    player.chmod(0o755)
    monkeypatch.setenv("PATH", f"{player.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    assert main(["speak", "--tiny", "--stream", "--play", "--seed", "3", "--max-mel-tokens", "30", "-o", "s.wav",
                 "Hello there."]) == 0
    assert "first audio after" in capsys.readouterr().out
    assert main(["speak", "--tiny", "--decoder", "hifigan", "--seed", "3", "--max-mel-tokens", "30", "-q",
                 "-o", "w.wav", "Hello there."]) == 0
    streamed, whole = soundfile.read("s.wav", dtype="float32")[0], soundfile.read("w.wav", dtype="float32")[0]
    heard = np.fromfile(played, dtype="<f4")
    assert heard.shape == streamed.shape == whole.shape
    one_step = 1.01 / 32768  # the WAVs hold 16-bit samples
    assert np.abs(streamed - whole).max() <= one_step and np.abs(heard - streamed).max() <= one_step


def test_speak_stream_writes_the_wav_as_it_grows(tmp_path, monkeypatch, capsys):
    """Each piece is in the file, under a valid header, before it is played; the file ends as the take's bytes."""
    from contextlib import contextmanager

    import soundfile

    from tortoise_lab.audio import save_audio
    from tortoise_lab.cli import main, speak

    seen = []  # (frames the header says, frames of the piece being played, the file's bytes then)

    @contextmanager
    def watching_player(enabled, rate):
        def feed(piece):
            seen.append((soundfile.info("g.wav").frames, piece.shape[-1], Path("g.wav").read_bytes()))
        yield feed

    monkeypatch.setattr(speak, "raw_player", watching_player)
    monkeypatch.chdir(tmp_path)
    assert main(["speak", "--tiny", "--stream", "--seed", "3", "--max-mel-tokens", "50", "-q", "-o", "g.wav",
                 "Hello there."]) == 0
    assert len(seen) >= 3  # after 8 codes, 28 and 48, and the rest
    written = [frames for frames, _, _ in seen]
    assert written == [sum(n for _, n, _ in seen[:k + 1]) for k in range(len(seen))]  # each piece already there
    take, rate = soundfile.read("g.wav", dtype="float32")
    assert take.shape[0] == written[-1] and rate == 24000
    assert seen[-1][2] == Path("g.wav").read_bytes()  # the last growth is the final file, byte for byte
    save_audio("again.wav", torch.from_numpy(take), rate)
    assert Path("again.wav").read_bytes() == Path("g.wav").read_bytes()  # ...which is what save_audio writes


def test_a_failed_stream_leaves_no_partial_wav(tmp_path, monkeypatch):
    from contextlib import contextmanager

    from tortoise_lab.cli import main, speak

    @contextmanager
    def failing_player(enabled, rate):
        def feed(piece):
            assert Path("f.wav").stat().st_size > 44  # the first piece was written...
            raise KeyboardInterrupt  # ...and then the user stops the run
        yield feed

    monkeypatch.setattr(speak, "raw_player", failing_player)
    monkeypatch.chdir(tmp_path)
    assert main(["speak", "--tiny", "--stream", "--seed", "3", "--max-mel-tokens", "50", "-q", "-o", "f.wav",
                 "Hi."]) == 130  # interrupted
    assert list(tmp_path.iterdir()) == []


def test_speak_stream_wants_a_wav_name(tmp_path, monkeypatch, capsys):
    from tortoise_lab.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["speak", "--tiny", "--stream", "-o", "s.flac", "Hi."]) != 0
    assert "--stream writes a WAV as it grows" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
