"""The playground widget, driven without a browser: widget values in, Speech and what the widgets show out."""

import sys
import threading
from html import escape
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from tortoise_lab.model_set import embedded_models, random_models
from tortoise_lab.config import Settings
from tortoise_lab.fast import deepspeed_off_cuda_note
from tortoise_lab.pipeline import SAMPLE_RATE, Speech, TextToSpeech
from tortoise_lab.widgets import NUMBER_SETTINGS, STOPPED, Playground

VOICE = "espeak_us_m3"  # a project voice the embedded model knows
BLEND = "espeak_us_m3:0.7&espeak_gb_f4:0.3"
SHORT = dict(num_autoregressive_samples=2)  # the embedded model speaks "Hi." in a few seconds with this
# (an override of a setting with a number box starts the box at that value)
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
    """One real press of Generate with the KV cache off and the DDIM sampler chosen (the press starts a thread)."""
    playground = playground_for(tts, kv_cache=False, sampler="ddim")
    playground.button.click()
    playground.join()
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
    assert first.progress.value == first.progress.max and first.progress.bar_style == "success"
    assert first.progress.description == "done"
    assert not first.button.disabled and first.stop_button.disabled and not first.stopped
    assert speech.model in first.status.value and "seed 5" in first.status.value
    assert "in " in first.status.value  # timings
    # The embedded model's presets are its own (300 codes at most, not the official 500): no clamping to explain.
    assert not any("max_mel_tokens" in note for note in speech.notes) and speech.settings["max_mel_tokens"] == 300


def test_same_choices_same_audio_and_cpu_only_options_say_why(tts, first):
    again = playground_for(tts, kv_cache=False, sampler="ddim", half=True, deepspeed=True)
    speech = again.generate()
    assert torch.equal(speech.wav, first.last_speech.wav)  # same seed; half and DeepSpeed are not used on CPU
    assert speech.settings["half"] is True and speech.settings["deepspeed"] is True
    assert "Half precision is not used on CPU" in again.status.value
    assert escape(deepspeed_off_cuda_note("cpu")) in again.status.value


def watch_bar(playground, stop_at=None):
    """Record (stage, value, max) at every change of the bar's value; press Stop when ``stop_at(stage, value)``."""
    seen = []

    def record(_change):
        bar = playground.progress
        seen.append((bar.description, bar.value, bar.max))
        if stop_at is not None and stop_at(bar.description, bar.value):
            playground.stop()
    playground.progress.observe(record, names="value")
    return seen


def test_the_bar_follows_every_step_to_the_total(tts):
    playground = playground_for(tts, candidates=2)
    seen = watch_bar(playground)
    speech = playground.generate()
    assert speech is not None and len(speech.candidates) == 2
    ar = [(value, total) for stage, value, total in seen if stage == "autoregressive"]
    assert ar[-1] == (speech.settings["max_mel_tokens"],) * 2  # one batch of max_mel_tokens steps, to the end
    assert [value for value, _ in ar] == sorted(value for value, _ in ar) and len(ar) > 5  # step by step, forwards
    # The embedded model's decoder, one step per candidate (", drawn again" when "Hi." came out too long at first).
    assert seen[-1][0] in ("decoding", "decoding, drawn again") and seen[-1][1:] == (2, 2)


@pytest.fixture(scope="module")
def tiny_diffusion():
    """The official chain on tiny random weights: an AR stage and a diffusion stage, in a second or two."""
    return TextToSpeech(random_models("tiny", seed=0), progress=False)


def tiny_playground(tiny_diffusion):
    playground = Playground(tiny_diffusion, voice="random", text="Hi.", seed=5,
                            overrides=dict(num_autoregressive_samples=3, max_mel_tokens=16, batch_size=2))
    playground.diffusion_iterations.value, playground.candidates.value = 4, 2
    return playground


def test_the_bar_counts_diffusion_steps_of_every_candidate(tiny_diffusion):
    playground = tiny_playground(tiny_diffusion)
    seen = watch_bar(playground)
    assert playground.generate() is not None
    assert ("autoregressive", 32, 32) in seen  # two batches (2 + 1 samples) of 16 steps
    # (a bar going from a stage's total back to 0 for the next shows 0 of the old total for a moment)
    diffusion = [(value, total) for stage, value, total in seen if stage == "diffusion" and value > 0]
    assert diffusion == [(step, 8) for step in range(1, 9)]  # 4 steps for each of the 2 candidates


