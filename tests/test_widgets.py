"""The playground widget, driven without a browser: widget values in, Speech and what the widgets show out."""

import sys
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from tortoise_lab.model_set import embedded_models
from tortoise_lab.config import Settings
from tortoise_lab.pipeline import SAMPLE_RATE, Speech, TextToSpeech
from tortoise_lab.widgets import STAGES, Playground

VOICE = "espeak_us_m3"  # a project voice the embedded model knows
SHORT = dict(num_autoregressive_samples=2)  # the embedded model speaks "Hi." in a few seconds with this
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tts():
    return TextToSpeech(embedded_models(), progress=False)


def playground_for(tts, **choices):
    """A playground on ``tts`` with "Hi.", seed 5, ultra_fast and the given widget values set."""
    playground = Playground(tts, voice=VOICE, text="Hi.", preset="ultra_fast", seed=5, overrides=SHORT)
    for name, value in choices.items():
        getattr(playground, name).value = value
    return playground


@pytest.fixture(scope="module")
def first(tts):
    """One real press of Generate with the KV cache off and the DDIM sampler chosen."""
    playground = playground_for(tts, kv_cache=False, sampler="ddim")
    playground.button.click()
    return playground


def test_the_speech_follows_the_widgets(first):
    speech = first.last_speech
    assert speech is not None and first.last_error is None
    assert (speech.seed, speech.voice, speech.text) == (5, VOICE, "Hi.")
    assert speech.settings["preset"] == "ultra_fast" and speech.settings["sampler"] == "ddim"
    assert speech.settings["kv_cache"] is False and speech.settings["half"] is False
    assert speech.settings["num_autoregressive_samples"] == 2  # the override reached the pipeline
    assert speech.wav.shape[0] == 1 and speech.wav.shape[1] > 0


def test_a_result_fills_the_player_spectrogram_bar_and_status(first):
    speech = first.last_speech
    (output,) = first.audio.outputs
    assert output["output_type"] == "display_data" and "<audio" in output["data"]["text/html"]
    png = bytes(first.spectrogram.value)
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    assert first.progress.value == first.progress.max == len(STAGES) and first.progress.bar_style == "success"
    assert not first.button.disabled
    assert speech.model in first.status.value and "seed 5" in first.status.value
    assert "in " in first.status.value  # timings
    # The only thing to explain: the preset's 500 codes are more than the embedded model draws (it draws 300).
    assert speech.notes == [n for n in speech.notes if "max_mel_tokens is 300" in n] and len(speech.notes) == 1
    assert "max_mel_tokens is 300" in first.status.value


def test_same_choices_same_audio_and_cpu_only_options_say_why(tts, first):
    again = playground_for(tts, kv_cache=False, sampler="ddim", half=True, deepspeed=True)
    speech = again.generate()
    assert torch.equal(speech.wav, first.last_speech.wav)  # same seed; half and DeepSpeed are not used on CPU
    assert speech.settings["half"] is True and speech.settings["deepspeed"] is True
    assert "Half precision is not used on CPU" in again.status.value
    assert "DeepSpeed inference needs a CUDA GPU" in again.status.value


def test_settings_read_every_widget(tts):
    playground = playground_for(tts, kv_cache=False, half=True, deepspeed=True, compile=True, seed=11,
                                preset="fast", sampler="dpm++2m", text="Other words.")
    assert playground.settings() == dict(text="Other words.", voice=VOICE, seed=11, preset="fast",
                                         sampler="dpm++2m", kv_cache=False, half=True, deepspeed=True,
                                         compile=True, **SHORT)


def test_a_preset_brings_its_own_sampler(tts):
    playground = playground_for(tts)
    assert playground.sampler.value == "ddpm"
    playground.preset.value = "ultra_fast_int8_dpm"
    assert playground.sampler.value == "dpm++2m" == Settings.from_preset("ultra_fast_int8_dpm").sampler
    playground.sampler.value = "ddim"  # and the user may still change it
    assert playground.settings()["sampler"] == "ddim"


