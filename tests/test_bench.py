"""Smoke tests of the benchmark: quick mode runs on tiny models and writes its files. It is not a speed test.

One quick run with the reference (shared by most tests) and one without; the tiny weights are made once into a
module-scoped folder by the reference environment, as the full benchmark makes the official-size ones.
"""

import json
import math

import pytest

from tortoise_lab import cli
from tortoise_lab.tools.bench import CONFIGS, FASTER_PRESET, markdown_table, run_benchmark

pytestmark = pytest.mark.slow

LOSSLESS = ("baseline", "kv_cache_plain", "kv_cache", "compile")  # fp32 on CPU: our baseline's codes, exactly
OURS = ("baseline", "kv_cache_plain", "kv_cache", FASTER_PRESET)
REQUIRED = {"impl": str, "config": str, "preset": str, "median_s": float, "peak_mb": float, "times_s": list,
            "stages_s": dict, "device": str, "notes": list, "repeats": int, "max_mel_tokens": int}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-weights")


@pytest.fixture(scope="module")
def with_reference(weights_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-ref")
    code = cli.main(["bench", "--quick", "--against-reference", "--configs", ",".join(OURS), "--out-dir", str(out),
                     "--weights-dir", str(weights_dir)])
    return code, out


def test_quick_run_with_reference_writes_json_markdown_and_chart(with_reference):
    code, out = with_reference
    assert code == 0
    records = json.loads((out / "bench.json").read_text())
    assert [(r["impl"], r["config"]) for r in records] == (
        [("tortoise_lab", name) for name in OURS] + [("reference", "baseline"), ("reference", "kv_cache")])
    for record in records:
        assert "error" not in record
        for key, kind in REQUIRED.items():
            assert isinstance(record[key], kind), (record["config"], key)
        assert record["impl"] in ("tortoise_lab", "reference")
        assert set(record["stages_s"]) >= {"conditioning", "autoregressive", "ranking", "ar_latents",
                                           "diffusion_and_vocoder"}
        assert record["median_s"] > 0 and record["peak_mb"] > 0 and record["ar_tokens_per_s"] > 0
        assert record["rtf"] > 0 and len(record["times_s"]) == record["repeats"] == 1
        assert isinstance(record["codes_equal_to_baseline"], bool)
        assert (out / "wavs" / f"{record['impl']}-{record['config']}.wav").is_file()
        assert record["speedup_vs_reference_kv_off"] > 0 and record["speedup_vs_reference_kv_on"] > 0
    table = (out / "bench.md").read_text()
    assert all(f"| {name} | tortoise_lab |" in table for name in OURS) and "| baseline | reference |" in table
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lossless_options_keep_the_codes_and_lossy_ones_say_what_they_cost(with_reference):
    _, out = with_reference
    ours = {r["config"]: r for r in json.loads((out / "bench.json").read_text()) if r["impl"] == "tortoise_lab"}
    for name, record in ours.items():
        if name in LOSSLESS:
            assert record["codes_equal_to_baseline"] is True, name
    plain = ours["kv_cache_plain"]["vs_baseline"]  # the cache alone: the same audio, bit for bit
    assert plain["identical"] and plain["snr_db"] == "inf" and plain["mcd_db"] == 0
    # prepacked weights add in another order: the same audio within fp32 rounding
    kv = ours["kv_cache"]["vs_baseline"]
    assert ours["kv_cache"]["used"]["prepack"] and not ours["kv_cache_plain"]["used"]["prepack"]
    assert kv["identical"] or (kv["snr_db"] > 60 and kv["mcd_db"] < 0.01)
    lossy = ours[FASTER_PRESET]["vs_baseline"]  # int8 and 10 DPM++ steps: a measured, non-zero difference
    assert not lossy["identical"] and lossy["log_mel_distance"] > 0 and math.isfinite(lossy["mcd_db"])
    assert ours[FASTER_PRESET]["settings"]["int8"] is True and ours[FASTER_PRESET]["settings"]["sampler"] == "dpm++2m"


def test_reference_without_kv_cache_gives_our_codes(with_reference):
    _, out = with_reference
    records = {(r["impl"], r["config"]): r for r in json.loads((out / "bench.json").read_text())}
    assert records[("reference", "baseline")]["codes_equal_to_baseline"] is True  # parity, on the same weights
    assert records[("reference", "baseline")]["vs_baseline"]["snr_db"] > 60


def test_the_fast_path_and_its_stream_beside_upstreams_api_fast(weights_dir, tmp_path):
    out = tmp_path / "fast"
    assert cli.main(["bench", "--quick", "--against-reference", "--configs", "hifigan,stream", "--max-mel-tokens", "50",
                     "--out-dir", str(out), "--weights-dir", str(weights_dir)]) == 0
    records = {(r["impl"], r["config"]): r for r in json.loads((out / "bench.json").read_text())}
    assert set(records) == {(impl, config) for impl in ("tortoise_lab", "reference") for config in ("hifigan", "stream")}
    assert all("error" not in r and r["num_autoregressive_samples"] == 1 for r in records.values())
    whole, stream = records[("tortoise_lab", "hifigan")], records[("tortoise_lab", "stream")]
    # The stream draws the whole-utterance run's codes and its pieces join into that audio (fp32 rounding only).
    assert stream["codes_equal_to_baseline"] is True and stream["vs_baseline"]["snr_db"] > 100
    assert 0 < stream["first_audio_s"] < stream["median_s"] and whole["first_audio_s"] == whole["median_s"]
    assert [piece["codes"] for piece in stream["pieces"]] == [8, 28, 48, 50]  # FIRST_CHUNK_CODES, then every 20
    assert whole["stages_s"]["hifigan"] > 0 and whole["stages_s"]["diffusion_and_vocoder"] == 0
    upstream_stream = records[("reference", "stream")]
    assert upstream_stream["pieces"] and upstream_stream["pieces"][-1]["codes"] == 50  # one chunk: its first waits for 60
    for config in ("hifigan", "stream"):
        ours, theirs = records[("tortoise_lab", config)], records[("reference", config)]
        assert ours["speedup_vs_reference"] == pytest.approx(theirs["median_s"] / ours["median_s"])
        assert ours["first_audio_speedup_vs_reference_stream"] == pytest.approx(
            upstream_stream["first_audio_s"] / ours["first_audio_s"])
        assert (out / "wavs" / f"reference-{config}.wav").is_file()
    assert (out / "pieces.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| stream | tortoise_lab |" in (out / "bench.md").read_text()


def test_quick_run_without_reference_writes_the_json_file(weights_dir, tmp_path):
    path = tmp_path / "records.json"
    records = run_benchmark(quick=True, configs=["kv_cache"], json_path=path, weights_dir=weights_dir, log=None)
    assert json.loads(path.read_text()) == json.loads(json.dumps(records))
    assert [(r["impl"], r["config"]) for r in records] == [("tortoise_lab", "kv_cache")]
    assert records[0]["codes_equal_to_baseline"] is None  # no baseline in this run: nothing to compare with
    assert records[0]["speedup_vs_reference_kv_on"] is None and not (tmp_path / "bench.md").exists()


@pytest.mark.parametrize("argv, message", [
    (["--configs", "kv_cache,turbo"], "Unknown config 'turbo'. Available: baseline"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--max-mel-tokens", "0"], "--max-mel-tokens must be between 1 and"),
    (["--preset", "turbo"], "Unknown preset 'turbo'"),
    (["--against-reference", "--preset", FASTER_PRESET], "The reference runs only upstream's presets"),
    (["--embedded"], "bench --embedded times the embedded model's defaults and takes no --quick; drop it."),
    (["--steps", "--configs", "kv_cache"], "bench --steps times pieces of the work on random weights and takes no "
                                           "--configs; drop it."),
    (["--steps", "--embedded"], "bench --embedded, --steps and --cluster are different benchmarks; run one at a time."),
    (["--cluster", "--steps"], "bench --embedded, --steps and --cluster are different benchmarks; run one at a time."),
])
def test_a_bad_option_is_one_clear_error(argv, message, capsys):
    assert cli.main(["bench", "--quick", *argv]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_failed_configuration_is_a_row_not_a_crash():
    table = markdown_table([{"impl": "tortoise_lab", "config": "compile", "error": "compile failed: boom"}])
    assert "| compile | tortoise_lab | failed |" in table and "boom" in table


def test_every_config_is_documented_and_the_faster_preset_is_a_preset():
    from tortoise_lab.config import PRESETS

    assert FASTER_PRESET in PRESETS and all(config.description for config in CONFIGS.values())


def test_the_embedded_benchmark_times_the_defaults_beside_the_previous_ones(tmp_path):
    from tortoise_lab.model_set import EMBEDDED_PRESETS
    from tortoise_lab.tools.bench.embedded import run_embedded_benchmark

    text = "The first short sentence. The second short sentence."
    record = run_embedded_benchmark(text, repeats=1, out_dir=tmp_path, log=lambda message: None)
    before, after = record["configurations"]["previous defaults"], record["configurations"]["defaults"]
    assert before["samples"] == 96 and before["chunks"] == 1  # the official fast preset, upstream's chunk lengths
    assert after["samples"] == EMBEDDED_PRESETS["fast"]["num_autoregressive_samples"] and after["chunks"] == 2
    assert record["speedup"] == pytest.approx(before["median_s"] / after["median_s"], rel=0.01)
    assert after["rtf"] == pytest.approx(after["median_s"] / after["audio_s"], rel=0.01)
    assert 0 < after["first_audio_s"] < after["median_s"]  # streamed: the first of the two sentences came first
    assert json.loads((tmp_path / "bench-embedded.json").read_text())["configurations"].keys() == {
        "previous defaults", "defaults"}
    assert "as fast as the previous defaults" in (tmp_path / "bench-embedded.md").read_text()
    assert (tmp_path / "paragraph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # espeak-ng's and both spectrograms
    with pytest.raises(ValueError, match="at least 1"):
        run_embedded_benchmark(text, repeats=0)


def test_the_step_benchmark_times_each_change_before_and_after(tmp_path, capsys):
    assert cli.main(["bench", "--steps", "--quick", "--repeats", "1", "--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "bench-steps.json").read_text())
    pieces = [row["piece"] for row in record["rows"]]
    assert pieces[:4] == ["AR decode step, batch 16", "AR decode step, batch 1", "AR decode step, batch 1",
                          "AR latent pass, 1 row of 48 codes"]
    assert pieces[4].startswith("guided diffusion step") and len(pieces) == 5
    assert [row["after"] for row in record["rows"][1:3]] == ["prepacked weights (for 1 row)", "prepacked for 1 row"]
    for row in record["rows"]:
        assert row["before_ms"] > 0 and row["after_ms"] > 0 and row["piece"] in printed
        assert row["max_difference"] < 1e-4  # every change keeps the numbers, within fp32 rounding
    assert set(record["profiles"]) == {"plain", "prepacked"}
    assert "aten::addmm" in record["profiles"]["plain"] and "mkldnn" in record["profiles"]["prepacked"]
    table = (tmp_path / "bench-steps.md").read_text()
    assert "| AR decode step, batch 16 | plain weights | prepacked weights (for 16 rows) |" in table