@pytest.mark.parametrize("stage", ["autoregressive", "diffusion"])
def test_stop_during_a_real_run_ends_it_at_the_next_step(tiny_diffusion, stage):
    playground = tiny_playground(tiny_diffusion)
    seen = watch_bar(playground, stop_at=lambda shown, value: shown == stage and value == 2)
    assert playground.generate() is None and playground.stopped and playground.status.value == STOPPED
    assert seen[-1][:2] == ("", 0) and playground.progress.max == 1  # the bar reset
    assert [step for step in seen if step[0] == stage][-1][1] == 2  # no step after the Stop
    assert playground.last_speech is None and playground.audio.outputs == () and playground.history == []
    assert not playground.button.disabled


def test_the_number_boxes_and_the_blend_reach_the_speech(tts, first):
    playground = playground_for(tts, temperature=0.5, candidates=2, diffusion_iterations=12, blend=BLEND)
    speech = playground.generate()
    sidecar = speech.metadata()["settings"]
    assert (sidecar["temperature"], sidecar["candidates"], sidecar["diffusion_iterations"]) == (0.5, 2, 12)
    assert sidecar["num_autoregressive_samples"] == 2 and len(speech.candidates) == 2
    assert speech.voice == BLEND and escape(BLEND) in playground.status.value
    assert playground.history[0]["changed"] == dict(temperature=0.5, candidates=2, diffusion_iterations=12,
                                                    num_autoregressive_samples=2)
    assert not torch.equal(speech.wav, first.last_speech.wav)


def test_settings_read_every_widget(tts):
    playground = playground_for(tts, kv_cache=False, half=True, deepspeed=True, compile=True, seed=11,
                                preset="fast", sampler="dpm++2m", text="Other words.")
    playground.temperature.value, playground.candidates.value, playground.diffusion_iterations.value = 0.5, 2, 12
    playground.blend.value = BLEND
    assert playground.settings() == dict(text="Other words.", voice=VOICE, blend=BLEND, seed=11, preset="fast",
                                         sampler="dpm++2m", candidates=2, num_autoregressive_samples=96,
                                         temperature=0.5, diffusion_iterations=12, kv_cache=False, half=True,
                                         deepspeed=True, compile=True)


def test_a_preset_brings_its_own_sampler_and_numbers(tts):
    playground = playground_for(tts)
    assert playground.sampler.value == "ddpm"
    assert playground.num_autoregressive_samples.value == 2  # the override started the box
    playground.preset.value = "ultra_fast_int8_dpm"
    assert playground.sampler.value == "dpm++2m" == Settings.from_preset("ultra_fast_int8_dpm").sampler
    playground.sampler.value = "ddim"  # and the user may still change it
    assert playground.settings()["sampler"] == "ddim"
    playground.preset.value = "standard"
    standard = Settings.from_preset("standard")
    assert all(getattr(playground, name).value == getattr(standard, name) for name in NUMBER_SETTINGS)


@pytest.mark.parametrize("build, change, message", [
    (dict(), dict(text="   "), "The text box is empty: type the words to speak"),
    (dict(voices=[VOICE, "nobody"]), dict(voice="nobody"), "Unknown voice 'nobody'. Available:"),
    (dict(overrides=dict(num_autoregressive_samples=0)), dict(), "num_autoregressive_samples must be at least 1."),
    (dict(), dict(seed=-1), "The seed must be a whole number, 0 or more"),
    (dict(), dict(text="Hello [there."), "bracket"),
    (dict(), dict(blend="espeak_us_m3:0.7&"), "has an empty part; write blends as a&b or a:0.7&b:0.3."),
    (dict(), dict(blend="espeak_us_m3&nobody"), "Unknown voice 'nobody'. Available:"),
    (dict(), dict(temperature=0), "temperature must be greater than 0."),
    (dict(), dict(candidates=3), "candidates must be between 1 and num_autoregressive_samples."),
])
def test_bad_input_says_what_to_do_in_one_sentence(tts, build, change, message):
    playground = Playground(tts, voice=VOICE, **{"text": "Hi.", "overrides": SHORT, **build})
    for name, value in change.items():
        getattr(playground, name).value = value
    playground.button.click()  # raises nothing
    assert playground.join() is None and playground.last_error
    assert playground.generate() is None and playground.last_speech is None
    assert escape(message, quote=False) in playground.status.value and message in playground.last_error
    assert "Traceback" not in playground.status.value and "\n" not in playground.last_error
    assert playground.progress.bar_style == "danger" and playground.progress.value < playground.progress.max
    assert not playground.button.disabled and playground.audio.outputs == () and playground.spectrogram.value == b""
    assert playground.history == []


