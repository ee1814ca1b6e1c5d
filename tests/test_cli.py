"""The ``speak`` and ``read`` commands, in-process through ``cli.main`` on tiny random weights (--tiny).

Each synthesis here takes about a second on two CPU cores: 2 autoregressive samples of at most 12 codes and 3
diffusion steps. Voices are synthetic tones in temporary folders, so the tests never touch the built-in voices.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
from pathlib import Path

import pytest
import soundfile
import torch

from tortoise_lab import cli
from tortoise_lab.cli import common
from tortoise_lab.voices import library as voices  # where voice_dirs is looked up
from tortoise_lab.files import read_json
from tortoise_lab.reading import chunk_seed
from tortoise_lab.pipeline import TextToSpeech

# The fastest run that still goes through every stage.
TINY = ["--tiny", "-q", "--num-autoregressive-samples", "2", "--max-mel-tokens", "12", "--diffusion-iterations", "3"]
# Four chunks for read: '|' marks the boundaries.
STORY = "The first chunk is here. | A second one follows. | Then comes a third. | And the fourth ends it."
STORY_CHUNKS = ["The first chunk is here.", "A second one follows.", "Then comes a third.", "And the fourth ends it."]


def _tone(path: Path, hz: float, seconds: float = 1.0, rate: int = 22_050) -> None:
    n = int(seconds * rate)
    wave = [0.3 * math.sin(2 * math.pi * hz * i / rate) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave, rate)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def voice_folders(tmp_path_factory) -> tuple[Path, Path]:
    """(the searched voices folder with alpha and beta, an extra -V folder with gamma)."""
    root = tmp_path_factory.mktemp("voices")
    _tone(root / "builtin" / "alpha" / "a.wav", 220)
    _tone(root / "builtin" / "beta" / "b.wav", 330)
    _tone(root / "extra" / "gamma" / "g.wav", 440)
    return root / "builtin", root / "extra"


@pytest.fixture(autouse=True)
def isolated(voice_folders, tmp_path, monkeypatch):
    """Run in a temporary folder, with only the tone voices visible (plus any -V folders)."""
    builtin, _ = voice_folders
    monkeypatch.setattr(voices, "voice_dirs", lambda extra=None: [Path(p) for p in extra or []] + [builtin])
    monkeypatch.chdir(tmp_path)


def run(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


def _one_line_error(capsys, code: int, rc: int, *phrases: str) -> str:
    err = capsys.readouterr().err
    assert rc == code, err
    # Notes about outputs finished before the failure may come first; the error itself is one line.
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def _audio_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".wav", ".json", ".part", ".safetensors"))


# ------------------------------------------------------------------------------------------------ parsing


PARSES = [  # (arguments after `speak hi`, attribute, value)
    (["-v", "tom"], "voice", "tom"), (["--voice", "tom&emma"], "voice", "tom&emma"),
    (["-V", "d1", "--voices-dir", "d2"], "voices_dir", ["d1", "d2"]),
    (["-p", "standard"], "preset", "standard"), (["--preset", "ultra_fast"], "preset", "ultra_fast"),
    (["-q"], "quiet", True), (["--quiet"], "quiet", True), (["--no-quiet"], "quiet", False),
    (["-l"], "list_voices", True), (["--list-voices"], "list_voices", True),
    (["-P"], "play", True), (["--play"], "play", True),
    (["-o", "a.wav"], "output", "a.wav"), (["--output", "b.wav"], "output", "b.wav"),
    (["-O", "d"], "output_path", "d"), (["--output-dir", "e"], "output_path", "e"),
    (["--output-path", "f"], "output_path", "f"),
    (["--candidates", "3"], "candidates", 3), (["--skip-existing"], "skip_existing", True),
    (["--produce-debug-state"], "produce_debug_state", True), (["--seed", "42"], "seed", 42),
    (["--models-dir", "m"], "models_dir", "m"), (["--text-split", "100,150"], "text_split", (100, 150)),
    (["--disable-redaction"], "disable_redaction", True), (["--device", "cpu"], "device", "cpu"),
    (["--batch-size", "4"], "batch_size", 4), (["--num-autoregressive-samples", "8"], "num_autoregressive_samples", 8),
    (["--temperature", "0.5"], "temperature", 0.5), (["--length-penalty", "1.5"], "length_penalty", 1.5),
    (["--repetition-penalty", "3"], "repetition_penalty", 3.0), (["--top-p", "0.9"], "top_p", 0.9),
    (["--max-mel-tokens", "100"], "max_mel_tokens", 100), (["--cvvp-amount", "0.2"], "cvvp_amount", 0.2),
    (["--diffusion-iterations", "30"], "diffusion_iterations", 30),
    (["--cond-free"], "cond_free", True), (["--no-cond-free"], "cond_free", False),
    (["--cond-free-k", "1.5"], "cond_free_k", 1.5), (["--diffusion-temperature", "0.9"], "diffusion_temperature", 0.9),
    (["--kv-cache"], "kv_cache", True), (["--no-kv-cache"], "kv_cache", False),
    (["--half"], "half", True), (["--deepspeed"], "deepspeed", True), (["--compile"], "compile", True),
    (["--sampler", "dpm++2m"], "sampler", "dpm++2m"), (["--tiny"], "tiny", True),
    (["--latent-cache"], "latent_cache", True), (["--no-latent-cache"], "latent_cache", False),
    (["--text-file", "t.txt"], "text_file", "t.txt"),
]


@pytest.mark.parametrize("argv, attribute, value", PARSES, ids=[" ".join(a) for a, _, _ in PARSES])
def test_every_flag_parses_in_short_and_long_form(argv, attribute, value):
    args = cli.build_parser().parse_args(["speak", "hi", *argv])
    assert getattr(args, attribute) == value
    if attribute not in ("output", "text_file"):  # read takes every shared flag too
        assert getattr(cli.build_parser().parse_args(["read", "story.txt", *argv]), attribute) == value


def test_read_specific_arguments_and_unset_options_leave_the_preset_alone():
    args = cli.build_parser().parse_args(["read", "story.txt", "--regenerate", "3,5-7"])
    assert (args.textfile, args.regenerate) == ("story.txt", "3,5-7")
    args = cli.build_parser().parse_args(["speak", "Hello", "there."])
    assert args.text == ["Hello", "there."] and args.output_path == cli.DEFAULT_OUTPUT_DIR
    assert common.overrides(args) == {}  # nothing set: every number comes from the preset
    parsed = cli.build_parser().parse_args(["speak", "x", "-p", "ultra_fast", "--top-p", "0.5"])
    settings = common.settings_from_args(parsed)
    assert (settings.cond_free, settings.diffusion_iterations, settings.top_p) == (False, 30, 0.5)


SPEAK_FLAGS = ["-v", "--voice", "-V", "--voices-dir", "-p", "--preset", "-q", "--quiet", "-l", "--list-voices",
               "-P", "--play", "-o", "--output", "-O", "--output-dir", "--candidates", "--skip-existing",
               "--produce-debug-state", "--seed", "--models-dir", "--text-split", "--disable-redaction", "--device",
               "--batch-size", "--num-autoregressive-samples", "--temperature", "--length-penalty",
               "--repetition-penalty", "--top-p", "--max-mel-tokens", "--cvvp-amount", "--diffusion-iterations",
               "--cond-free", "--no-cond-free", "--cond-free-k", "--diffusion-temperature", "--kv-cache",
               "--no-kv-cache", "--half", "--deepspeed", "--compile", "--sampler", "--tiny", "--text-file",
               "--latent-cache"]


@pytest.mark.parametrize("verb", ["speak", "read"])
def test_help_lists_and_documents_every_flag(verb, capsys):
    assert run(verb, "--help") == 0
    text = capsys.readouterr().out
    expected = [f for f in SPEAK_FLAGS if f not in ("-o", "--output", "--text-file")]
    expected += ["-o", "--output", "--text-file"] if verb == "speak" else ["--regenerate"]
    missing = [flag for flag in expected if f" {flag}" not in text and f"[{flag}" not in text]
    assert missing == []
    # Every option the parser knows has help text (argparse prints none for help=None).
    subparser = cli.build_parser()._subparsers._group_actions[0].choices[verb]
    assert all(action.help for action in subparser._actions)


# ---------------------------------------------------------------------------------------------- speaking


def test_speak_writes_a_wav_and_a_sidecar_with_seed_and_settings(capsys, tmp_path):
    rc = run("speak", "Hello there.", *TINY, "--seed", "3", "--temperature", "0.7", "-O", "out")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    wav, sidecar = tmp_path / "out" / "random.wav", tmp_path / "out" / "random.json"
    audio, rate = soundfile.read(str(wav))
    assert rate == 24_000 and len(audio) > 0
    meta = json.loads(sidecar.read_text())
    assert (meta["seed"], meta["text"], meta["voice"], meta["wav"]) == (3, "Hello there.", "random", "random.wav")
    assert meta["settings"]["temperature"] == 0.7 and meta["settings"]["top_p"] == 0.8  # set, and the preset's
    assert meta["settings"]["num_autoregressive_samples"] == 2 and meta["settings"]["preset"] == "fast"
    assert meta["device"] == "cpu" and meta["tortoise_lab_version"] and meta["model"].startswith("random tiny")
    assert {"autoregressive", "diffusion_and_vocoder", "total"} <= set(meta["timings_s"])
    assert meta["command"][:3] == ["tortoise-lab", "speak", "Hello there."]
    # Where it went and the seed are printed; random weights are said plainly; no stop token is a note, audio kept.
    assert "out/random.wav" in captured.out and "seed: 3" in captured.out
    assert "noise" in captured.out
    assert "max_mel_tokens (12)" in captured.err and meta["notes"]
    # --skip-existing keeps it (no new synthesis, file untouched).
    before = wav.stat().st_mtime_ns
    assert run("speak", "Hello there.", *TINY, "-O", "out", "--skip-existing") == 0
    assert wav.stat().st_mtime_ns == before and "kept" in capsys.readouterr().out


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory, voice_folders):
    """WAV bytes of runs that should (or should not) be identical."""
    folder = tmp_path_factory.mktemp("seeded")
    runs = {"first": ["--seed", "9"], "kv_cache": ["--seed", "9", "--kv-cache"],  # on is the default: a rerun
            "no_kv_cache": ["--seed", "9", "--no-kv-cache"], "other_seed": ["--seed", "10"]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(voices, "voice_dirs", lambda extra=None: [voice_folders[0]])
        for name, extra in runs.items():
            assert run("speak", "Same words.", *TINY, *extra, "-v", "alpha", "-o", folder / f"{name}.wav") == 0
    return {name: (folder / f"{name}.wav").read_bytes() for name in runs}


def test_same_seed_gives_byte_identical_wavs(seeded_runs):
    assert seeded_runs["first"] == seeded_runs["kv_cache"]  # a second run with the same seed (and the default)
    assert seeded_runs["first"] != seeded_runs["other_seed"]


def test_kv_cache_on_and_off_give_byte_identical_wavs(seeded_runs):
    assert seeded_runs["kv_cache"] == seeded_runs["no_kv_cache"]


def test_all_voices_blends_and_several_voices(capsys, tmp_path, voice_folders):
    _, extra = voice_folders
    rc = run("speak", "Hi.", *TINY, "--no-quiet", "--seed", "1", "-v", "all,alpha&gamma", "-V", extra, "-O", "out")
    out = capsys.readouterr().out
    assert rc == 0
    # all = every available voice (gamma from -V included); the blend gets a file-safe name.
    assert _audio_files(tmp_path / "out") == sorted(f"{v}.{s}" for v in ("alpha", "beta", "gamma", "alpha+gamma")
                                                    for s in ("json", "wav"))
    assert json.loads((tmp_path / "out" / "alpha+gamma.json").read_text())["voice"] == "alpha&gamma"
    assert out.count("seed: 1") == 1 and "Speaking as alpha&gamma (4 of 4)" in out  # --no-quiet: progress shown


def test_bracketed_text_without_an_aligner_is_kept_with_a_note(capsys, tmp_path, monkeypatch):
    from tortoise_lab.stages import redaction

    asked = []

    def unavailable(*args, **kwargs):
        asked.append(kwargs)
        raise redaction.AlignerUnavailableError("the aligner is not downloaded here")

    monkeypatch.setattr(redaction.Aligner, "from_pretrained", unavailable)
    assert run("speak", "[whispering] Hi.", *TINY, "-o", "r.wav") == 0
    assert asked and "not downloaded here" in capsys.readouterr().err  # noted, and the audio is kept
    assert any("not downloaded here" in note for note in json.loads((tmp_path / "r.json").read_text())["notes"])


@pytest.mark.parametrize("verb", ["speak", "read"])
def test_list_voices_prints_names_with_folders(verb, capsys, voice_folders):
    builtin, extra = voice_folders
    assert run(verb, "-l", "-V", extra) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["voice", "clips", "seconds"] and lines[1].startswith("random ")
    rows = [line.split() for line in lines[2:]]
    assert [(row[0], row[-1]) for row in rows] == [("alpha", str(builtin / "alpha")), ("beta", str(builtin / "beta")),
                                                   ("gamma", str(extra / "gamma"))]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_from_stdin_and_from_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Piped words.\n"))
    assert run("speak", "-", *TINY, "-o", "piped.wav") == 0
    assert json.loads((tmp_path / "piped.json").read_text())["text"] == "Piped words."
    (tmp_path / "t.txt").write_text("Words from a file.\n", encoding="utf-8")
    assert run("speak", "--text-file", "t.txt", *TINY, "-o", "file.wav") == 0
    assert json.loads((tmp_path / "file.json").read_text())["text"] == "Words from a file."
    capsys.readouterr()
    # Empty piped input, no text at all (stdin is a terminal), or text given twice: one-line errors.
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    _one_line_error(capsys, 2, run("speak", *TINY), "empty")
    monkeypatch.setattr("sys.stdin", Terminal())
    _one_line_error(capsys, 2, run("speak", *TINY), "no text to speak", "--text-file")
    _one_line_error(capsys, 2, run("speak", "x", "--text-file", "t.txt", *TINY), "not both")


def test_candidates_debug_state_and_disabled_redaction(capsys, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from tortoise_lab.stages import redaction

    monkeypatch.setattr(redaction.Aligner, "from_pretrained", lambda *a, **k: pytest.fail("redaction is off"))
    rc = run("speak", "[softly] Two takes.", *TINY, "--candidates", "2", "--produce-debug-state",
             "--disable-redaction", "--seed", "4", "-O", "out")
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "out"
    assert _audio_files(out) == ["random.debug.json", "random.debug.safetensors", "random.json", "random.wav",
                                 "random_candidate1.json", "random_candidate1.wav"]
    assert json.loads((out / "random_candidate1.json").read_text())["candidate"] == 1
    state = load_file(str(out / "random.debug.safetensors"))
    assert state["codes_0"].shape == (2, 12) and state["scores_0"].shape == (2,)
    assert torch.equal(state["candidate_0"], torch.from_numpy(soundfile.read(str(out / "random.wav"),
                                                                              dtype="float32")[0])[None])
    debug = json.loads((out / "random.debug.json").read_text())
    assert debug["seed"] == 4 and debug["settings"]["redact"] is False and debug["settings"]["candidates"] == 2


def test_play_uses_a_player_if_there_is_one_and_never_fails(capsys, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(common.shutil, "which", lambda name: "/usr/bin/aplay" if name == "aplay" else None)
    monkeypatch.setattr(common.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 1))
    assert run("speak", "Play it.", *TINY, "-P", "-o", "p.wav") == 0
    assert calls == [["/usr/bin/aplay", "-q", "p.wav"]]
    assert "could not play" in capsys.readouterr().err  # the player failed: said, and the run still succeeds
    monkeypatch.setattr(common.shutil, "which", lambda name: None)
    assert run("speak", "Play it.", *TINY, "--play", "--skip-existing", "-o", "p.wav") == 0
    err = capsys.readouterr().err
    assert "no audio player found" in err and len(err.splitlines()) == 1


# -------------------------------------------------------------------------------------------------- read


def test_read_resumes_after_an_interruption_and_regenerates_chunks(capsys, tmp_path, monkeypatch):
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")
    folder = tmp_path / "out" / "story" / "alpha"
    real_tts = TextToSpeech.tts
    spoken, interrupted = [], []

    def interrupted_once_at_chunk_2(self, text, **kwargs):
        if text == STORY_CHUNKS[2] and not interrupted:
            interrupted.append(text)
            raise KeyboardInterrupt  # Ctrl-C while chunk 2 is being made
        spoken.append(text)
        return real_tts(self, text, **kwargs)

    monkeypatch.setattr(TextToSpeech, "tts", interrupted_once_at_chunk_2)
    rc = run("read", "story.txt", *TINY, "-v", "alpha", "--seed", "11", "-O", "out")
    _one_line_error(capsys, 130, rc, "interrupted", "resumes")
    assert spoken == STORY_CHUNKS[:2]
    assert _audio_files(folder) == ["0.json", "0.wav", "1.json", "1.wav", "manifest.json"]  # nothing of chunk 2
    manifest = read_json(folder / "manifest.json")
    assert [c["done"] for c in manifest["chunks"]] == [True, True, False, False]
    first = {name: (folder / name).stat().st_mtime_ns for name in ("0.wav", "0.json", "1.wav", "1.json")}

    # Run again, without --seed: the manifest's seed is reused, chunks 0-1 are kept, 2-3 made, then combined.
    spoken.clear()
    assert run("read", "story.txt", *TINY, "-v", "alpha", "-O", "out") == 0
    assert spoken == STORY_CHUNKS[2:]
    assert {name: (folder / name).stat().st_mtime_ns for name in first} == first
    manifest = read_json(folder / "manifest.json")
    assert [c["done"] for c in manifest["chunks"]] == [True] * 4 and manifest["combined"] == "combined.wav"
    assert [c["text"] for c in manifest["chunks"]] == STORY_CHUNKS
    assert [c["seed"] for c in manifest["chunks"]] == [chunk_seed(11, i) for i in range(4)]
    for i in range(4):
        sidecar = read_json(folder / f"{i}.json")
        assert (sidecar["seed"], sidecar["text"], sidecar["run_seed"]) == (chunk_seed(11, i), STORY_CHUNKS[i], 11)
    combined, _ = soundfile.read(str(folder / "combined.wav"), dtype="float32")
    parts = [soundfile.read(str(folder / f"{i}.wav"), dtype="float32")[0] for i in range(4)]
    assert torch.equal(torch.from_numpy(combined), torch.cat([torch.from_numpy(p) for p in parts]))
    assert "seed: 11" in capsys.readouterr().out

    # --regenerate redoes just that chunk; with its recorded seed the audio comes out the same.
    chunk_1 = (folder / "1.wav").read_bytes()
    before = {name: (folder / name).stat().st_mtime_ns for name in ("0.wav", "1.wav", "2.wav", "3.wav")}
    spoken.clear()
    assert run("read", "story.txt", *TINY, "-v", "alpha", "-O", "out", "--regenerate", "1") == 0
    assert spoken == [STORY_CHUNKS[1]]
    after = {name: (folder / name).stat().st_mtime_ns for name in before}
    assert [name for name in before if before[name] != after[name]] == ["1.wav"]
    assert (folder / "1.wav").read_bytes() == chunk_1

    # Finished means "made with these settings": --skip-existing keeps chunks anyway, otherwise they are redone.
    spoken.clear()
    assert run("read", "story.txt", *TINY, "-v", "alpha", "-O", "out", "--temperature", "0.5", "--skip-existing") == 0
    assert spoken == []
    assert run("read", "story.txt", *TINY, "-v", "alpha", "-O", "out", "--temperature", "0.5") == 0
    assert spoken == STORY_CHUNKS
    assert read_json(folder / "3.json")["settings"]["temperature"] == 0.5


def test_read_input_errors(capsys, tmp_path):
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")
    _one_line_error(capsys, 2, run("read", "story.txt", *TINY, "--regenerate", "4"), "chunk 4", "0 to 3")
    _one_line_error(capsys, 2, run("read", "story.txt", *TINY, "--regenerate", "3-1"), "backwards")
    _one_line_error(capsys, 2, run("read", "missing.txt", *TINY), "no text file at missing.txt")
    _one_line_error(capsys, 2, run("read", *TINY), "needs a text file")
    # Chunks the reader marked with '|' are theirs: one the model cannot take is refused, not cut.
    (tmp_path / "long.txt").write_text("Short. | This chunk of words is far too long for the tiny model to say at once.")
    _one_line_error(capsys, 2, run("read", "long.txt", *TINY), "tokens long", "split it")
    (tmp_path / "brackets.txt").write_text("Fine here. | [Not closed here.")
    _one_line_error(capsys, 2, run("read", "brackets.txt", *TINY), "Unbalanced brackets")
    assert not (tmp_path / "out").exists() and not (tmp_path / cli.DEFAULT_OUTPUT_DIR).exists()


# ------------------------------------------------------------------------------------------------ errors


def test_missing_weights_say_how_to_get_them(capsys, tmp_path):
    rc = run("speak", "Hello there.", "--model", "official", "--models-dir", tmp_path / "models")
    line = _one_line_error(capsys, 3, rc, "tortoise-lab download", "autoregressive.pth", "--tiny")
    assert "rlg_auto.pth" in line  # the default random voice needs its generators too
    assert not (tmp_path / cli.DEFAULT_OUTPUT_DIR).exists()


BAD_INPUTS = [  # (arguments, words the one-line message must contain)
    (["Hi.", "-v", "nobody"], ["unknown voice 'nobody'", "alpha, beta"]),
    (["Hi.", "-v", "alpha&random"], ["cannot be blended"]),
    (["Hi.", "-p", "turbo"], ["Unknown preset 'turbo'", "ultra_fast"]),
    (["   "], ["empty"]),
    (["\U0001f600\U0001f600"], ["nothing pronounceable"]),
    (["..."], ["nothing pronounceable"]),
    (["word " * 30, "--text-split", "200,300"], ["tokens long", "tortoise-lab read"]),  # lengths the user chose
    (["Hi.", "--top-p", "2"], ["--top-p must be in (0, 1]"]),
    (["Hi.", "--temperature", "0"], ["--temperature must be greater than 0"]),
    (["Hi.", "--text-split", "300,200"], ["--text-split", "desired <= max"]),
    (["Hi.", "--text-split", "300"], ["--text-split", "200,300"]),
    (["Hi.", "--batch-size", "0"], ["--batch-size must be at least 1"]),
    (["Hi.", "--diffusion-iterations", "0"], ["--diffusion-iterations must be between 1"]),
    (["Hi.", "--candidates", "3"], ["--candidates must be between 1 and --num-autoregressive-samples"]),
    (["Hi.", "--max-mel-tokens", "1000"], ["--max-mel-tokens 1000", "at most"]),
    (["Hi.", "--temperature", "warm"], ["--temperature", "invalid float"]),
    (["Hi.", "--sampler", "euler"], ["--sampler", "dpm++2m"]),
    (["Hi.", "--device", "tpu"], ["Unknown device 'tpu'"]),
    (["Hi.", "-v", "alpha,beta", "-o", "x.wav"], ["one voice and one candidate"]),
    (["Hi.", "-o", "x.mp4"], ["give it a .wav"]),
    (["[unclosed Hi."], ["Unbalanced brackets", "never closed"]),
]


@pytest.mark.parametrize("argv, phrases", BAD_INPUTS, ids=[" ".join(a)[:40] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(argv, phrases, capsys, tmp_path):
    rc = run("speak", *TINY, *argv)  # after TINY, so the value under test wins
    _one_line_error(capsys, 2, rc, *phrases)
    assert not any(tmp_path.rglob("*.wav")) and not any(tmp_path.rglob("*.json"))


def test_out_of_memory_suggests_a_smaller_batch(capsys, tmp_path, monkeypatch):
    def out_of_memory(self, text, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TextToSpeech, "tts", out_of_memory)
    _one_line_error(capsys, 1, run("speak", "Hi.", *TINY), "out of memory", "--batch-size")
    assert not (tmp_path / cli.DEFAULT_OUTPUT_DIR).exists()


@pytest.mark.parametrize("interruption, code", [(OSError(28, "No space left on device"), 1),
                                               (KeyboardInterrupt(), 130)])
def test_a_write_failing_midway_leaves_nothing_half_written(interruption, code, capsys, tmp_path, monkeypatch):
    real_write = soundfile.SoundFile.write

    def write_half_then_fail(self, data):
        real_write(self, data[: len(data) // 2])
        raise interruption

    monkeypatch.setattr(soundfile.SoundFile, "write", write_half_then_fail)
    _one_line_error(capsys, code, run("speak", "Hi.", *TINY, "-O", "out"))
    assert _audio_files(tmp_path / "out") == []


def test_train_verb_hands_every_argument_to_the_training_command(capsys):
    assert cli.main(["train", "--help"]) == 0  # main() returns the training parser's exit code (af155e0)
    out = capsys.readouterr().out
    assert "--sentences" in out and "training sentences" in out and "k-means code book size" in out
    assert "decoders" in out and "crosseval" in out
    # The further training commands are reached through the verb too.
    assert cli.main(["train", "decoders", "--help"]) == 0
    assert "--diffusion-steps" in capsys.readouterr().out


# ------------------------------------------------------------------------- compare, assets, read's variants


def test_compare_prints_the_measures_and_writes_json_and_a_plot(capsys, tmp_path):
    _tone(tmp_path / "a.wav", 220, seconds=0.5, rate=24_000)
    _tone(tmp_path / "b.wav", 247, seconds=0.6, rate=24_000)
    assert run("compare", "a.wav", "b.wav") == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert set(printed) == {"log_mel_distance", "mcd_db", "duration_a_s", "duration_b_s", "duration_difference_s",
                            "snr_db", "identical", "speaker_similarity"}
    assert -1 <= float(printed["speaker_similarity"]) <= 1
    assert (printed["duration_difference_s"], printed["identical"]) == ("0.1000", "False")
    assert float(printed["mcd_db"]) > 0 and float(printed["log_mel_distance"]) > 0
    # --json writes the same measures; --plot a PNG of both spectrograms.
    assert run("compare", "a.wav", "b.wav", "--json", "m/measures.json", "--plot", "m/spectra.png") == 0
    assert "spectrograms: m/spectra.png" in capsys.readouterr().out
    measures = json.loads((tmp_path / "m" / "measures.json").read_text())
    assert {name: (f"{value:.4f}" if isinstance(value, float) else str(value))
            for name, value in measures.items()} == printed
    assert (tmp_path / "m" / "spectra.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["measures.json", "spectra.png"]


def test_assets_says_where_they_are_and_refuses_an_archive_that_is_not_the_pinned_one(capsys, tmp_path,
                                                                                         monkeypatch):
    from tortoise_lab import assets

    home = tmp_path / "home"  # assets "already unpacked" here, so nothing is fetched and the user's cache is untouched
    (home / "assets").mkdir(parents=True)
    for name in ("tokenizer.json", "mel_norms.pth"):
        (home / "assets" / name).write_text(f"{name} as unpacked before\n")
    (home / "speaker_encoder").mkdir()
    (home / "speaker_encoder" / "pretrained.pt").write_text("fetched before\n")
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(home))
    monkeypatch.setattr(assets, "_download_sdist", lambda into: pytest.fail("nothing is downloaded"))
    monkeypatch.setattr(assets, "_download_speaker_wheel", lambda into: pytest.fail("nothing is downloaded"))
    assert run("assets") == 0
    out = capsys.readouterr().out
    assert f"are in {home / 'assets'}" in out and f"is {home / 'speaker_encoder' / 'pretrained.pt'}" in out
    # An archive named on the command line is checked even so: one that is not the pinned release is refused.
    (tmp_path / "tortoise-tts-3.0.0.tar.gz").write_bytes(b"not the release\n")
    rc = run("assets", "--sdist", "tortoise-tts-3.0.0.tar.gz")
    _one_line_error(capsys, 3, rc, "tortoise-tts-3.0.0.tar.gz has sha256", assets.SDIST_SHA256, "not the tortoise")
    # So is a speaker-encoder wheel: the one fetched before stays.
    (tmp_path / assets.SPEAKER_WHEEL).write_bytes(b"not the wheel\n")
    rc = run("assets", "--speaker-wheel", assets.SPEAKER_WHEEL)
    _one_line_error(capsys, 3, rc, f"{assets.SPEAKER_WHEEL} has sha256", assets.SPEAKER_WHEEL_SHA256, "not the")
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == [
        "assets", "assets/mel_norms.pth", "assets/tokenizer.json", "speaker_encoder",
        "speaker_encoder/pretrained.pt"]  # the unpacked assets as they were
    assert (home / "assets" / "tokenizer.json").read_text() == "tokenizer.json as unpacked before\n"
    assert (home / "speaker_encoder" / "pretrained.pt").read_text() == "fetched before\n"


TWO_CHUNKS = "One chunk is here. | Another one is there."


def test_read_in_several_voices(capsys, tmp_path):
    (tmp_path / "story.txt").write_text(TWO_CHUNKS, encoding="utf-8")
    assert run("read", "story.txt", *TINY, "-v", "alpha,beta", "--seed", "5", "-O", "out") == 0
    out = capsys.readouterr().out
    for voice in ("alpha", "beta"):
        folder = tmp_path / "out" / "story" / voice
        assert _audio_files(folder) == ["0.json", "0.wav", "1.json", "1.wav", "combined.json", "combined.wav",
                                        "manifest.json"]
        manifest = read_json(folder / "manifest.json")
        assert (manifest["voice"], manifest["seed"], manifest["combined"]) == (voice, 5, "combined.wav")
        assert [read_json(folder / f"{i}.json")["voice"] for i in range(2)] == [voice, voice]
        assert f"{voice}: 2 chunks in out/story/{voice} (2 synthesised, 0 kept)" in out
    # The same chunk seeds in both voices, so the two readings differ only by the voice.
    assert [c["seed"] for c in read_json(tmp_path / "out/story/alpha/manifest.json")["chunks"]] == \
           [c["seed"] for c in read_json(tmp_path / "out/story/beta/manifest.json")["chunks"]]
    assert (tmp_path / "out/story/alpha/0.wav").read_bytes() != (tmp_path / "out/story/beta/0.wav").read_bytes()


def test_read_with_candidates_keeps_every_take_and_joins_each(capsys, tmp_path):
    (tmp_path / "story.txt").write_text(TWO_CHUNKS, encoding="utf-8")
    assert run("read", "story.txt", *TINY, "-v", "alpha", "--candidates", "2", "--seed", "6", "-O", "out") == 0
    folder = tmp_path / "out" / "story" / "alpha"
    assert _audio_files(folder) == sorted(
        [f"{stem}{take}.{suffix}" for stem in ("0", "1", "combined") for take in ("", "_candidate1")
         for suffix in ("wav", "json")] + ["manifest.json"])
    for k, take in enumerate(("", "_candidate1")):
        combined, _ = soundfile.read(str(folder / f"combined{take}.wav"), dtype="float32")
        parts = [soundfile.read(str(folder / f"{i}{take}.wav"), dtype="float32")[0] for i in range(2)]
        assert torch.equal(torch.from_numpy(combined), torch.cat([torch.from_numpy(p) for p in parts]))
        assert read_json(folder / f"combined{take}.json")["candidate"] == k
    assert (folder / "0.wav").read_bytes() != (folder / "0_candidate1.wav").read_bytes()


def test_read_after_the_text_is_edited_redoes_only_the_changed_chunk(capsys, tmp_path, monkeypatch):
    story = tmp_path / "story.txt"
    story.write_text(STORY, encoding="utf-8")
    command = ["read", "story.txt", *TINY, "-v", "alpha", "--seed", "12", "-O", "out"]
    assert run(*command) == 0
    folder = tmp_path / "out" / "story" / "alpha"
    names = [f"{i}.{suffix}" for i in range(4) for suffix in ("wav", "json")]
    before = {name: ((folder / name).read_bytes(), (folder / name).stat().st_mtime_ns) for name in names}
    combined = (folder / "combined.wav").read_bytes()

    edited = STORY_CHUNKS[:2] + ["Then comes a new third."] + STORY_CHUNKS[3:]
    story.write_text(" | ".join(edited), encoding="utf-8")
    real_tts, spoken = TextToSpeech.tts, []
    monkeypatch.setattr(TextToSpeech, "tts", lambda self, text, **kw: spoken.append(text) or real_tts(self, text, **kw))
    capsys.readouterr()
    assert run(*command) == 0
    assert spoken == ["Then comes a new third."]
    assert "4 chunks in out/story/alpha (1 synthesised, 3 kept)" in capsys.readouterr().out
    after = {name: ((folder / name).read_bytes(), (folder / name).stat().st_mtime_ns) for name in names}
    assert [name for name in names if after[name] != before[name]] == ["2.wav", "2.json"]  # the rest: same bytes
    assert read_json(folder / "2.json")["text"] == "Then comes a new third."
    assert [c["text"] for c in read_json(folder / "manifest.json")["chunks"]] == edited
    assert (folder / "combined.wav").read_bytes() != combined  # joined again, with the new chunk 2


def test_compare_says_how_much_each_file_sounds_like_a_voice(capsys, tmp_path, monkeypatch):
    from tortoise_lab.assets import builtin_voices_dir
    from tortoise_lab.voices import load_voice

    monkeypatch.setattr(voices, "voice_dirs", lambda extra=None: [builtin_voices_dir()])  # the real built-in voices
    for name, voice in (("tom.wav", "tom"), ("emma.wav", "emma")):
        soundfile.write(str(tmp_path / name), load_voice(voice).clips[0][0].numpy(), 22_050)
    assert run("compare", "tom.wav", "emma.wav", "--voice", "tom") == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert float(printed["speaker_similarity"]) < 0.8  # two speakers
    # tom's own clip (one of the voice's) sounds like tom, emma's does not, under both measures
    assert float(printed["a_voice_encoder"]) > 0.9 > float(printed["b_voice_encoder"])
    assert float(printed["a_voice_mfcc"]) > float(printed["b_voice_mfcc"])
    _one_line_error(capsys, 2, run("compare", "tom.wav", "emma.wav", "--voice", "nobody"), "Unknown voice 'nobody'")


def test_compare_of_identical_audio_writes_valid_json_and_its_plot_atomically(capsys, tmp_path):
    wav = 0.1 * torch.sin(torch.arange(24_000) / 10.0)[None]
    soundfile.write(str(tmp_path / "a.wav"), wav[0].numpy(), 24_000)
    rc = run("compare", "a.wav", "a.wav", "--json", "m.json", "--plot", "m.png")
    assert rc == 0, capsys.readouterr().err
    values = json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert values["snr_db"] == "inf"  # JSON has no Infinity: written as the benchmark's records write it
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "m.json", "m.png"]  # no scratch file left
