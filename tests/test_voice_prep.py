"""Voice preparation on the committed raw recordings in input-audio-samples/ (made by make_samples.py).

Every bad recording must either become clean clips (mono, 22.05 kHz, 2-10 s, one speech level) or be dropped
with a reason in the report; noise reduction must lower the measured noise floor; raw files must stay
byte-identical; the voice folder appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tortoise_lab.voices import prep as voice_prep, recording
from tortoise_lab.voices.prep import (PrepSettings, VoiceExistsError, clipped_fraction, noise_floor_db,
                                      prepare_voice, split_points)

SAMPLES = Path(__file__).resolve().parent.parent / "input-audio-samples"
RATE = 22_050
SETTINGS = PrepSettings()

# What must become of each recording: "kept", or a word the drop reason starts with.
EXPECTED = {
    "hiss-white-20db.wav": "kept",
    "hiss-pink-25db.flac": "kept",
    "hum-50hz.ogg": "kept",
    "hum-60hz-16k.wav": "kept",
    "reverb-stereo-48k.flac": "kept",
    "long-take-25s.flac": "kept",
    "clipped.wav": "clipped",
    "near-silent.wav": "silent",
    "too-short.wav": "too short",
    "not-audio.wav": "unreadable",
}
HISS = ("hiss-white-20db.wav", "hiss-pink-25db.flac")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_name(report) -> dict:
    return {Path(source.source).name: source for source in report.sources}


def _leftovers(folder: Path) -> list[str]:
    """Hidden build or backup folders that a finished (or failed) run must not leave."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


