"""The playground: an ipywidgets face over ``TextToSpeech`` for notebooks.

    text, voice or blend, preset, sampler, candidates, AR samples, temperature, diffusion steps, speed toggles, seed
      ─► [Generate] ─► a thread runs TextToSpeech.tts ─► Speech ─► player, spectrogram, status, history of takes
                 [Stop] ends it at the next AR or diffusion step

Synthesis runs in a ``threading.Thread`` so the kernel stays free: the bar follows every AR step and every
diffusion step (``TextToSpeech.tts``'s ``on_step``), and **Stop** makes the next step raise ``Stopped``, which
the playground catches: the status says "Stopped.", the bar resets and nothing half-made is shown.

The logic lives in plain methods, so tests (and notebooks) drive it without a browser: set the widgets'
``.value``, then call ``start()`` (what the button runs) and ``join()``, or ``generate()``, which does both and
returns the ``Speech``. Bad input (empty text, an unknown voice or a bad blend, a setting out of range) shows its
one sentence in the status line and a red bar; it never raises.

ipywidgets is an extra: ``pip install tortoise-lab[notebooks]``.
"""

from __future__ import annotations

import io
import logging
import threading
from html import escape

from tortoise_lab.config import PRESETS, SAMPLERS, Settings
from tortoise_lab.pipeline import Speech, TextToSpeech
from tortoise_lab.voices import RANDOM_VOICE, available_voices, load_voice

__all__ = ["Playground", "Stopped", "CONTROLLED_SETTINGS", "NUMBER_SETTINGS"]

# Settings with a number box of their own; they show the preset's values when a preset is chosen.
NUMBER_SETTINGS = ("candidates", "num_autoregressive_samples", "temperature", "diffusion_iterations")
# Settings the playground's own widgets choose; the rest can be fixed with ``overrides``.
CONTROLLED_SETTINGS = ("preset", "sampler", *NUMBER_SETTINGS, "kv_cache", "half", "deepspeed", "compile")
DEFAULT_TEXT = "Hello from tortoise lab."
BLEND_EXAMPLE = "espeak_us_m3:0.7&espeak_gb_f4:0.3"
SPECTROGRAM_SIZE = (8.0, 2.5)  # inches; about the width of a notebook cell at the default dpi
ERROR_COLOUR = "#b00020"
BAR_UPDATES = 100  # per stage at most: each widget update is a message to the browser, and a stage has hundreds of steps
STOPPED = "Stopped."
_LOG = logging.getLogger(__name__)


class Stopped(Exception):
    """Raised inside synthesis (from the step callback) when Stop was pressed; the playground catches it."""


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("The playground needs ipywidgets, which comes with the notebooks extra: "
                          "pip install 'tortoise-lab[notebooks]'.") from None
    return ipywidgets


