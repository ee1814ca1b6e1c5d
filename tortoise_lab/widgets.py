"""The playground: an ipywidgets face over ``TextToSpeech`` for notebooks.

    text, voice, preset, sampler, speed toggles, seed ─► [Generate] ─► Speech ─► player, spectrogram, status

The logic lives in plain methods, so tests (and notebooks) drive it without a browser: set the widgets'
``.value``, then call ``generate()`` (what the button runs) or ``button.click()``. Bad input (empty text, an
unknown voice, a setting out of range) shows its one sentence in the status line and a red bar; it never raises.

ipywidgets is an extra: ``pip install tortoise-lab[notebooks]``.
"""

from __future__ import annotations

import io
from html import escape

from tortoise_lab.config import PRESETS, SAMPLERS, Settings
from tortoise_lab.pipeline import Speech, TextToSpeech
from tortoise_lab.voices import RANDOM_VOICE, available_voices, load_voice

__all__ = ["Playground", "STAGES", "CONTROLLED_SETTINGS"]

# What one press of Generate does, in order; the progress bar's value is the number of stages finished.
STAGES = ("checking the choices", "loading the voice", "speaking", "drawing the spectrogram")
# Settings the playground's own widgets choose; the rest can be fixed with ``overrides``.
CONTROLLED_SETTINGS = ("preset", "sampler", "kv_cache", "half", "deepspeed", "compile")
DEFAULT_TEXT = "Hello from tortoise lab."
SPECTROGRAM_SIZE = (8.0, 2.5)  # inches; about the width of a notebook cell at the default dpi
ERROR_COLOUR = "#b00020"


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("The playground needs ipywidgets, which comes with the notebooks extra: "
                          "pip install 'tortoise-lab[notebooks]'.") from None
    return ipywidgets


