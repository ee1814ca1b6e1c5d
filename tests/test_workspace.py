"""tortoise_lab.workspace: the model a notebook runs, the environment rows, and the runs behind the tables."""

from __future__ import annotations

import pytest
import torch

from tortoise_lab.tools.bench import plot_records
from tortoise_lab.model_set import EMBEDDED_DESCRIPTION, embedded_models, random_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.voices import load_voice
from tortoise_lab.workspace import (PRESET_HEADERS, SWEEP_HEADERS, TEST_MODE_VARIABLE, choose_models,
                                    environment_report, markdown_table, option_sweep, preset_rows, preset_tour,
                                    sweep_rows)
from tortoise_lab import workspace
from tests.support.weights import write_official_style

SHORT = dict(num_autoregressive_samples=2, max_mel_tokens=40)


@pytest.fixture(scope="module")
def embedded_tts():
    return TextToSpeech(embedded_models(), progress=False)


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)])
def test_test_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(TEST_MODE_VARIABLE, value)
    assert workspace.test_mode() is expected


def test_test_mode_runs_the_embedded_model_even_with_official_weights(tmp_path):
    write_official_style(random_models("tiny", seed=1), tmp_path)
    choice = choose_models(True, models_dir=str(tmp_path), size="tiny")
    assert choice.name == "embedded" and choice.models.kind == "embedded"
    assert TEST_MODE_VARIABLE in choice.message and choice.default_voice == "espeak_us_m3"


def test_official_weights_are_used_when_present(tmp_path):
    write_official_style(random_models("tiny", seed=1), tmp_path)
    choice = choose_models(False, models_dir=str(tmp_path), size="tiny")
    assert choice.name == "official" and choice.models.kind == "official" and choice.default_voice == "tom"


def test_without_official_weights_the_embedded_model_speaks_and_says_why(tmp_path):
    choice = choose_models(False, models_dir=str(tmp_path))
    assert choice.name == "embedded" and choice.models.description == EMBEDDED_DESCRIPTION
    assert "tortoise-lab download" in choice.message


def test_environment_report_names_what_a_newcomer_checks(tmp_path):
    rows = dict(environment_report(str(tmp_path)))
    assert rows["torch"].startswith("2.14.1") and rows["torchaudio"].startswith("2.11.0")
    assert rows["official weights"].startswith("missing") and "tortoise-lab download" in rows["official weights"]
    assert rows["embedded model"] == "present" and rows["device chosen by --device auto"] in ("cpu", "cuda:0", "cuda")


def test_markdown_table_escapes_cell_pipes():
    table = markdown_table([("a|b", 1)], ("x", "y"))
    assert table.splitlines() == ["| x | y |", "|---|---|", "| a/b | 1 |"]


def test_preset_tour_keeps_the_presets_proportions(embedded_tts):
    results = preset_tour(embedded_tts, "Hi.", load_voice("espeak_us_m3"), ("ultra_fast", "fast"), seed=3,
                          sample_divisor=16, max_mel_tokens=40)
    assert [s.settings["num_autoregressive_samples"] for s in results.values()] == [1, 6]
    assert all(s.seed == 3 and s.settings["preset"] == p for p, s in results.items())
    rows = preset_rows(results)
    assert [r[0] for r in rows] == ["ultra_fast", "fast"] and all(len(r) == len(PRESET_HEADERS) for r in rows)


def test_option_sweep_compares_every_configuration_with_the_first(embedded_tts):
    records, speeches = option_sweep(embedded_tts, "Hi.", load_voice("espeak_us_m3"),
                                     ("baseline", "kv_cache", "half", "ultra_fast_int8_dpm"), "ultra_fast", seed=5,
                                     **SHORT)
    assert [r["config"] for r in records] == ["baseline", "kv_cache", "half", "ultra_fast_int8_dpm"]
    assert speeches["baseline"].settings["kv_cache"] is False and speeches["kv_cache"].settings["kv_cache"] is True
    assert records[1]["codes_equal_to_baseline"] and torch.equal(speeches["baseline"].wav, speeches["kv_cache"].wav)
    assert records[1]["vs_baseline"]["identical"] and records[2]["notes"]  # half on CPU says so
    assert speeches["ultra_fast_int8_dpm"].settings["int8"] is True
    rows = sweep_rows(records)
    assert [len(r) for r in rows] == [len(SWEEP_HEADERS)] * 4 and rows[1][3] == "yes"
    plot_records(records, title="sweep")  # the benchmark's chart takes the sweep's records


def test_option_sweep_names_the_configurations_on_a_typo(embedded_tts):
    with pytest.raises(ValueError, match="Unknown configuration 'kv-cache'. Available: baseline"):
        option_sweep(embedded_tts, "Hi.", load_voice("espeak_us_m3"), ("kv-cache",), "ultra_fast", seed=1)


def test_audio_checks_tell_speech_from_silence_noise_and_a_cut_take(tmp_path):
    import subprocess

    import soundfile

    from tortoise_lab.audio import load_audio
    from tortoise_lab.workspace import audio_checks

    text = "The quick brown fox jumps over the lazy dog."
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "s.wav"), text], check=True)
    speech = load_audio(tmp_path / "s.wav", 24_000)
    assert audio_checks(speech, text, 24_000) == {"audible": True, "speech band": True, "duration fits the text": True}
    silence = torch.zeros_like(speech)
    assert not audio_checks(silence, text, 24_000)["audible"]
    noise = 0.1 * torch.randn(speech.shape, generator=torch.Generator().manual_seed(0))
    assert audio_checks(noise, text, 24_000)["audible"] and not audio_checks(noise, text, 24_000)["speech band"]
    cut = speech[:, : speech.shape[-1] // 8]
    assert not audio_checks(cut, text, 24_000)["duration fits the text"]
    assert soundfile.info(str(tmp_path / "s.wav")).frames > 0
