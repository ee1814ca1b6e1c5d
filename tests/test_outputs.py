"""Output naming, atomic sidecar writes and debug state (tortoise_lab.outputs, tortoise_lab.files), and read's resume
bookkeeping (tortoise_lab.reading)."""

from __future__ import annotations

import json

import pytest
import soundfile
import torch

from tortoise_lab import files, outputs
from tortoise_lab.audio import save_audio as write_audio
from tortoise_lab.files import read_json, write_json
from tortoise_lab.outputs import candidate_path, file_stem, load_wav, save_debug_state, save_with_sidecar, sidecar_path
from tortoise_lab.reading import (chunk_finished, chunk_seed, identity, parse_indices, read_folder,
                                  sidecar_identity)

RATE = 24_000
SETTINGS = {"preset": "fast", "temperature": 0.8, "text_split": None, "kv_cache": True, "compile": False}


def _wav(seed: int = 0, n: int = 480) -> torch.Tensor:
    return torch.rand(1, n, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (1, N)


def _leftovers(folder):
    """Scratch files a failed write could leave behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def test_names_sidecars_candidates_and_read_folders(tmp_path):
    assert sidecar_path(tmp_path / "tom.wav") == tmp_path / "tom.json"
    assert candidate_path(tmp_path / "tom.wav", 0) == tmp_path / "tom.wav"
    assert candidate_path(tmp_path / "3.wav", 2) == tmp_path / "3_candidate2.wav"
    assert file_stem("tom&emma") == "tom+emma" and file_stem("a b/../c") == "a_b_.._c" and file_stem("..") == "unnamed"
    assert read_folder("out", "texts/story.txt", "tom&emma") == outputs.Path("out/story/tom+emma")


def test_parse_indices_reads_lists_and_ranges():
    assert parse_indices("3,5-7") == [3, 5, 6, 7]
    assert parse_indices(" 2 , 2,0") == [0, 2]
    for bad, says in (("a", "not one"), ("7-5", "backwards"), ("", "not one"), ("1,,2", "not one"), ("-1", "not one")):
        with pytest.raises(ValueError, match=says):
            parse_indices(bad)


def test_chunk_seeds_are_fixed_distinct_and_in_range():
    seeds = [chunk_seed(11, i) for i in range(50)]
    assert seeds == [chunk_seed(11, i) for i in range(50)]  # the same run seed gives the same chunk seeds
    assert len(set(seeds)) == 50 and chunk_seed(12, 0) != seeds[0]
    assert all(0 <= s < 2**31 - 1 for s in seeds)


def test_identity_ignores_only_options_that_cannot_change_the_audio():
    base = identity("Hi.", "tom", 5, SETTINGS, "m")
    assert identity("Hi.", "tom", 5, {**SETTINGS, "kv_cache": False, "compile": True}, "m") == base
    for changed in (identity("Ho.", "tom", 5, SETTINGS, "m"), identity("Hi.", "emma", 5, SETTINGS, "m"),
                    identity("Hi.", "tom", 6, SETTINGS, "m"), identity("Hi.", "tom", 5, SETTINGS, "official"),
                    identity("Hi.", "tom", 5, {**SETTINGS, "temperature": 0.7}, "m")):
        assert changed != base
    # A sidecar round-trips through JSON (tuples become lists) and still compares equal.
    settings = {**SETTINGS, "text_split": (100, 150)}
    sidecar = json.loads(json.dumps({"text": "Hi.", "voice": "tom", "seed": 5, "settings": settings, "model": "m",
                                     "timings_s": {"total": 1.0}}))
    assert sidecar_identity(sidecar) == identity("Hi.", "tom", 5, settings, "m")
    assert sidecar_identity({"text": "Hi."}) is None


def test_chunk_finished_needs_wav_sidecar_every_candidate_and_a_match(tmp_path):
    best = tmp_path / "0.wav"
    expected = identity("Hi.", "tom", 5, SETTINGS, "m")
    meta = {"text": "Hi.", "voice": "tom", "seed": 5, "settings": SETTINGS, "model": "m"}
    assert not chunk_finished(best, expected)
    save_with_sidecar(best, _wav(), RATE, meta)
    assert chunk_finished(best, expected)
    assert not chunk_finished(best, identity("Other.", "tom", 5, SETTINGS, "m"))
    assert not chunk_finished(best, expected, candidates=2)  # 0_candidate1.wav is missing
    save_with_sidecar(candidate_path(best, 1), _wav(1), RATE, meta)
    assert chunk_finished(best, expected, candidates=2)
    sidecar_path(best).write_text("{ truncated")  # an unreadable sidecar means not finished
    assert not chunk_finished(best, expected)
    sidecar_path(best).unlink()
    assert not chunk_finished(best, expected)


def test_save_with_sidecar_writes_both_exactly(tmp_path):
    wav = _wav()
    path = save_with_sidecar(tmp_path / "deep" / "x.wav", wav, RATE, {"seed": 3, "settings": {"text_split": (1, 2)}})
    loaded, rate = load_wav(path)
    assert rate == RATE and torch.equal(loaded, wav)  # 32-bit float WAV: bit-exact
    assert read_json(sidecar_path(path)) == {"seed": 3, "settings": {"text_split": [1, 2]}, "wav": "x.wav"}
    assert _leftovers(path.parent) == []


@pytest.mark.parametrize("interruption", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_wav_write_failing_midway_leaves_nothing_half_written(tmp_path, monkeypatch, interruption):
    real_write = soundfile.SoundFile.write

    def write_half_then_fail(self, data):
        real_write(self, data[: len(data) // 2])  # some samples are on disk ...
        raise interruption  # ... when the disk fills up or Ctrl-C arrives

    monkeypatch.setattr(soundfile.SoundFile, "write", write_half_then_fail)
    with pytest.raises(type(interruption)):
        save_with_sidecar(tmp_path / "x.wav", _wav(), RATE, {"seed": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_previous_complete_files(tmp_path, monkeypatch):
    path = save_with_sidecar(tmp_path / "x.wav", _wav(0), RATE, {"seed": 1})
    before = (path.read_bytes(), sidecar_path(path).read_bytes())

    def fail(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(soundfile.SoundFile, "write", fail)
    with pytest.raises(OSError):
        save_with_sidecar(path, _wav(1), RATE, {"seed": 2})
    assert (path.read_bytes(), sidecar_path(path).read_bytes()) == before
    assert _leftovers(tmp_path) == []


def test_a_json_write_failing_midway_leaves_the_old_file(tmp_path, monkeypatch):
    target = write_json(tmp_path / "manifest.json", {"done": [0]})

    def fail_after_writing(fd):
        raise OSError(5, "Input/output error")  # the bytes were written to the scratch file, not yet synced

    monkeypatch.setattr(files.os, "fsync", fail_after_writing)
    with pytest.raises(OSError):
        write_json(target, {"done": [0, 1]})
    assert read_json(target) == {"done": [0]}
    assert _leftovers(tmp_path) == []
    with pytest.raises(OSError):  # the sidecar is staged before the WAV: a failure there writes no WAV either
        save_with_sidecar(tmp_path / "y.wav", _wav(), RATE, {"seed": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_debug_state_is_safetensors_and_json(tmp_path):
    from safetensors.torch import load_file

    codes = torch.tensor([[1, 2, 83]])
    tensor_file, json_file = save_debug_state(tmp_path / "tom.wav", {"codes_0": codes, "wav": _wav()},
                                              {"seed": 4, "settings": SETTINGS})
    assert tensor_file.name == "tom.debug.safetensors" and json_file.name == "tom.debug.json"
    state = load_file(str(tensor_file))
    assert torch.equal(state["codes_0"], codes) and state["wav"].shape == (1, 480)
    info = read_json(json_file)
    assert info["seed"] == 4 and info["tensors"] == ["codes_0", "wav"] and info["tensors_file"] == tensor_file.name
    assert _leftovers(tmp_path) == []


def test_write_audio_is_exact_and_reproducible_byte_for_byte(tmp_path):
    wav = _wav(3)
    first, second = write_audio(tmp_path / "a.wav", wav, RATE), write_audio(tmp_path / "b.wav", wav, RATE)
    data = first.read_bytes()
    # No PEAK chunk: libsndfile would put the time of writing in it, so equal audio would differ in bytes.
    assert data == second.read_bytes() and b"PEAK" not in data
    assert torch.equal(load_wav(first)[0], wav)
    for refused in ("c.xyz", "c.raw"):  # libsndfile lists RAW, with no encoding to write it in
        with pytest.raises(ValueError, match="unknown audio suffix; give it a .wav name"):
            write_audio(tmp_path / refused, wav, RATE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]
    import soundfile

    for suffix in (".flac", ".ogg", ".mp3"):  # the others the message names
        assert soundfile.info(str(write_audio(tmp_path / f"d{suffix}", wav, RATE))).samplerate == RATE
