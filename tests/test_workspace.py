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
from tests.conftest import REPO
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


# ------------------------------------------------------------------------------------------------ listening

def test_players_lay_out_one_labelled_player_per_item():
    from tortoise_lab.workspace import players

    mono, stereo = 0.1 * torch.ones(1, 2400), 0.1 * torch.ones(2, 4410)
    html = players([("a <b>", mono, 24_000), ("stereo", stereo, 44_100), ("c", mono, 24_000)], columns=2).data
    assert html.count("<audio") == 3 and html.count("<tr>") == 2 and "a &lt;b&gt;" in html
    assert html.count("data:audio/wav;base64,") == 3
    assert players([("one", mono, 24_000), ("two", mono, 24_000)]).data.count("<tr>") == 1  # side by side
    with pytest.raises(ValueError, match="needs its sample rate"):
        players([("no rate", mono)])


def test_players_and_spectrograms_take_a_speech(embedded_tts):
    import matplotlib

    matplotlib.use("Agg")
    from tortoise_lab.workspace import players, plot_spectrograms

    speech = embedded_tts.tts("Hi.", voice=load_voice("espeak_us_m3"), preset="ultra_fast", seed=1, **SHORT)
    assert players([("take", speech)]).data.count("<audio") == 1
    figure = plot_spectrograms([("take", speech), ("stereo", torch.zeros(2, 8000) + 0.01, 16_000),
                                ("again", speech)], columns=2)
    assert len(figure.axes) == 4 + 3  # 2x2 panels (the fourth switched off) and a colour bar per spectrogram
    assert [axis.get_title() for axis in figure.axes[:3]] == ["take", "stereo", "again"]
    assert not figure.axes[3].axison


def test_before_and_after_pairs_each_clip_with_the_raw_span_it_came_from(tmp_path):
    from tortoise_lab.voices.prep import prepare_voice
    from tortoise_lab.workspace import before_and_after

    samples = REPO / "input-audio-samples"
    report = prepare_voice([samples / "hiss-white-20db.wav", samples / "reverb-stereo-48k.flac",
                            samples / "too-short.wav"], "v", tmp_path)
    pairs = before_and_after(report)
    assert [(p.source, p.clip) for p in pairs] == [("hiss-white-20db.wav", "01.wav"),
                                                    ("reverb-stereo-48k.flac", "02.wav")]
    assert [p.raw.shape[0] for p in pairs] == [1, 2] and [p.raw_rate for p in pairs] == [44_100, 48_000]
    for pair in pairs:  # the same span of time, before and after
        assert pair.prepared.shape[0] == 1 and pair.prepared_rate == 22_050
        assert abs(pair.raw.shape[-1] / pair.raw_rate - pair.prepared.shape[-1] / pair.prepared_rate) < 0.01


def test_diffusion_models_are_random_tiny_in_test_mode_or_without_weights(tmp_path):
    from tortoise_lab.workspace import choose_diffusion_models

    assert choose_diffusion_models(True).name == "tiny"
    missing = choose_diffusion_models(False, models_dir=str(tmp_path))
    assert missing.name == "tiny" and "noise" in missing.message and missing.models.diffusion is not None
    write_official_style(random_models("tiny", seed=1), tmp_path)
    assert choose_diffusion_models(False, models_dir=str(tmp_path), size="tiny").name == "official"


def test_sampler_sweep_decodes_the_same_codes_with_each_sampler():
    from tortoise_lab.workspace import SAMPLER_HEADERS, choose_diffusion_models, sampler_rows, sampler_sweep

    tts = choose_diffusion_models(True).tts(progress=False)
    results = sampler_sweep(tts, "Hi.", load_voice("espeak_us_m3"), ("ddpm", "dpm++2m"), (2, 3), seed=4, **SHORT)
    assert list(results) == [("ddpm", 2), ("ddpm", 3), ("dpm++2m", 2), ("dpm++2m", 3)]
    first = results["ddpm", 2]
    for (sampler, steps), speech in results.items():
        assert speech.settings["sampler"] == sampler and speech.settings["diffusion_iterations"] == steps
        assert all(torch.equal(a, b) for a, b in zip(first.codes, speech.codes))
    assert not torch.equal(first.wav, results["dpm++2m", 2].wav)
    rows = sampler_rows(results)
    assert [r[:2] for r in rows] == list(results) and all(len(r) == len(SAMPLER_HEADERS) for r in rows)


def test_read_aloud_reads_chunks_into_a_folder_and_resumes(embedded_tts, tmp_path):
    from tortoise_lab.outputs import load_wav
    from tortoise_lab.workspace import CHUNK_HEADERS, chunk_rows, read_aloud

    text = "The first part. | And the second part."  # '|' fixes the chunks, whatever the model's lengths
    result, notes = read_aloud(embedded_tts, text, "espeak_us_m3", tmp_path, seed=2, **SHORT)
    assert (tmp_path / "story.txt").read_text() == text and result.folder == tmp_path / "story" / "espeak_us_m3"
    assert (result.chunks, result.synthesised, notes) == (2, 2, [])
    rows = chunk_rows(result)
    assert [(r[0], r[3]) for r in rows] == [(0, "The first part."), (1, "And the second part.")]
    assert all(len(r) == len(CHUNK_HEADERS) for r in rows)
    combined, rate = load_wav(result.combined)
    assert combined.shape[-1] == sum(load_wav(result.folder / f"{i}.wav")[0].shape[-1] for i in range(2))
    again, _ = read_aloud(embedded_tts, text, "espeak_us_m3", tmp_path, seed=2, **SHORT)
    assert (again.synthesised, again.kept) == (0, 2)


def test_spectrograms_share_one_colour_scale():
    import matplotlib

    matplotlib.use("Agg")
    from tortoise_lab.workspace import plot_spectrograms

    tone = torch.sin(torch.arange(24_000) * 2 * torch.pi * 440 / 24_000)[None]
    figure = plot_spectrograms([("loud", 0.5 * tone, 24_000), ("quiet", 0.01 * tone, 24_000)])
    limits = {axis.get_images()[0].get_clim() for axis in figure.axes if axis.get_images()}
    assert len(limits) == 1


def test_read_resumes_at_the_model_sets_own_defaults(embedded_tts, tmp_path):
    """The embedded set's presets and limits change the settings a chunk is made with (2 samples, 300 codes): the
    manifest compares chunks with those, so a second run keeps every chunk instead of making them all again."""
    from tortoise_lab.workspace import read_aloud

    text = "A first short sentence. A second short sentence."
    result, _ = read_aloud(embedded_tts, text, "espeak_us_m3", tmp_path, seed=2, preset="ultra_fast")
    assert result.synthesised == 2
    again, _ = read_aloud(embedded_tts, text, "espeak_us_m3", tmp_path, seed=2, preset="ultra_fast")
    assert (again.synthesised, again.kept) == (0, 2)