class Playground:
    """Widgets to choose text, voice (or a blend), preset, sampler, numbers and options; Generate and Stop; a
    per-step progress bar; the result's player, spectrogram and status line; and the history of takes.

    >>> playground = Playground(choice.tts(progress=False), voice=choice.default_voice)  # doctest: +SKIP
    >>> playground                    # in a notebook cell: shows the widgets               # doctest: +SKIP
    >>> playground.seed.value = 3; speech = playground.generate()                            # doctest: +SKIP

    ``overrides`` fixes other ``Settings`` fields for every run (e.g. ``batch_size=1``); a field with a number
    box (``NUMBER_SETTINGS``, e.g. ``num_autoregressive_samples=2`` to keep a CI run short) starts the box at that
    value instead. The other fields the widgets choose (``CONTROLLED_SETTINGS``) cannot be overridden.
    """

    def __init__(self, tts: TextToSpeech, voices: list[str] | None = None, voice: str | None = None,
                 text: str = DEFAULT_TEXT, preset: str = "ultra_fast", seed: int = 0, overrides: dict | None = None):
        widgets = _ipywidgets()
        self.tts = tts
        self.overrides = dict(overrides or {})
        self._check_overrides()
        starting = {name: self.overrides.pop(name) for name in NUMBER_SETTINGS if name in self.overrides}
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}. Available: {', '.join(PRESETS)}.")
        voices = list(voices) if voices is not None else self._default_voices()
        if not voices:
            raise ValueError("There are no voices to choose from: run `tortoise-lab assets` for the built-in ones "
                             "or add a voice folder (see voices/README.md).")
        if voice is not None and voice not in voices:
            raise ValueError(f"The voice {voice!r} is not among the choices. Available: {', '.join(voices)}.")
        self.last_speech: Speech | None = None
        self.last_error: str | None = None
        self.stopped = False  # the last run was ended with Stop
        self.history: list[dict] = []  # finished takes, newest first: text, voice, seed, preset, changed, speech
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._crash: Exception | None = None  # an unexpected error in the thread, for join() to raise
        self._shown = ("", 0)  # the stage and step the bar shows

        wide = widgets.Layout(width="100%")
        initial = {"description_width": "initial"}
        self.text = widgets.Textarea(value=text, placeholder="Type the words to speak.", description="Text",
                                     rows=3, layout=wide)
        self.voice = widgets.Dropdown(options=voices, value=voice or voices[0], description="Voice")
        self.blend = widgets.Text(value="", placeholder=BLEND_EXAMPLE, description="Blend", style=initial,
                                  tooltip="voice:weight&voice:weight; when filled in, used instead of Voice.")
        self.preset = widgets.Dropdown(options=list(PRESETS), value=preset, description="Preset")
        self.sampler = widgets.Dropdown(options=list(SAMPLERS), value=self._preset_sampler(preset),
                                        description="Sampler")
        self.candidates = widgets.IntText(description="Candidates", style=initial)
        self.num_autoregressive_samples = widgets.IntText(description="AR samples", style=initial)
        self.temperature = widgets.FloatText(description="Temperature", step=0.05, style=initial)
        self.diffusion_iterations = widgets.IntText(description="Diffusion steps", style=initial)
        self._show_preset_numbers(preset)
        for name, value in starting.items():
            getattr(self, name).value = value
        self.kv_cache = widgets.ToggleButton(value=True, description="KV cache",
                                             tooltip="Reuse attention keys and values: same audio, much faster.")
        self.half = widgets.ToggleButton(value=False, description="half",
                                         tooltip="float16 on CUDA (changes the audio a little); not used on CPU.")
        self.deepspeed = widgets.ToggleButton(value=False, description="DeepSpeed",
                                              tooltip="DeepSpeed inference layers for the decoder; needs CUDA.")
        self.compile = widgets.ToggleButton(value=False, description="compile",
                                            tooltip="torch.compile the decode step; the first run compiles (slow).")
        self.seed = widgets.IntText(value=seed, description="Seed")
        self.button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True,
                                          tooltip="End the run at its next step.")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="", style=initial)
        self.status = widgets.HTML(value="Choose, then press Generate.")
        self.audio = widgets.Output()
        self.spectrogram = widgets.Image(format="png")
        self.history_view = widgets.Output()
        self.clear_button = widgets.Button(description="Clear history", icon="trash")

        self.preset.observe(self._follow_preset, names="value")
        self.button.on_click(lambda _button: self.start())
        self.stop_button.on_click(lambda _button: self.stop())
        self.clear_button.on_click(lambda _button: self.clear_history())
        self._widget = widgets.VBox([
            self.text,
            widgets.HBox([self.voice, self.blend]),
            widgets.HBox([self.preset, self.sampler]),
            widgets.HBox([self.candidates, self.num_autoregressive_samples, self.temperature,
                          self.diffusion_iterations]),
            widgets.HBox([self.kv_cache, self.half, self.deepspeed, self.compile]),
            widgets.HBox([self.seed, self.button, self.stop_button, self.progress]),
            self.status, self.audio, self.spectrogram,
            widgets.HBox([widgets.HTML("<b>History</b> (newest first)"), self.clear_button]), self.history_view,
        ])

    # ------------------------------------------------------------------------------------- what it shows

    @property
    def widget(self):
        """The whole playground as one ipywidgets ``VBox``."""
        return self._widget

    def _repr_mimebundle_(self, **kwargs):  # a notebook cell ending in the playground shows its widgets
        return self._widget._repr_mimebundle_(**kwargs)

    # --------------------------------------------------------------------------------------- the logic

    def settings(self) -> dict:
        """The current choices: text, voice name, blend, seed and the ``Settings`` fields (overrides included)."""
        return {"text": self.text.value, "voice": self.voice.value, "blend": self.blend.value,
                "seed": self.seed.value, "preset": self.preset.value, "sampler": self.sampler.value,
                **{name: getattr(self, name).value for name in NUMBER_SETTINGS},
                "kv_cache": self.kv_cache.value, "half": self.half.value, "deepspeed": self.deepspeed.value,
                "compile": self.compile.value, **self.overrides}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> threading.Thread | None:
        """Begin speaking the current choices in a background thread and return it at once (the Generate button
        calls this); None if a run is going already. ``join()`` waits for the result."""
        if self.running:  # a second press while speaking does nothing
            return None
        self._cancel.clear()
        self._crash = None
        self.button.disabled, self.stop_button.disabled = True, False
        self.last_speech, self.last_error, self.stopped = None, None, False
        self.audio.outputs = ()
        self.spectrogram.value = b""
        self._bar("", 0, 1)
        choices = self.settings()  # read now: a widget changed during the run changes the next one
        self._thread = threading.Thread(target=self._run, args=(choices,), name="playground", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> Speech | None:
        """Wait for the run ``start()`` began; returns its ``Speech`` (also kept as ``last_speech``), or None when
        it was stopped (``stopped``), had bad input (``last_error``) or is still going after ``timeout`` seconds.
        An unexpected error in the run is raised here (once)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        crash, self._crash = self._crash, None
        if crash is not None:
            raise crash
        return self.last_speech

    def generate(self) -> Speech | None:
        """Speak the current choices and wait: ``start()`` then ``join()``. Returns the ``Speech``; on bad input
        returns None and puts the sentence in the status line and ``last_error``."""
        if self.running:
            return None
        self.start()
        return self.join()

    def stop(self) -> None:
        """End the run at its next AR or diffusion step (the Stop button calls this); nothing if none is going."""
        if self.running:
            self._cancel.set()
            self.status.value = "Stopping…"

    def clear_history(self) -> None:
        """Forget the takes (the Clear history button calls this)."""
        self.history.clear()
        self.history_view.outputs = ()

    def _run(self, choices: dict) -> None:
        try:
            self.last_speech = self._speak(choices)
        except Stopped:
            self.stopped = True
            self._bar("", 0, 1)
            self.status.value = STOPPED
        except ValueError as error:  # bad input: every boundary check raises ValueError with one sentence
            self._fail(str(error))
        except Exception as error:  # a bug, not bad input: say so here; join() raises it, the log has its traceback
            self._fail(f"Synthesis failed ({type(error).__name__}: {error}).")
            _LOG.error("The playground's synthesis failed.", exc_info=error)
            self._crash = error
        finally:
            self.button.disabled, self.stop_button.disabled = False, True

    def _speak(self, choices: dict) -> Speech:
        self.status.value = "Working: checking the choices…"
        choices = dict(choices)
        text, voice, blend, seed = (choices.pop(name) for name in ("text", "voice", "blend", "seed"))
        if not text.strip():
            raise ValueError("The text box is empty: type the words to speak, then press Generate.")
        if seed is None or seed < 0:
            raise ValueError(f"The seed must be a whole number, 0 or more (got {seed}).")
        changed = _changed_from_preset(choices)  # also checks every setting before the voice is loaded
        self.status.value = "Working: loading the voice…"
        loaded = load_voice(blend.strip() or voice)
        self._step("conditioning", 0, 1)
        speech = self.tts.tts(text, voice=loaded, seed=seed, on_step=self._step, **choices)
        if self._cancel.is_set():  # Stop came after the last step: still nothing half-shown
            raise Stopped()
        self._show(speech)
        self._bar("done", self.progress.max, self.progress.max)
        self.progress.bar_style = "success"
        self.status.value = _describe(speech)
        self._remember(speech, changed)
        return speech

    def _step(self, stage: str, done: int, total: int) -> None:
        """The pipeline's ``on_step``: stop if asked to, else move the bar (at most BAR_UPDATES times a stage)."""
        if self._cancel.is_set():
            raise Stopped()
        shown_stage, shown_done = self._shown
        if stage != shown_stage or done >= total or (done - shown_done) * BAR_UPDATES >= total:
            self._bar(stage, done, total)
            self.status.value = f"Working: {escape(stage, quote=False)}, step {done} of {total}…"

    def _bar(self, stage: str, done: int, total: int) -> None:
        self._shown = (stage, done)
        with self.progress.hold_sync():  # stage first, and no value above the new max meanwhile
            self.progress.bar_style, self.progress.description = "", stage
            if self.progress.value > done:
                self.progress.value = 0
            self.progress.max = max(total, 1)
            self.progress.value = done

    def _show(self, speech: Speech) -> None:
        self.audio.outputs = (_player_output(speech),)
        self.spectrogram.value = _spectrogram_png(speech)

    def _remember(self, speech: Speech, changed: dict) -> None:
        self.history.insert(0, {"text": speech.text, "voice": speech.voice, "seed": speech.seed,
                                "preset": speech.settings["preset"], "changed": changed, "speech": speech})
        self.history_view.outputs = tuple(_take_output(take) for take in self.history)

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.progress.bar_style = "danger"
        self.progress.description = "stopped"
        self.status.value = f'<span style="color: {ERROR_COLOUR}">{escape(message, quote=False)}</span>'

    # -------------------------------------------------------------------------------------------- helpers

    def _follow_preset(self, change) -> None:
        """A preset brings its own sampler (ultra_fast_int8_dpm: DPM++(2M)) and numbers; the widgets show them."""
        self.sampler.value = self._preset_sampler(change["new"])
        self._show_preset_numbers(change["new"])

    def _show_preset_numbers(self, preset: str) -> None:
        settings = Settings.from_preset(preset)
        for name in NUMBER_SETTINGS:
            getattr(self, name).value = getattr(settings, name)

    @staticmethod
    def _preset_sampler(preset: str) -> str:
        return Settings.from_preset(preset).sampler

    def _default_voices(self) -> list[str]:
        names = list(available_voices())
        return [RANDOM_VOICE, *names] if self.tts.models.has_random_voice else names

    def _check_overrides(self) -> None:
        known = set(Settings.names()) - set(CONTROLLED_SETTINGS)
        for name in self.overrides:
            if name in NUMBER_SETTINGS:
                continue  # starts its box at this value
            if name in CONTROLLED_SETTINGS:
                raise ValueError(f"{name} is chosen with the playground's own widget; set playground.{name}.value.")
            if name not in known:
                raise ValueError(f"Unknown setting {name!r} in overrides. Available: {', '.join(sorted(known))}.")


def _changed_from_preset(choices: dict) -> dict:
    """The settings in ``choices`` (preset and Settings fields) that differ from the preset's own."""
    chosen = Settings.from_preset(**choices).to_dict()
    preset = Settings.from_preset(choices["preset"]).to_dict()
    return {name: value for name, value in chosen.items() if value != preset[name]}


def _player_output(speech: Speech) -> dict:
    from tortoise_lab.workspace import audio_player

    return {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": f"Audio: {speech.duration:.2f} s", "text/html": audio_player(speech)._repr_html_()}}


def _take_output(take: dict) -> dict:
    """One history entry: what was said, in which voice, with which seed and changes, and its player."""
    changes = ", ".join(f"{name} {value}" for name, value in take["changed"].items()) or "none"
    facts = (f"<b>{escape(take['text'], quote=False)}</b><br>voice {escape(take['voice'], quote=False)} · "
             f"seed {take['seed']} · preset {take['preset']} · changed from the preset: {escape(changes, quote=False)}")
    player = _player_output(take["speech"])
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": f"{take['text']} ({take['voice']}, seed {take['seed']})",
                     "text/html": f"<div>{facts}<br>{player['data']['text/html']}</div>"}}


def _describe(speech: Speech) -> str:
    """The status line for a result: the model, what was asked, how long it took, and any notes."""
    settings = speech.settings
    stages = ", ".join(f"{name.replace('_', ' ')} {seconds:.2f} s"
                       for name, seconds in speech.timings.items() if name != "total")
    lines = [f"<b>Model:</b> {escape(speech.model, quote=False)}",
             f"voice {escape(speech.voice, quote=False)} · preset {settings['preset']} · seed {speech.seed} · "
             f"{speech.duration:.2f} s of audio in {speech.timings['total']:.2f} s ({stages})"]
    lines += [f"<i>Note:</i> {escape(note, quote=False)}" for note in speech.notes]
    return "<br>".join(lines)


def _spectrogram_png(speech: Speech) -> bytes:
    """The result's log-mel spectrogram as PNG bytes, drawn off pyplot so no notebook backend shows it twice."""
    from matplotlib.figure import Figure

    from tortoise_lab.tools.compare import plot_spectrogram

    figure = Figure(figsize=SPECTROGRAM_SIZE, layout="constrained")
    plot_spectrogram(speech.wav, speech.sample_rate, title=f"{speech.voice}, seed {speech.seed}: log mel",
                     axis=figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
