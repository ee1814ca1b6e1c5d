"""`tortoise-lab voices list | prepare | match`, in process."""

from pathlib import Path

import pytest

from tortoise_lab.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "input-audio-samples"


def test_list_shows_clips_and_seconds(capsys):
    assert main(["voices", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["voice", "clips", "seconds"]
    tom = next(line for line in out.splitlines() if line.startswith("tom "))
    assert int(tom.split()[1]) >= 3 and float(tom.split()[2]) > 5


def test_prepare_then_list_then_match(tmp_path, capsys):
    voices = tmp_path / "voices"
    assert main(["voices", "prepare", str(SAMPLES / "hiss-white-20db.wav"), str(SAMPLES / "long-take-25s.flac"),
                 "me", "--voices-dir", str(voices)]) == 0
    assert (voices / "me" / "prepare-report.md").exists() and sorted(voices.glob("me/*.wav"))
    capsys.readouterr()
    assert main(["voices", "list", "-V", str(voices)]) == 0
    assert any(line.startswith("me ") for line in capsys.readouterr().out.splitlines())
    out_dir = tmp_path / "search"
    assert main(["voices", "match", "me", "-V", str(voices), "--text", "Hello.", "--seeds", "1-2", "--tiny", "-q",
                 "--max-mel-tokens", "10", "--num-autoregressive-samples", "2", "--diffusion-iterations", "2",
                 "-O", str(out_dir)]) == 0
    assert (out_dir / "me" / "ranking.csv").exists() and len(list((out_dir / "me").glob("seed-*.wav"))) == 2
    assert "best seed" in capsys.readouterr().out


def test_prepare_refuses_to_overwrite(tmp_path, capsys):
    args = ["voices", "prepare", str(SAMPLES / "hiss-white-20db.wav"), "me", "--voices-dir", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_match_with_bad_seeds_is_one_sentence(capsys):
    assert main(["voices", "match", "tom", "--text", "Hi.", "--seeds", "x-y", "--tiny"]) == 2
    assert "seeds" in capsys.readouterr().err


def test_match_without_official_weights_falls_back_to_the_embedded_model(tmp_path, capsys):
    out_dir = tmp_path / "search"
    code = main(["voices", "match", "espeak_us_m3", "--text", "Hi there.", "--seeds", "1-2", "--models-dir",
                 str(tmp_path / "no-weights"), "--num-autoregressive-samples", "2", "--device", "cpu",
                 "-O", str(out_dir)])
    out = capsys.readouterr().out
    assert code == 0 and "embedded tiny model" in out and "ranked by encoder; best seed" in out and "| encoder | mfcc |" in out
    assert len(list((out_dir / "espeak_us_m3").glob("seed-*.wav"))) == 2


def test_match_with_the_official_model_asked_for_says_how_to_get_it(tmp_path, capsys):
    code = main(["voices", "match", "espeak_us_m3", "--text", "Hi.", "--model", "official", "--models-dir",
                 str(tmp_path / "no-weights"), "-O", str(tmp_path / "search")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "tortoise-lab download" in err[0]


def test_match_by_cvvp_without_it_is_one_sentence(tmp_path, capsys):
    code = main(["voices", "match", "espeak_us_m3", "--text", "Hi.", "--seeds", "1", "--model", "embedded",
                 "--rank-by", "cvvp", "-q", "-O", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no CVVP" in err and len(err.strip().splitlines()) == 1


def test_similarity_table_of_two_voices(capsys):
    assert main(["voices", "similarity", "tom", "pat"]) == 0
    out = capsys.readouterr().out
    assert "2 voices, 8 clips" in out
    encoder = next(line for line in out.splitlines() if line.startswith("| encoder |"))
    assert encoder.endswith("| 100% (8 of 8) |")
    assert main(["voices", "similarity", "tom"]) == 2
    assert "at least two voices" in capsys.readouterr().err