@pytest.mark.parametrize("build, change, message", [
    (dict(), dict(text="   "), "The text box is empty: type the words to speak"),
    (dict(voices=[VOICE, "nobody"]), dict(voice="nobody"), "Unknown voice 'nobody'. Available:"),
    (dict(overrides=dict(num_autoregressive_samples=0)), dict(), "num_autoregressive_samples must be at least 1."),
    (dict(), dict(seed=-1), "The seed must be a whole number, 0 or more"),
    (dict(), dict(text="Hello [there."), "bracket"),
])
def test_bad_input_says_what_to_do_in_one_sentence(tts, build, change, message):
    playground = Playground(tts, voice=VOICE, **{"text": "Hi.", "overrides": SHORT, **build})
    for name, value in change.items():
        getattr(playground, name).value = value
    playground.button.click()  # raises nothing
    assert playground.generate() is None and playground.last_speech is None
    assert message in playground.status.value and message in playground.last_error
    assert "Traceback" not in playground.status.value
    assert playground.progress.bar_style == "danger" and playground.progress.value < playground.progress.max
    assert not playground.button.disabled and playground.audio.outputs == () and playground.spectrogram.value == b""


# ------------------------------------------------------------------ a stand-in pipeline, for what happens meanwhile


class FakeTTS:
    """Records what the widgets showed while it was speaking; returns a short tone, or raises ``error``."""

    def __init__(self, playground_ref, kind="embedded", error=None):
        self.models = SimpleNamespace(kind=kind, has_random_voice=kind != "embedded")
        self.playground_ref, self.error, self.seen = playground_ref, error, []

    def tts(self, text, voice, seed, **settings):
        playground = self.playground_ref()
        self.seen.append((playground.button.disabled, playground.progress.value, playground.progress.description))
        if self.error is not None:
            raise self.error
        wav = 0.3 * torch.sin(torch.arange(SAMPLE_RATE // 2) * 440 * 2 * torch.pi / SAMPLE_RATE)[None]
        return Speech(wav=wav, sample_rate=SAMPLE_RATE, seed=seed, text=text, voice=voice.name,
                      settings=Settings.from_preset(**settings).to_dict(), candidates=[wav], codes=[], scores=[],
                      chunks=[text], timings={"autoregressive": 0.5, "total": 1.0}, model="a stand-in model")


def fake_playground(**fake):
    holder = {}
    tts = FakeTTS(lambda: holder["playground"], **fake)
    holder["playground"] = Playground(tts, voice=VOICE, text="Hi.")
    return holder["playground"], tts


def test_the_button_is_disabled_and_the_bar_at_speaking_meanwhile():
    playground, tts = fake_playground()
    speech = playground.generate()
    assert tts.seen == [(True, STAGES.index("speaking"), "speaking")]
    assert not playground.button.disabled and speech.model in playground.status.value


def test_a_failure_clears_the_previous_result():
    playground, _ = fake_playground()
    playground.generate()
    assert playground.audio.outputs and playground.spectrogram.value
    playground.text.value = ""
    assert playground.generate() is None
    assert playground.audio.outputs == () and playground.spectrogram.value == b"" and playground.last_speech is None


def test_an_unexpected_error_is_shown_and_raised():
    playground, _ = fake_playground(error=RuntimeError("out of memory"))
    with pytest.raises(RuntimeError, match="out of memory"):
        playground.generate()
    assert "Synthesis failed (RuntimeError: out of memory)." in playground.status.value
    assert playground.progress.bar_style == "danger" and not playground.button.disabled


def test_the_random_voice_is_offered_only_where_the_model_has_one():
    embedded, _ = fake_playground(kind="embedded")
    official, _ = fake_playground(kind="official")
    assert "random" not in embedded.voice.options and VOICE in embedded.voice.options
    assert official.voice.options[0] == "random"


@pytest.mark.parametrize("arguments, message", [
    (dict(overrides=dict(kv_cache=False)), "playground.kv_cache.value"),
    (dict(overrides=dict(speed=2)), "Unknown setting 'speed'"),
    (dict(preset="turbo"), "Unknown preset 'turbo'. Available: ultra_fast"),
    (dict(voices=["a", "b"], voice="c"), "not among the choices. Available: a, b"),
    (dict(voices=[]), "no voices"),
])
def test_bad_construction_names_the_allowed_values(arguments, message):
    with pytest.raises(ValueError, match=message):
        Playground(FakeTTS(lambda: None), **arguments)


def test_a_notebook_shows_it_as_one_widget():
    playground, _ = fake_playground()
    bundle = playground._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == playground.widget.model_id


def test_without_ipywidgets_it_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    with pytest.raises(ImportError, match=r"tortoise-lab\[notebooks\]"):
        Playground(FakeTTS(lambda: None))