# ------------------------------------------------------------------ a stand-in pipeline, for what happens meanwhile


class FakeTTS:
    """Records what the widgets showed while it was speaking; reports ``steps`` AR steps to ``on_step`` (waiting for
    ``gate``, when given, after the first); returns a short tone, or raises ``error``."""

    def __init__(self, playground_ref, kind="embedded", error=None, steps=4, gate=None):
        self.models = SimpleNamespace(kind=kind, has_random_voice=kind != "embedded")
        self.playground_ref, self.error, self.steps, self.gate, self.seen = playground_ref, error, steps, gate, []

    def tts(self, text, voice, seed, on_step=None, **settings):
        playground = self.playground_ref()
        self.seen.append((playground.button.disabled, playground.stop_button.disabled,
                          threading.current_thread() is threading.main_thread()))
        if self.error is not None:
            raise self.error
        for step in range(1, self.steps + 1):
            on_step("autoregressive", step, self.steps)
            if self.gate is not None:
                assert self.gate.wait(timeout=30), "the test never opened the gate"
        wav = 0.3 * torch.sin(torch.arange(SAMPLE_RATE // 2) * 440 * 2 * torch.pi / SAMPLE_RATE)[None]
        return Speech(wav=wav, sample_rate=SAMPLE_RATE, seed=seed, text=text, voice=voice.name,
                      settings=Settings.from_preset(**settings).to_dict(), candidates=[wav], codes=[], scores=[],
                      chunks=[text], timings={"autoregressive": 0.5, "total": 1.0}, model="a stand-in model")


def fake_playground(**fake):
    holder = {}
    tts = FakeTTS(lambda: holder["playground"], **fake)
    holder["playground"] = Playground(tts, voice=VOICE, text="Hi.")
    return holder["playground"], tts


def test_start_returns_at_once_and_speaks_in_a_thread():
    gate = threading.Event()
    playground, tts = fake_playground(gate=gate)
    thread = playground.start()
    assert thread is not None and thread.is_alive() and playground.running  # waiting at the gate
    assert playground.button.disabled and not playground.stop_button.disabled
    assert playground.start() is None and playground.generate() is None  # a second press does nothing
    gate.set()
    speech = playground.join(timeout=30)
    assert not thread.is_alive() and speech is playground.last_speech and speech.model in playground.status.value
    assert tts.seen == [(True, False, False)]  # disabled Generate, enabled Stop, not the kernel's main thread
    assert not playground.button.disabled and playground.stop_button.disabled


def test_stop_ends_a_run_with_nothing_shown():
    playground, tts = fake_playground()
    playground.generate()  # a take to clear
    tts.gate = gate = threading.Event()
    playground.start()
    playground.stop_button.click()
    gate.set()
    assert playground.join(timeout=30) is None and playground.stopped and playground.last_error is None
    assert playground.status.value == STOPPED and playground.last_speech is None
    assert playground.progress.value == 0 and playground.progress.bar_style == "" and playground.progress.description == ""
    assert playground.audio.outputs == () and playground.spectrogram.value == b"" and len(playground.history) == 1
    assert not playground.button.disabled and playground.stop_button.disabled
    tts.gate = None
    assert playground.generate() is not None and not playground.stopped  # and it speaks again


def test_history_keeps_takes_newest_first_and_clears():
    playground, _ = fake_playground()
    playground.generate()
    playground.seed.value, playground.temperature.value, playground.blend.value = 9, 0.5, BLEND
    playground.generate()
    newest, oldest = playground.history
    assert (newest["seed"], newest["voice"], newest["changed"]) == (9, BLEND, {"temperature": 0.5})
    assert (oldest["seed"], oldest["voice"], oldest["changed"]) == (0, VOICE, {})
    assert newest["speech"] is playground.last_speech and newest["text"] == "Hi."
    shown = [output["data"]["text/html"] for output in playground.history_view.outputs]
    assert len(shown) == 2 and "seed 9" in shown[0] and "temperature 0.5" in shown[0] and "<audio" in shown[0]
    assert "seed 0" in shown[1] and "changed from the preset: none" in shown[1]
    playground.clear_button.click()
    assert playground.history == [] and playground.history_view.outputs == ()


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
