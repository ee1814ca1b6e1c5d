#!/usr/bin/env python3
"""Make the raw example recordings in this folder: one synthetic speaker, recorded badly on purpose.

Every file is espeak-ng speech (one fixed voice, ``en-us`` at 150 words a minute) passed through sox to
simulate one fault of home recordings: hiss at a known SNR, mains hum, room reverb on a stereo 48 kHz
recorder, an over-long take, clipping, a muted microphone, a take that is too short, and a text file that was
given a ``.wav`` name. ``tortoise_lab.voices.prep.prepare_voice`` turns them into a clean voice
(``tests/test_voice_prep.py`` and the voice-cloning notebook use them); README.md says what each file is.

Needs only the standard library, ``espeak-ng`` and ``sox`` (``apt-get install espeak-ng sox``):

    python input-audio-samples/make_samples.py            # rewrites the files beside this script
    python input-audio-samples/make_samples.py --out DIR  # or somewhere else

The output is byte-for-byte repeatable with the same espeak-ng and sox versions: sox runs with ``-R`` (fixed
seeds for its noise generators and Ogg serial numbers) and ``-D`` (no dither), and every level is set by a
measured gain, not by chance.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

ESPEAK_VOICE = "en-us"
ESPEAK_WORDS_PER_MINUTE = 150
RECORDING_PEAK_DB = -8.0  # the level the speaker was "recorded" at before the fault is added
ROOM_TONE_S = (0.6, 0.8)  # noise-only lead-in and tail, as a real take has before and after the words

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A gentle breeze carried the smell of fresh bread across the busy market square.",
    "Every morning the old lighthouse keeper climbed the stairs to polish the great lamp.",
    "We measured the noise floor before and after cleaning, and wrote both numbers down.",
    "Small changes to the microphone can make a large difference to how a voice sounds.",
]
SHORT_REPLY = "Yes."
LONG_TAKE_PAUSES_S = [0.9, 1.2, 0.7]  # silences between the sentences of the over-long take

NOT_AUDIO_TEXT = """Notes from the recording session, saved under the wrong name.
Take 3 was the best one; the lavalier was clipped to the collar.
This is plain text, not audio: voice preparation must drop it as unreadable.
"""


def run(*command: str) -> str:
    """Run a command, fail loudly, return its stderr (where sox prints ``stats``)."""
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return done.stderr


def sox(*args: str | Path) -> str:
    # -R: repeatable (fixed seeds); -D: no dither, so 16-bit output does not depend on a random sequence.
    return run("sox", "-R", "-D", *map(str, args))


def levels_db(path: Path) -> tuple[float, float]:
    """(RMS, peak) of a file in dBFS, all channels together, as sox ``stats`` measures them."""
    report = sox(path, "-n", "stats")

    def first_number(label: str) -> float:
        match = re.search(rf"^{re.escape(label)}\s+(-?[\d.]+|-inf)", report, re.MULTILINE)
        assert match, f"sox stats printed no {label!r} for {path}:\n{report}"
        return float(match.group(1))

    return first_number("RMS lev dB"), first_number("Pk lev dB")


def speak(text: str, out: Path) -> Path:
    """espeak-ng speech (22.05 kHz mono 16-bit), peak set to RECORDING_PEAK_DB."""
    raw = out.with_suffix(".espeak.wav")
    run("espeak-ng", "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WORDS_PER_MINUTE), "-w", str(raw), text)
    sox(raw, out, "gain", "-n", str(RECORDING_PEAK_DB))
    return out


def noise(kind: str, seconds: float, rms_db: float, rate: int, out: Path) -> Path:
    """``whitenoise`` or ``pinknoise`` (or a hum: see ``hum``) scaled to an exact RMS level in dBFS."""
    raw = out.with_suffix(".raw.wav")
    sox("-n", "-r", str(rate), "-c", "1", "-b", "32", raw, "synth", f"{seconds:.3f}", kind)
    sox(raw, "-b", "32", out, "gain", f"{rms_db - levels_db(raw)[0]:.3f}")
    return out


def hum(mains_hz: int, seconds: float, rms_db: float, rate: int, out: Path) -> Path:
    """Mains hum: the fundamental and its 3rd and 5th harmonics (what a ground loop adds), at an exact RMS."""
    raw = out.with_suffix(".raw.wav")
    sox("-n", "-r", str(rate), "-c", "1", "-b", "32", raw, "synth", f"{seconds:.3f}",
        "sine", str(mains_hz), "sine", "mix", str(3 * mains_hz), "sine", "mix", str(5 * mains_hz))
    sox(raw, "-b", "32", out, "gain", f"{rms_db - levels_db(raw)[0]:.3f}")
    return out


def with_room_tone(speech: Path, rate: int, out: Path) -> Path:
    """Speech resampled to ``rate`` (32-bit working copy), with silent lead-in and tail for the noise to fill."""
    sox(speech, "-b", "32", out, "rate", "-v", str(rate), "pad", str(ROOM_TONE_S[0]), str(ROOM_TONE_S[1]))
    return out


def mix(speech: Path, disturbance: Path, out: Path, *tail: str) -> None:
    """Add the two signals sample by sample (``-v 1``: no automatic halving), then the output ``tail`` args."""
    sox("-m", "-v", "1", speech, "-v", "1", disturbance, *tail)


def with_noise(speech: Path, kind: str, snr_db: float, rate: int, work: Path, out: Path, *encoding: str) -> None:
    """Speech plus noise whose RMS is ``snr_db`` below the speech's RMS (the utterance itself, not the pads)."""
    padded = with_room_tone(speech, rate, work / f"{out.stem}.padded.wav")
    seconds = samples_s(padded)
    disturbance = noise(kind, seconds, levels_db(speech)[0] - snr_db, rate, work / f"{out.stem}.noise.wav")
    mix(padded, disturbance, out, *encoding, out)


