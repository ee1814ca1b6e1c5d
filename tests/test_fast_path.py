"""The fast path (decoder "hifigan", upstream's api_fast) on tiny random models: one sample, its latents straight to
HiFiGAN, settings it does not use refused or noted, the sets without a HiFiGAN refused, its weights file asked for.
Parity with upstream is tests/parity/test_tts.py."""

import pytest
import torch

from tortoise_lab.cli import main
from tortoise_lab.config import Settings
from tortoise_lab.model_set import WeightsMissing, embedded_available, embedded_models, official_models, random_models
from tortoise_lab.models.hifigan import frames_for_latents
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.voices import Voice
from tests.support.weights import write_official_style
from tests.support.tiny import tts, voice  # noqa: F401 (fixtures)

TEXT = "Hello there, friend."
FAST = dict(decoder="hifigan", max_mel_tokens=24)


def test_one_sample_decoded_whole_with_a_note(tts, voice):
    speech = tts.tts(TEXT, voice=voice, seed=5, **FAST)
    codes = speech.codes[0]  # (1, L): the one sample, up to and including its stop code
    assert codes.shape[0] == 1 and speech.scores[0].tolist() == [0.0] and len(speech.candidates) == 1
    hop = tts.models.hifigan.config.hop_length
    assert speech.wav.shape == (1, frames_for_latents(codes.shape[1]) * hop)
    assert speech.settings["decoder"] == "hifigan" and speech.settings["num_autoregressive_samples"] == 1
    assert any("samples, ranking and diffusion settings are not used" in note for note in speech.notes)
    assert "hifigan" in speech.timings and "diffusion_and_vocoder" not in speech.timings


def test_the_fast_path_encodes_only_the_ar_conditioning(tts, voice, monkeypatch):
    """The diffusion conditioning encoder is most of the conditioning time and the fast path never reads its latent:
    neither the whole take nor the stream runs it, and the AR latent is the one the main path makes."""
    from tortoise_lab.stages.conditioning import voice_latents

    both, _ = voice_latents(tts.models, voice, torch.Generator(), cache=False)
    alone, _ = voice_latents(tts.models, voice, torch.Generator(), cache=False, diffusion=False)
    assert both.diffusion is not None and alone.diffusion is None
    assert torch.equal(alone.autoregressive, both.autoregressive)

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path ran the diffusion conditioning encoder")

    monkeypatch.setattr(tts.models.diffusion, "conditioning_embedding", refuse)
    assert tts.tts(TEXT, voice=voice, seed=5, latent_cache=False, **FAST).wav.numel() > 0
    assert list(tts.stream(TEXT, voice=voice, seed=5, latent_cache=False, max_mel_tokens=24))


def test_same_seed_same_audio_and_the_kv_cache_keeps_the_codes(tts, voice):
    cached = tts.tts(TEXT, voice=voice, seed=5, kv_cache=True, **FAST)
    assert torch.equal(cached.wav, tts.tts(TEXT, voice=voice, seed=5, kv_cache=True, **FAST).wav)
    uncached = tts.tts(TEXT, voice=voice, seed=5, kv_cache=False, **FAST)
    assert torch.equal(cached.codes[0], uncached.codes[0])
    # The fast path decodes the latents its steps computed: a cached step (one row) and an uncached one (the whole
    # sequence) sum in another order, so the audio agrees to fp32 rounding (measured 2.2e-8), not bit for bit.
    assert cached.wav.shape == uncached.wav.shape
    assert (cached.wav - uncached.wav).abs().max() < 1e-6
    assert not torch.equal(cached.wav, tts.tts(TEXT, voice=voice, seed=6, **FAST).wav)


def test_the_fast_path_decodes_the_latents_its_steps_computed(tts, voice, monkeypatch):
    """No second, teacher-forced pass through the AR model: its latents are the sampling steps' (the stream's)."""
    plain = tts.tts(TEXT, voice=voice, seed=5, **FAST)

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path ran the teacher-forced latent pass")

    monkeypatch.setattr(tts.models.gpt, "latents", refuse)
    again = tts.tts(TEXT, voice=voice, seed=5, **FAST)
    assert torch.equal(plain.wav, again.wav) and "ar_latents" not in again.timings
    streamed = tts.stream(TEXT, voice=voice, seed=5, max_mel_tokens=FAST["max_mel_tokens"])
    assert (torch.cat(list(streamed), dim=-1) - again.wav).abs().max() < 1e-6