@pytest.fixture(scope="module")
def raw_hashes() -> dict[str, str]:
    """Hashes of the raw recordings taken before any preparation runs."""
    return {p.name: _sha256(p) for p in sorted(SAMPLES.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, raw_hashes):
    voices = tmp_path_factory.mktemp("voices")
    return prepare_voice(SAMPLES, "seed", voices), voices / "seed"


@pytest.fixture(scope="module")
def prepared_plain(tmp_path_factory, raw_hashes):
    voices = tmp_path_factory.mktemp("voices-plain")
    return prepare_voice(SAMPLES, "seed", voices, denoise=False), voices / "seed"


def test_samples_are_committed_and_small():
    names = {p.name for p in SAMPLES.iterdir()}
    assert set(EXPECTED) <= names, f"run input-audio-samples/make_samples.py; missing {set(EXPECTED) - names}"
    total = sum(p.stat().st_size for p in SAMPLES.iterdir() if p.is_file())
    assert total < 5 * 2**20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_recording_is_kept_or_dropped_with_its_reason(prepared, name):
    report, _ = prepared
    source = _by_name(report)[name]
    if EXPECTED[name] == "kept":
        assert source.kept and source.clips and not source.reason
    else:
        assert not source.kept and not source.clips
        assert source.reason.startswith(EXPECTED[name]), source.reason
        assert source.reason in report.to_markdown()


def test_clips_are_mono_at_the_voice_rate_and_2_to_10_seconds(prepared):
    report, folder = prepared
    files = sorted(folder.glob("*.wav"))
    assert [p.name for p in files] == [f"{i:02d}.wav" for i in range(1, len(files) + 1)]
    assert [p.name for p in files] == [clip.file for clip in report.clips]
    for path, clip in zip(files, report.clips):
        info = soundfile.info(str(path))
        assert (info.channels, info.samplerate, info.subtype) == (1, RATE, "PCM_16")
        assert SETTINGS.min_clip_s <= info.duration <= SETTINGS.max_clip_s
        assert info.duration == pytest.approx(clip.duration_s, abs=1e-3)


def test_clips_share_one_speech_level_and_keep_headroom(prepared):
    _, folder = prepared
    for path in sorted(folder.glob("*.wav")):
        wav, _ = soundfile.read(str(path), dtype="float32")
        frames = wav[: len(wav) // 441 * 441].reshape(-1, 441)  # 20 ms frames
        power_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-30)
        speech_db = 10 * np.log10(np.mean(10 ** (power_db[power_db > power_db.max() - 20] / 10)))
        peak_db = 20 * np.log10(np.abs(wav).max())
        assert peak_db <= SETTINGS.peak_ceiling_db + 0.01, path.name
        # At the target, unless the peak ceiling held the gain back.
        assert abs(speech_db - SETTINGS.speech_level_db) < 1.0 or peak_db > SETTINGS.peak_ceiling_db - 0.1


def test_denoising_lowers_the_noise_floor(prepared):
    report, _ = prepared
    sources = _by_name(report)
    for name in HISS:
        source = sources[name]
        assert source.noise_floor_after_db < source.noise_floor_before_db - 15, name
    for name, expected in EXPECTED.items():
        if expected == "kept":
            source = sources[name]
            assert source.noise_floor_after_db < source.noise_floor_before_db - 10, name


def test_noise_floor_is_unchanged_without_denoising(prepared, prepared_plain):
    denoised, plain = _by_name(prepared[0]), _by_name(prepared_plain[0])
    for name in HISS:
        assert plain[name].noise_floor_after_db == pytest.approx(plain[name].noise_floor_before_db, abs=0.5)
        assert plain[name].noise_floor_before_db == pytest.approx(denoised[name].noise_floor_before_db, abs=1e-6)
    assert not prepared_plain[0].denoise and "noise reduction off" in prepared_plain[0].to_markdown()


def test_the_long_take_is_split_at_pauses(prepared):
    source = _by_name(prepared[0])["long-take-25s.flac"]
    assert len(source.clips) >= 3
    ends = [0.0]
    for clip in source.clips:
        assert clip.start_s >= ends[-1] and SETTINGS.min_clip_s <= clip.duration_s <= SETTINGS.max_clip_s
        ends.append(clip.end_s)
    assert not any("mid-speech" in w for w in source.warnings)  # every cut fell in a pause


def test_speech_without_long_enough_pauses_is_cut_at_its_quietest_point(tmp_path):
    # 3 s clips from 5 s sentences: the word gaps are too short to count as pauses, so cuts are forced.
    settings = PrepSettings(max_clip_s=3.0, ideal_clip_s=2.5, min_clip_s=1.0)
    report = prepare_voice(SAMPLES / "hiss-white-20db.wav", "short", tmp_path, settings=settings)
    (source,) = report.sources
    assert len(source.clips) >= 2 and all(c.duration_s <= 3.0 for c in source.clips)
    assert any("mid-speech" in w for w in source.warnings)


def test_text_renamed_wav_is_dropped_as_unreadable(prepared):
    source = _by_name(prepared[0])["not-audio.wav"]
    assert source.reason == "unreadable: not audio that libsndfile can decode (Format not recognised)"


def test_report_files_match_the_returned_report(prepared):
    report, folder = prepared
    assert (folder / "prepare-report.json").read_text() == report.to_json()
    assert (folder / "prepare-report.md").read_text() == report.to_markdown()
    saved = json.loads(report.to_json())
    assert saved["settings"]["sample_rate"] == RATE and saved["denoise"] is True
    assert {Path(p).name for p in report.ignored} == {"README.md", "make_samples.py"}
    assert "noise floor" in report.to_text()


def test_raw_files_are_byte_identical_afterwards(prepared, prepared_plain, raw_hashes):
    assert raw_hashes == {p.name: _sha256(p) for p in sorted(SAMPLES.iterdir()) if p.is_file()}
    for source in prepared[0].sources:
        assert source.sha256 == raw_hashes[Path(source.source).name]


def test_prepared_voice_loads_as_a_voice(prepared):
    from tortoise_lab.voices import load_voice

    report, folder = prepared
    voice = load_voice("seed", extra_dirs=[folder.parent])
    assert len(voice.clips) == len(report.clips)
    assert all(clip.shape[0] == 1 for clip in voice.clips)


def test_an_existing_voice_is_not_overwritten_without_the_flag(tmp_path):
    first = prepare_voice([SAMPLES / "hiss-white-20db.wav"], "v", tmp_path)
    before = {p.name: _sha256(p) for p in (tmp_path / "v").iterdir()}
    with pytest.raises(VoiceExistsError, match=r"already exists .*overwrite=True"):
        prepare_voice([SAMPLES / "hiss-pink-25db.flac"], "v", tmp_path)
    assert before == {p.name: _sha256(p) for p in (tmp_path / "v").iterdir()}
    assert issubclass(VoiceExistsError, ValueError)  # a CLI can report it like any other bad input

    second = prepare_voice([SAMPLES / "hiss-pink-25db.flac"], "v", tmp_path, overwrite=True)
    saved = json.loads((tmp_path / "v" / "prepare-report.json").read_text())
    assert [Path(s["source"]).name for s in saved["sources"]] == ["hiss-pink-25db.flac"]
    assert first.clips and second.clips and _leftovers(tmp_path) == []


def test_nothing_usable_is_an_error_and_writes_nothing(tmp_path):
    voices = tmp_path / "voices"
    bad = [SAMPLES / name for name in ("not-audio.wav", "near-silent.wav", "too-short.wav", "clipped.wav")]
    with pytest.raises(ValueError, match=r"^No usable speech in the 4 recording\(s\), so no voice was written"):
        prepare_voice(bad, "v", voices)
    assert not voices.exists()


def test_no_audio_found_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(ValueError, match=r"^No audio files found in "):
        prepare_voice(tmp_path, "v", tmp_path / "voices")
    with pytest.raises(ValueError, match=r"^No file or folder at "):
        prepare_voice(tmp_path / "missing.wav", "v", tmp_path / "voices")
    with pytest.raises(ValueError, match=r"not allowed"):
        prepare_voice(SAMPLES, "a&b", tmp_path / "voices")
    assert not (tmp_path / "voices").exists()


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    existing = prepare_voice([SAMPLES / "hiss-white-20db.wav"], "old", tmp_path)
    calls = []

    def failing_save(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(path, *args, **kwargs)

    real_save = voice_prep.save_audio
    monkeypatch.setattr(voice_prep, "save_audio", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare_voice([SAMPLES / "long-take-25s.flac"], "new", tmp_path)
    # An overwrite that fails keeps the old voice as it was.
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        prepare_voice([SAMPLES / "long-take-25s.flac"], "old", tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert len(list((tmp_path / "old").glob("*.wav"))) == len(existing.clips)


# ------------------------------------------------------------------------------------ the measurements


def test_clipped_fraction_counts_flat_runs_at_full_scale():
    t = np.arange(RATE) / RATE
    sine = np.sin(2 * np.pi * 200 * t)[None].astype(np.float32)  # (1, N)
    assert clipped_fraction(0.97 * sine) == 0.0
    assert clipped_fraction(sine) == 0.0  # a clean full-scale crest is rounded, not flat...
    slow = np.sin(2 * np.pi * 100 * np.arange(48_000) / 48_000)[None].astype(np.float32)
    assert clipped_fraction(slow) == 0.0  # ...even for a low tone at a high rate
    driven = np.clip(2 * sine, -1, 1)
    assert clipped_fraction(driven) > 0.3


def test_noise_floor_measures_the_background_between_words():
    rng = np.random.default_rng(0)
    background = 0.001 * rng.standard_normal(RATE * 4)  # -60 dBFS RMS
    tone = np.zeros_like(background)
    tone[RATE:3 * RATE] = 0.1 * np.sin(2 * np.pi * 220 * np.arange(2 * RATE) / RATE)
    assert noise_floor_db(background + tone, RATE) == pytest.approx(-60.0, abs=1.0)


def test_out_of_phase_stereo_keeps_one_channel():
    channel = np.sin(np.linspace(0, 100, 1000)).astype(np.float32)
    mono, warning = recording._to_mono(np.stack([channel, -channel]))
    assert np.array_equal(mono, channel) and "out of phase" in warning


def test_split_points_prefers_clips_near_the_ideal_length():
    # Four runs; a clip may hold runs i..j with cost (length - 8)^2, where length = 4 s per run.
    n, inf = 4, np.inf
    cost = np.full((n, n), inf)
    for i in range(n):
        for j in range(i, min(n, i + 2)):  # at most two runs (8 s) per clip
            cost[i, j] = (4.0 * (j - i + 1) - 8.0) ** 2
    assert split_points(cost) == [0, 2]


def test_light_clipping_is_kept_with_a_warning(tmp_path):
    wav, rate = soundfile.read(str(SAMPLES / "hiss-white-20db.wav"), dtype="float32")
    peaks = np.argsort(np.abs(wav))[-3:]  # three short flat tops: 15 samples, 0.005 % of the take
    for index in peaks:
        wav[index:index + 5] = np.sign(wav[index])
    soundfile.write(str(tmp_path / "light.wav"), wav, rate, subtype="PCM_16")
    (source,) = prepare_voice(tmp_path / "light.wav", "v", tmp_path / "voices").sources
    assert source.kept and 0 < source.clipped_fraction <= SETTINGS.clip_drop_fraction
    assert any(w.startswith("clipped:") for w in source.warnings)


def test_a_short_piece_is_merged_with_its_neighbour():
    # At 100 frames a second and a hop of one sample: speech of 1 s, 6 s and 6 s with 0.5 s pauses.
    runs = [(0, 100), (150, 750), (800, 1400)]
    pieces = recording._plan_clips(runs, hop=1, n_samples=1400, sample_rate=100, settings=SETTINGS)
    assert len(pieces) == 2 and pieces[0][0] == 0 and pieces[1][1] == 1400
    assert all(SETTINGS.min_clip_s * 100 <= stop - start <= SETTINGS.max_clip_s * 100 for start, stop in pieces)


def test_non_finite_samples_are_dropped_with_the_loading_checks_reason(tmp_path):
    """Preparation and voice loading share their checks (``measure.find_sample_problem``)."""
    wav, rate = soundfile.read(str(SAMPLES / "hiss-white-20db.wav"), dtype="float32")
    wav[100:110] = np.nan
    soundfile.write(str(tmp_path / "nan.wav"), wav, rate, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan\.wav: non-finite: 10 of \d+ samples are NaN\)"):
        prepare_voice(tmp_path / "nan.wav", "v", tmp_path / "voices")
    assert not (tmp_path / "voices").exists()