def samples_s(path: Path) -> float:
    done = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True)
    return float(done.stdout)


def make_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        speech = [speak(text, work / f"sentence{i}.wav") for i, text in enumerate(SENTENCES)]
        pcm16 = ("-b", "16")

        # Hiss: white noise 20 dB below the speech, at a lavalier recorder's 44.1 kHz.
        target = out_dir / "hiss-white-20db.wav"
        with_noise(speech[0], "whitenoise", 20.0, 44_100, work, target, *pcm16)
        made.append(target)

        # Hiss: pink noise (more energy low down, like room air and preamp noise) 25 dB below, as FLAC.
        target = out_dir / "hiss-pink-25db.flac"
        with_noise(speech[1], "pinknoise", 25.0, 44_100, work, target, *pcm16)
        made.append(target)

        # Mains hum, 50 Hz (Europe) as Ogg Vorbis and 60 Hz (Americas) as 16 kHz WAV; 20 dB below the speech.
        for mains_hz, rate, sentence, target in ((50, 44_100, speech[2], out_dir / "hum-50hz.ogg"),
                                                 (60, 16_000, speech[3], out_dir / "hum-60hz-16k.wav")):
            padded = with_room_tone(sentence, rate, work / f"{target.stem}.padded.wav")
            buzz = hum(mains_hz, samples_s(padded), levels_db(sentence)[0] - 20.0, rate,
                       work / f"{target.stem}.hum.wav")
            encoding = ("-C", "3") if target.suffix == ".ogg" else pcm16
            mix(padded, buzz, target, *encoding, target)
            made.append(target)

        # A stereo 48 kHz recorder in a bare room: reverb, the two channels differ (level and reflections).
        target = out_dir / "reverb-stereo-48k.flac"
        sox(speech[4], *pcm16, target, "rate", "-v", "48000", "pad", "0.3", "0.3", "channels", "2",
            "reverb", "60", "40", "80", "100", "12", "remix", "1v1.0", "2v0.8")
        made.append(target)

        # An over-long take (~25 s): four sentences with pauses between them, light white hiss (30 dB SNR).
        joined = work / "long.speech.wav"
        parts: list[str] = []
        for i, (sentence, pause_s) in enumerate(zip(speech[1:5], LONG_TAKE_PAUSES_S + [0.0])):
            part = work / f"long.part{i}.wav"
            sox(sentence, part, "pad", "0", str(pause_s))
            parts.append(str(part))
        sox(*parts, joined)
        target = out_dir / "long-take-25s.flac"
        with_noise(joined, "whitenoise", 30.0, 22_050, work, target, *pcm16)
        made.append(target)

        # Clipped: the input gain was 14 dB too high, so the peaks are cut flat at full scale.
        target = out_dir / "clipped.wav"
        sox(speech[5], *pcm16, target, "pad", "0.3", "0.3", "gain", str(14.0 - RECORDING_PEAK_DB))
        made.append(target)

        # Near-silent: the microphone was muted; only faint pink noise at -66 dBFS RMS for 3 s.
        target = out_dir / "near-silent.wav"
        quiet = noise("pinknoise", 3.0, -66.0, 16_000, work / "quiet.wav")
        sox(quiet, *pcm16, target)
        made.append(target)

        # Too short: a one-word answer, well under the 2 s a clip needs.
        target = out_dir / "too-short.wav"
        reply = speak(SHORT_REPLY, work / "reply.wav")
        with_noise(reply, "whitenoise", 30.0, 22_050, work, target, *pcm16)
        made.append(target)

        # Wrong content: session notes in a text file that was saved with a .wav name.
        target = out_dir / "not-audio.wav"
        target.write_text(NOT_AUDIO_TEXT, encoding="utf-8")
        made.append(target)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: beside this script)")
    args = parser.parse_args()
    for tool in ("espeak-ng", "sox", "soxi"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed; run `apt-get install espeak-ng sox` first.")
    for path in make_all(args.out):
        print(f"{path.stat().st_size / 1024:7.1f} KiB  {path.name}")


if __name__ == "__main__":
    main()