def test_the_fast_path_decodes_with_weights_packed_for_one_sample(tts):
    """A step of the fast path multiplies one row by every weight: packed for one row (not the main path's batch),
    which is about a tenth faster at the official size (benchmarks/README.md)."""
    from tortoise_lab.config import DEFAULT_BATCH_SIZE
    from tortoise_lab.fast import prepack_linears

    fast, _ = tts.prepare(Settings(decoder="hifigan", max_mel_tokens=24))
    main, _ = tts.prepare(Settings(max_mel_tokens=24))
    assert fast.used["prepack"] and main.used["prepack"]
    assert fast.model is prepack_linears(tts.models.gpt, 1)
    assert main.model is prepack_linears(tts.models.gpt, DEFAULT_BATCH_SIZE) and main.model is not fast.model


def test_speed_options_apply_as_on_the_main_path(tts, voice):
    """half, DeepSpeed and compile on CPU: each noted and not used, as on the main path, and the audio unchanged."""
    plain = tts.tts(TEXT, voice=voice, seed=5, **FAST)
    optioned = tts.tts(TEXT, voice=voice, seed=5, half=True, deepspeed=True, **FAST)
    assert torch.equal(plain.wav, optioned.wav)
    assert any("Half precision" in note for note in optioned.notes)
    assert any("DeepSpeed" in note for note in optioned.notes)


def test_settings_it_does_not_use_are_refused_when_chosen(tts, voice):
    with pytest.raises(ValueError, match=r"^The hifigan decoder .* does not use num_autoregressive_samples, "
                                         r"diffusion_iterations; leave them out\.$"):
        tts.tts(TEXT, voice=voice, seed=5, num_autoregressive_samples=4, diffusion_iterations=3, **FAST)
    with pytest.raises(ValueError, match="does not use cvvp_amount; leave it out"):
        tts.tts(TEXT, voice=voice, seed=5, cvvp_amount=0.5, **FAST)


def test_an_unknown_decoder_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"^Unknown decoder 'vocos'\. Available: diffusion, hifigan\.$"):
        Settings.from_preset("fast", decoder="vocos")


def test_the_default_decoder_is_the_main_chain_and_leaves_hifigan_unloaded(voice):
    models = random_models("tiny", seed=0)
    speech = TextToSpeech(models, progress=False).tts(TEXT, voice=voice, preset="ultra_fast", seed=5,
                                                      num_autoregressive_samples=2, max_mel_tokens=12,
                                                      diffusion_iterations=2)
    assert speech.settings["decoder"] == "diffusion" and "hifigan" not in models.loaded


@pytest.mark.skipif(not embedded_available(), reason="the embedded model is not in this installation")
def test_the_embedded_set_has_no_hifigan_and_says_so_in_one_sentence():
    tts = TextToSpeech(embedded_models(device="cpu"), progress=False)
    with pytest.raises(ValueError, match=r"^Decoder 'hifigan' needs the official model's HiFiGAN, and the embedded "
                                         r"[^.]*\) has none; use decoder 'diffusion' .* or the official weights\.$"):
        tts.tts(TEXT, voice=Voice("x", clips=[0.1 * torch.randn(1, 30_000)]), seed=1, decoder="hifigan")


def test_official_files_without_hifidecoder_ask_for_it_then_load_it(tmp_path, voice):
    source = random_models("tiny", seed=1)
    write_official_style(source, tmp_path)
    tts = TextToSpeech(official_models(tmp_path, size="tiny"), progress=False)
    with pytest.raises(WeightsMissing, match=r"decoder 'hifigan' needs hifidecoder\.pth, .*`tortoise-lab download "
                                             r"--files hifidecoder\.pth --models-dir "):
        tts.tts(TEXT, voice=voice, seed=5, **FAST)
    torch.save(source.hifigan.state_dict(), tmp_path / "hifidecoder.pth")  # folded weights load as they are
    speech = tts.tts(TEXT, voice=voice, seed=5, **FAST)
    original = TextToSpeech(source, progress=False).tts(TEXT, voice=voice, seed=5, **FAST)
    assert torch.equal(speech.wav, original.wav)


def test_speak_and_read_take_decoder_hifigan(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["speak", "--tiny", "--decoder", "hifigan", "--seed", "3", "-q", "--max-mel-tokens", "16",
                 "-o", "fast.wav", "Hello."]) == 0
    assert "decoder" in (tmp_path / "fast.json").read_text()
    (tmp_path / "story.txt").write_text("One sentence here. | Another sentence there.")
    assert main(["read", "story.txt", "--tiny", "--decoder", "hifigan", "--seed", "3", "-q",
                 "--max-mel-tokens", "16"]) == 0
    assert (tmp_path / "output-audio-samples" / "story" / "random" / "combined.wav").is_file()
    assert main(["speak", "--tiny", "--decoder", "hifigan", "--num-autoregressive-samples", "4", "Hello."]) == 2
    assert "does not use --num-autoregressive-samples" in capsys.readouterr().err
