"""What the streaming notebook calls: a fast-path model set, a player that plays a stream while it is made, the
pieces' timeline as a plot, and the fast path beside the diffusion path.

``play_stream`` plays in JupyterLab's page: each piece goes to the browser as it is made (a small JavaScript output,
the samples base64-encoded) and is queued on one Web Audio clock right after the previous piece, so playback has
no gaps as long as pieces come faster than real time. When the stream ends, the queue's output is replaced by an
ordinary player of the whole take (what a saved notebook keeps). Outside a browser (nbval, a terminal) the outputs
are just recorded.
"""

from __future__ import annotations

import base64
import uuid

import torch

from tortoise_lab.model_set import missing_weights, resolve_models
from tortoise_lab.pipeline import Speech, SpeechStream
from tortoise_lab.workspace import NotebookModels, audio_player

__all__ = ["FAST_PATH_WEIGHTS", "choose_fast_models", "play_stream", "STREAMS_REGISTRY", "plot_stream_timeline",
           "TIMELINE_HEADERS", "timeline_rows", "PATH_HEADERS", "path_rows"]

FAST_PATH_WEIGHTS = ("autoregressive.pth", "hifidecoder.pth")  # all the fast path loads for a voice with clips
STREAMS_REGISTRY = "tortoiseLabStreams"  # window[...] in the page: {player id: its queue's state}
START_DELAY_S = 0.05  # the first piece starts this long after it reaches the page (time to decode it)

# One piece into the player's queue: decode the little-endian float32 samples, schedule them after the last piece.
_PUSH_PIECE = """
(() => {
  const streams = window.%(registry)s = window.%(registry)s || {};
  const Context = window.AudioContext || window.webkitAudioContext;
  const state = streams["%(id)s"] = streams["%(id)s"] || {context: new Context({sampleRate: %(rate)d}), next: 0,
                                                          pieces: 0, samples: 0};
  const bytes = Uint8Array.from(atob("%(samples)s"), c => c.charCodeAt(0));
  const samples = new Float32Array(bytes.buffer);
  const buffer = state.context.createBuffer(1, samples.length, %(rate)d);
  buffer.copyToChannel(samples, 0);
  const source = state.context.createBufferSource();
  source.buffer = buffer;
  source.connect(state.context.destination);
  const start = Math.max(state.context.currentTime + %(delay)s, state.next);
  source.start(start);
  state.next = start + buffer.duration;
  state.pieces += 1;
  state.samples += samples.length;
})();
"""


def choose_fast_models(test_mode: bool = False, models_dir: str | None = None, device: str | None = None,
                       size: str = "tortoise-v2"):
    """A model set with a HiFiGAN decoder, for the fast path and its stream: outside test mode the official weights
    when all are present (``hifidecoder.pth`` included); otherwise (and in test mode) random tiny weights, whose
    audio is noise but whose every stage runs (the embedded model has no HiFiGAN). A ``workspace.NotebookModels``."""
    official = not test_mode and not missing_weights(models_dir) and not missing_weights(models_dir,
                                                                                         FAST_PATH_WEIGHTS)
    chosen = resolve_models("official" if official else "tiny", models_dir, device, size=size)
    return NotebookModels(chosen.name, chosen.models, chosen.message)


def _piece_script(player: str, piece: torch.Tensor, sample_rate: int) -> str:
    samples = piece.detach().reshape(-1).to("cpu", torch.float32).numpy().astype("<f4").tobytes()
    return _PUSH_PIECE % {"registry": STREAMS_REGISTRY, "id": player, "rate": sample_rate, "delay": START_DELAY_S,
                          "samples": base64.b64encode(samples).decode("ascii")}


def play_stream(stream: SpeechStream, sample_rate: int = 24_000, show=None) -> Speech:
    """Play ``TextToSpeech.stream``'s pieces in the notebook's page as they are made, with a line that counts them;
    returns the stream's ``Speech``. The player's id is the key of its queue in ``window.tortoiseLabStreams``."""
    from IPython.display import HTML, Javascript, display

    show = show or display
    player = f"stream-{uuid.uuid4().hex[:12]}"
    status = show(HTML(f"<i>{player}: waiting for the first piece...</i>"), display_id=f"{player}-status")
    queue = show(Javascript(""), display_id=player)
    made = 0
    for count, piece in enumerate(stream, start=1):
        queue.update(Javascript(_piece_script(player, piece, sample_rate)))
        made += piece.shape[-1]
        first = stream.timeline[0].ready_s
        status.update(HTML(f"<i>{player}: {count} pieces, {made / sample_rate:.2f} s of audio; the first came after "
                           f"{first:.2f} s</i>"))
    speech = stream.result
    queue.update(audio_player(speech))
    return speech


TIMELINE_HEADERS = ("piece", "chunk", "ready at s", "audio s", "codes drawn", "HiFiGAN s", "frames decoded")


def timeline_rows(stream: SpeechStream) -> list[tuple]:
    """The stream's pieces as table rows (``TIMELINE_HEADERS``)."""
    return [(i + 1, piece.chunk + 1, f"{piece.ready_s:.2f}", f"{piece.samples / 24_000:.2f}", piece.codes,
             f"{piece.decode_s:.3f}", piece.frames) for i, piece in enumerate(stream.timeline)]


def plot_stream_timeline(stream: SpeechStream, sample_rate: int = 24_000):
    """When each piece was ready (a bar from the time it was handed out, as long as its audio) against when a player
    fed the pieces back to back would play it; a piece ready after its turn would be a gap. Returns the figure."""
    import matplotlib.pyplot as plt

    figure, (timeline, work) = plt.subplots(1, 2, figsize=(11, 3.4), constrained_layout=True,
                                            gridspec_kw={"width_ratios": [2, 1]})
    plays_at = stream.timeline[0].ready_s if stream.timeline else 0.0
    for i, piece in enumerate(stream.timeline):
        seconds = piece.samples / sample_rate
        plays_at = max(plays_at, piece.ready_s)
        timeline.barh(i, seconds, left=plays_at, color="tab:blue", label="plays" if i == 0 else None)
        timeline.plot([piece.ready_s], [i], marker="|", markersize=14, color="tab:red",
                      label="ready" if i == 0 else None)
        plays_at += seconds
    timeline.invert_yaxis()
    timeline.set(xlabel="seconds since the call", ylabel="piece", title="when each piece is ready and plays")
    timeline.legend(fontsize=8, loc="lower right")
    work.plot([i + 1 for i in range(len(stream.timeline))], [p.decode_s for p in stream.timeline], marker="o")
    work.set(xlabel="piece", ylabel="HiFiGAN seconds", title="decoding work per piece", ylim=(0, None))
    return figure


PATH_HEADERS = ("path", "took s", "first audio s", "audio s", "real-time factor", "stages")


def path_rows(takes: dict[str, Speech]) -> list[tuple]:
    """Runs of each path (label -> Speech) as table rows (``PATH_HEADERS``): total and first-audio time (a whole
    take's first audio is its end), real-time factor and the seconds per stage."""
    rows = []
    for label, speech in takes.items():
        total = speech.timings["total"]
        stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in speech.timings.items()
                           if name not in ("total", "first_audio") and seconds >= 0.005)
        rows.append((label, f"{total:.2f}", f"{speech.timings.get('first_audio', total):.2f}",
                     f"{speech.duration:.2f}", f"{total / max(speech.duration, 1e-9):.2f}", stages))
    return rows
