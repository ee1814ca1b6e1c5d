"""Parity of tortoise_lab's speaker encoder (models/speaker_encoder.py, voices/similarity.py's preparation) with
Resemblyzer 0.1.4's own ``preprocess_wav`` and ``VoiceEncoder.embed_utterance``, on the same weights and audio.

Cases: a built-in clip at 16 kHz; the same with a second of silence inside and a quiet start (the pause cut and the
loudness raise act); a clip shorter than one 1.6 s partial (padded). The preparation is the same samples, the
40-band mel (ours torch.stft and torchaudio's Slaney filters, theirs librosa) agrees to float rounding, and so do
the d-vectors.
"""

from __future__ import annotations

import pytest
import torch

from tortoise_lab.assets import speaker_encoder_file
from tortoise_lab.audio import INPUT_SAMPLE_RATE, resample
from tortoise_lab.models.speaker_encoder import encoder_mel
from tortoise_lab.voices import load_voice
from tortoise_lab.voices.similarity import EncoderMeasure

pytestmark = pytest.mark.parity
RATE = 16_000


@pytest.fixture(scope="module")
def both(reference):
    clip = resample(load_voice("tom").clips[0], INPUT_SAMPLE_RATE, RATE)[0]
    quiet = torch.cat([0.05 * clip[:RATE], torch.zeros(RATE), clip[RATE:]])  # a quiet second, then a pause
    cases = {"clip": clip, "paused": quiet, "short": clip[RATE // 2:RATE // 2 + RATE]}
    theirs, _ = reference.run("ref_speaker_encoder.py", {"weights": str(speaker_encoder_file())}, cases)
    return cases, theirs, EncoderMeasure()


@pytest.mark.parametrize("name", ["clip", "paused", "short"])
def test_preparation_mel_and_d_vector_match_resemblyzer(both, name):
    cases, theirs, encoder = both
    prepared = encoder.prepare(cases[name], RATE)
    assert prepared.shape == theirs[f"{name}.prepared"].shape
    torch.testing.assert_close(prepared, theirs[f"{name}.prepared"], rtol=1e-6, atol=1e-7)
    mel = encoder_mel(prepared)  # the whole prepared utterance; embed pads it to its last partial first
    assert mel.shape == theirs[f"{name}.mel"].shape
    torch.testing.assert_close(mel, theirs[f"{name}.mel"], rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(encoder.model.embed(prepared), theirs[f"{name}.embedding"], rtol=0, atol=1e-4)


def test_the_pause_was_cut_and_the_quiet_start_raised(both):
    cases, theirs, _ = both
    assert theirs["paused.prepared"].numel() < cases["paused"].numel() - RATE // 2  # most of the pause is gone
