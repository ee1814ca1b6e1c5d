"""--tiny is for trying the pipeline, so it works with the defaults: the model's limits shape the defaults (the
preset's 500 codes become its 60, the default text split shrinks so every chunk fits its 39 text tokens), each
change is noted in the sidecar, and only a value the user typed beyond a limit is refused."""

from __future__ import annotations

import json

import pytest

from tortoise_lab.cli import main

pytestmark = pytest.mark.slow

LONG_TEXT = ("This is a much longer sentence of ordinary length, which a user might type to try the pipeline. "
             "It goes on for a second sentence, so that the text is more than the tiny model takes at once.")


def test_long_text_with_the_tiny_model_and_default_limits_is_split_to_fit(tmp_path, capsys):
    code = main(["speak", "--tiny", "--seed", "5", "-p", "ultra_fast", LONG_TEXT, "-O", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    sidecar = json.loads((tmp_path / "random.json").read_text())
    assert len(sidecar["chunks"]) > 2 and " ".join(sidecar["chunks"]).split() == LONG_TEXT.split()  # nothing lost
    assert sidecar["settings"]["max_mel_tokens"] == 60
    assert any("to fit this model's limit of 39 text tokens" in note for note in sidecar["notes"])
    assert any("max_mel_tokens is 60" in note for note in sidecar["notes"])
    assert "max_mel_tokens is 60" in err  # and said on the terminal


def test_a_typed_limit_beyond_the_tiny_model_is_refused_in_one_sentence(tmp_path, capsys):
    code = main(["speak", "--tiny", "Hi.", "--max-mel-tokens", "61", "-O", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["tortoise-lab: --max-mel-tokens 61 is more than this model can draw; use at most 60."]
    assert not list(tmp_path.iterdir())