class Playground:
    """Widgets to choose text, voice, preset and options, a Generate button, and the result's player,
    spectrogram and status line.

    >>> playground = Playground(choice.tts(progress=False), voice=choice.default_voice)  # doctest: +SKIP
    >>> playground                    # in a notebook cell: shows the widgets               # doctest: +SKIP
    >>> playground.seed.value = 3; speech = playground.generate()                            # doctest: +SKIP

    ``overrides`` fixes other ``Settings`` fields for every run (e.g. ``num_autoregressive_samples=2`` to keep a
    CI run short); the fields the widgets choose (``CONTROLLED_SETTINGS``) cannot be overridden.
    """

    def __init__(self, tts: TextToSpeech, voices: list[str] | None = None, voice: str | None = None,
                 text: str = DEFAULT_TEXT, preset: str = "ultra_fast", seed: int = 0, overrides: dict | None = None):
        widgets = _ipywidgets()
        self.tts = tts
        self.overrides = dict(overrides or {})
        self._check_overrides()
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
        self._busy = False

        wide = widgets.Layout(width="100%")
        initial = {"description_width": "initial"}
        self.text = widgets.Textarea(value=text, placeholder="Type the words to speak.", description="Text",
                                     rows=3, layout=wide)
        self.voice = widgets.Dropdown(options=voices, value=voice or voices[0], description="Voice")
        self.preset = widgets.Dropdown(options=list(PRESETS), value=preset, description="Preset")
        self.sampler = widgets.Dropdown(options=list(SAMPLERS), value=self._preset_sampler(preset),
                                        description="Sampler")
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
        self.progress = widgets.IntProgress(value=0, min=0, max=len(STAGES), description="", style=initial)
        self.status = widgets.HTML(value="Choose, then press Generate.")
        self.audio = widgets.Output()
        self.spectrogram = widgets.Image(format="png")

        self.preset.observe(self._follow_preset, names="value")
        self.button.on_click(lambda _button: self.generate())
        self._widget = widgets.VBox([
            self.text,
            widgets.HBox([self.voice, self.preset, self.sampler]),
            widgets.HBox([self.kv_cache, self.half, self.deepspeed, self.compile]),
            widgets.HBox([self.seed, self.button, self.progress]),
            self.status, self.audio, self.spectrogram,
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
        """The current choices: text, voice name, seed and the ``Settings`` fields (overrides included)."""
        return {"text": self.text.value, "voice": self.voice.value, "seed": self.seed.value,
                "preset": self.preset.value, "sampler": self.sampler.value, "kv_cache": self.kv_cache.value,
                "half": self.half.value, "deepspeed": self.deepspeed.value, "compile": self.compile.value,
                **self.overrides}

    def generate(self) -> Speech | None:
        """Speak the current choices (the Generate button calls this). Returns the ``Speech``, also kept as
        ``last_speech``; on bad input returns None and puts the sentence in the status line and ``last_error``."""
        if self._busy:  # a second press while speaking does nothing
            return None
        self._busy = True
        self.button.disabled = True
        self.last_speech, self.last_error = None, None
        self.audio.outputs = ()
        self.spectrogram.value = b""
        self.progress.bar_style = ""
        try:
            speech = self._speak()
        except ValueError as error:  # bad input: every boundary check raises ValueError with one sentence
            self._fail(str(error))
            return None
        except Exception as error:  # a bug, not bad input: say so here, and let the traceback reach the log
            self._fail(f"Synthesis failed ({type(error).__name__}: {error}).")
            raise
        finally:
            self._busy = False
            self.button.disabled = False
        self.last_speech = speech
        return speech

    def _speak(self) -> Speech:
        self._stage(0)
        choices = self.settings()
        text, voice, seed = choices.pop("text"), choices.pop("voice"), choices.pop("seed")
        if not text.strip():
            raise ValueError("The text box is empty: type the words to speak, then press Generate.")
        if seed is None or seed < 0:
            raise ValueError(f"The seed must be a whole number, 0 or more (got {seed}).")
        self._stage(1)
        loaded = load_voice(voice)
        self._stage(2)
        speech = self.tts.tts(text, voice=loaded, seed=seed, **choices)
        self._stage(3)
        self._show(speech)
        self._stage(len(STAGES))
        self.progress.bar_style = "success"
        self.status.value = _describe(speech)
        return speech

    def _show(self, speech: Speech) -> None:
        from tortoise_lab.workspace import audio_player

        player = audio_player(speech)
        self.audio.outputs = ({"output_type": "display_data", "metadata": {},
                               "data": {"text/plain": f"Audio: {speech.duration:.2f} s",
                                        "text/html": player._repr_html_()}},)
        self.spectrogram.value = _spectrogram_png(speech)

    def _stage(self, index: int) -> None:
        self.progress.value = index
        self.progress.description = STAGES[index] if index < len(STAGES) else "done"
        if index < len(STAGES):
            self.status.value = f"Working: {STAGES[index]}…"

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.progress.bar_style = "danger"
        self.progress.description = "stopped"
        self.status.value = f'<span style="color: {ERROR_COLOUR}">{escape(message, quote=False)}</span>'

    # -------------------------------------------------------------------------------------------- helpers

    def _follow_preset(self, change) -> None:
        """A preset brings its own sampler (ultra_fast_int8_dpm: DPM++(2M)); the dropdown shows it, to change."""
        self.sampler.value = self._preset_sampler(change["new"])

    @staticmethod
    def _preset_sampler(preset: str) -> str:
        return Settings.from_preset(preset).sampler

    def _default_voices(self) -> list[str]:
        names = list(available_voices())
        return [RANDOM_VOICE, *names] if self.tts.models.has_random_voice else names

    def _check_overrides(self) -> None:
        known = set(Settings.names()) - set(CONTROLLED_SETTINGS)
        for name in self.overrides:
            if name in CONTROLLED_SETTINGS:
                raise ValueError(f"{name} is chosen with the playground's own widget; set playground.{name}.value.")
            if name not in known:
                raise ValueError(f"Unknown setting {name!r} in overrides. Available: {', '.join(sorted(known))}.")


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
