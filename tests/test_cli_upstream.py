"""Scripts written for upstream tortoise-tts run unchanged: its flag spellings are rewritten into ours
(tortoise_lab/cli/upstream.py). The commands are upstream README's own examples, made cheap with --tiny."""

from __future__ import annotations

import json

import pytest

from tortoise_lab.cli import main
from tortoise_lab.cli.upstream import ours

SMALL = ["--tiny", "--max-mel-tokens", "8", "--num-autoregressive-samples", "1", "--diffusion-iterations", "2"]


def test_spellings_are_rewritten():
    assert ours(["speak", "--text", "Hi.", "--kv_cache", "False", "--half=True", "--model_dir", "m"]) == [
        "speak", "--no-kv-cache", "--half", "--models-dir", "m", "Hi."]
    assert ours(["read", "--textfile=story.txt", "--output_path", "o", "--use_deepspeed", "no"]) == [
        "read", "--output-dir", "o", "--no-deepspeed", "story.txt"]
    assert ours(["speak", "Hello", "--voice", "tom"]) == ["speak", "Hello", "--voice", "tom"]  # ours untouched


def test_upstream_do_tts_example_runs(tmp_path, capsys):
    # upstream README: python tortoise/do_tts.py --text "I'm going to speak this" --voice random --preset fast
    code = main(["speak", "--text", "I'm going to speak this", "--voice", "random", "--preset", "fast",
                 "--output_path", str(tmp_path), *SMALL])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "random.json").read_text())["text"] == "I'm going to speak this"


def test_upstream_switches_mean_what_they_say(tmp_path, capsys):
    # upstream's type=bool makes "--kv_cache False" true; here False is false
    code = main(["speak", "--text", "Switches.", "--kv_cache", "False", "--half", "True", "--use_deepspeed", "False",
                 "--produce_debug_state", "True", "--cvvp_amount", "0", "--model_dir", str(tmp_path / "m"),
                 "--output_path", str(tmp_path), *SMALL])
    assert code == 0, capsys.readouterr().err
    settings = json.loads((tmp_path / "random.json").read_text())["settings"]
    assert (settings["kv_cache"], settings["half"], settings["deepspeed"]) == (False, True, False)
    assert (tmp_path / "random.debug.json").is_file()


def test_upstream_read_example_runs(tmp_path, capsys, monkeypatch):
    # upstream README: python tortoise/read.py --textfile <your text to be read> --voice random
    monkeypatch.chdir(tmp_path)
    (tmp_path / "story.txt").write_text("First part. | Second part.")
    code = main(["read", "--textfile", "story.txt", "--voice", "random", "--output_path", "out", *SMALL])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "story" / "random" / "combined.wav").is_file()


@pytest.mark.parametrize("argv", [["speak", "--text", "Hi.", "--half", "maybe"], ["speak", "Hi.", "--kv_cache"]])
def test_a_bad_switch_value_is_one_sentence(argv, capsys):
    assert main(argv + SMALL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("True or False" in err[0] or "needs a value" in err[0])
