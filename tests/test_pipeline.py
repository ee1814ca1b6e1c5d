"""The synthesis pipeline on tiny random models: determinism, options that must not change the output, stages."""

import pytest
import torch

from tortoise_lab import pipeline
from tortoise_lab.config import SAMPLERS, Settings
from tortoise_lab.fast import deepspeed_off_cuda_note
from tortoise_lab.model_set import random_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.stages.decode import END_CODES, fix_autoregressive_output, trim_at_calm
from tortoise_lab.stages.rerank import CALM_TOKEN
from tortoise_lab.voices import Voice
from tests.support.tiny import tts  # noqa: F401 (fixture)

FAST = dict(num_autoregressive_samples=3, max_mel_tokens=16, diffusion_iterations=3)


@pytest.fixture(scope="module")
def voice():
    g = torch.Generator().manual_seed(0)
    return Voice("synthetic", clips=[0.1 * torch.randn(1, 40_000, generator=g), 0.1 * torch.randn(1, 25_000, generator=g)])


def speak(tts, voice, **overrides):
    return tts.tts("Hello there, friend.", voice=voice, preset="ultra_fast", seed=7, **{**FAST, **overrides})


def test_same_seed_same_audio_and_different_seed_differs(tts, voice):
    a, b = speak(tts, voice), speak(tts, voice)
    assert torch.equal(a.wav, b.wav) and a.seed == b.seed == 7
    c = tts.tts("Hello there, friend.", voice=voice, preset="ultra_fast", seed=8, **FAST)
    assert not torch.equal(a.wav, c.wav)


def test_kv_cache_changes_neither_codes_nor_audio(tts, voice):
    cached, uncached = speak(tts, voice, kv_cache=True), speak(tts, voice, kv_cache=False)
    assert all(torch.equal(x, y) for x, y in zip(cached.codes, uncached.codes))
    assert torch.equal(cached.wav, uncached.wav)


def test_no_seed_draws_one_and_records_it(tts, voice):
    speech = tts.tts("Hi.", voice=voice, preset="ultra_fast", **FAST)
    assert isinstance(speech.seed, int) and speech.metadata()["seed"] == speech.seed
    again = tts.tts("Hi.", voice=voice, preset="ultra_fast", seed=speech.seed, **FAST)
    assert torch.equal(again.wav, speech.wav)


def test_fewer_samples_than_the_batch_size_works(tts, voice):
    speech = speak(tts, voice, num_autoregressive_samples=2, batch_size=16)
    assert speech.scores[0].shape == (2,)


def test_batches_that_do_not_divide_the_samples(tts, voice):
    speech = speak(tts, voice, num_autoregressive_samples=5, batch_size=2)
    assert speech.scores[0].shape == (5,)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_gives_audio(tts, voice, sampler):
    speech = speak(tts, voice, sampler=sampler, cond_free=True)
    assert speech.wav.shape[0] == 1 and speech.wav.shape[1] > 0 and torch.isfinite(speech.wav).all()
    assert speech.wav.abs().max() <= 1


def test_k_candidates_are_the_best_scored_rows_best_first(tts, voice, monkeypatch):
    seen = {}
    score = tts.models.ranker.score

    def recording_score(codes, *args):  # keep every sampled row and its score, as the ranker saw them
        seen["codes"], seen["scores"] = codes.clone(), score(codes, *args)
        return seen["scores"]

    monkeypatch.setattr(tts.models.ranker, "score", recording_score)
    speech = speak(tts, voice, num_autoregressive_samples=6, candidates=3)
    assert len(speech.candidates) == 3 and torch.equal(speech.candidates[0], speech.wav)
    assert torch.equal(speech.scores[0], seen["scores"].cpu())
    rows = [next(i for i, row in enumerate(seen["codes"]) if torch.equal(row.cpu(), chosen))
            for chosen in speech.codes[0]]  # which sampled row each candidate came from
    chosen_scores = seen["scores"][rows]
    others = [s for i, s in enumerate(seen["scores"].tolist()) if i not in rows]
    assert chosen_scores.tolist() == sorted(chosen_scores.tolist(), reverse=True)  # best first
    assert min(chosen_scores.tolist()) >= max(others)  # no unchosen row scored higher than a chosen one


def test_long_text_is_split_and_joined(tts, voice):
    text = " ".join(["This is a sentence that goes on."] * 4)
    speech = tts.tts(text, voice=voice, preset="ultra_fast", seed=1, text_split=(20, 35), **FAST)
    assert len(speech.chunks) > 1 and len(speech.codes) == len(speech.chunks)
    single = [tts.tts(c, voice=voice, preset="ultra_fast", seed=1, **FAST).wav.shape[-1] for c in speech.chunks[:1]]
    assert speech.wav.shape[-1] > single[0]


def test_random_voice_and_cvvp_blend(tts, voice):
    random_voice = tts.tts("Hi.", voice=Voice("random"), preset="ultra_fast", seed=2, **FAST)
    assert random_voice.voice == "random" and random_voice.wav.numel() > 0
    plain, blended = speak(tts, voice), speak(tts, voice, cvvp_amount=0.5)
    assert not torch.equal(plain.scores[0], blended.scores[0])


def test_timings_cover_every_stage(tts, voice):
    timings = speak(tts, voice).timings
    assert {"conditioning", "autoregressive", "ranking", "ar_latents", "diffusion_and_vocoder", "total"} <= set(timings)


def test_settings_follow_the_preset_and_overrides():
    settings = Settings.from_preset("standard", temperature=0.5)
    assert (settings.num_autoregressive_samples, settings.diffusion_iterations, settings.temperature) == (256, 200, 0.5)
    assert Settings.from_preset("ultra_fast").cond_free is False


@pytest.mark.parametrize("overrides, message", [
    (dict(top_p=2.0), "top_p"), (dict(temperature=0), "temperature"), (dict(sampler="euler"), "Available"),
    (dict(candidates=5, num_autoregressive_samples=2), "candidates"), (dict(diffusion_iterations=0), "diffusion"),
    (dict(cvvp_amount=1.5), "cvvp_amount"), (dict(text_split=(300, 200)), "text_split"), (dict(bogus=1), "Unknown"),
])
def test_invalid_settings_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_preset("fast", **overrides)


def test_inference_options_are_nested_in_settings_and_flat_in_their_record():
    settings = Settings.from_preset("fast", kv_cache=False, int8=True, temperature=0.5)
    assert (settings.inference.kv_cache, settings.inference.int8, settings.temperature) == (False, True, 0.5)
    record = settings.to_dict()
    assert "inference" not in record and (record["kv_cache"], record["int8"], record["device"]) == (False, True, None)
    assert list(record) == [*Settings.names()]  # one flat record, the settings then the options
    variant = settings.replace(kv_cache=True, batch_size=None)
    assert variant.inference.kv_cache and variant.inference.int8 and settings.inference.kv_cache is False
    with pytest.raises(ValueError, match="top_p"):
        settings.replace(top_p=0)


def test_the_sidecar_settings_of_a_run_are_its_flat_record(tts, voice):
    speech = speak(tts, voice, kv_cache=False)
    assert speech.settings["kv_cache"] is False and "inference" not in speech.settings


def test_unknown_preset_lists_them():
    with pytest.raises(ValueError, match="ultra_fast, fast, standard, high_quality"):
        Settings.from_preset("turbo")


@pytest.mark.parametrize("text", ["", "   ", "\u200b"])
def test_empty_or_unpronounceable_text(tts, voice, text):
    with pytest.raises(ValueError, match="text"):
        tts.tts(text, voice=voice, preset="ultra_fast", seed=1, **FAST)


def test_text_too_long_for_the_model_is_split_to_fit_unless_the_user_chose_the_lengths(tts, voice):
    limit = tts.models.max_text_tokens
    speech = tts.tts("word " * 30, voice=voice, preset="ultra_fast", seed=1, **FAST)  # 60 tokens, limit 40
    assert len(speech.chunks) > 1 and all(len(tts.tokenizer.model_ids(c)) <= limit for c in speech.chunks)
    assert " ".join(speech.chunks).split() == ["word"] * 30  # no text lost
    assert any(f"limit of {limit - 1} text tokens" in note for note in speech.notes)
    with pytest.raises(ValueError, match="split it"):  # lengths the user chose are theirs: refused, not changed
        tts.tts("word " * 30, voice=voice, preset="ultra_fast", seed=1, text_split=(200, 300), **FAST)


def test_a_preset_value_beyond_the_model_is_clamped_and_noted_but_a_chosen_one_is_refused(tts, voice):
    limit = tts.models.max_mel_tokens
    speech = tts.tts("Hi.", voice=voice, preset="ultra_fast", seed=1, num_autoregressive_samples=2,
                     diffusion_iterations=2)  # the preset asks for 500 codes
    assert speech.settings["max_mel_tokens"] == limit and speech.codes[0].shape[1] <= limit
    assert any(f"max_mel_tokens is {limit}" in note for note in speech.notes)
    with pytest.raises(ValueError, match=f"use at most {limit}"):
        tts.tts("Hi.", voice=voice, preset="ultra_fast", seed=1, max_mel_tokens=limit + 1)


def test_fix_up_matches_upstreams_rule():
    stop = 8193
    codes = torch.tensor([5, 6, 7, stop, 9, stop, 11, 12, 13, 14])
    fixed, stopped = fix_autoregressive_output(codes, stop)
    assert stopped
    assert fixed.tolist() == [5, 6, 7, CALM_TOKEN, CALM_TOKEN, CALM_TOKEN, CALM_TOKEN, *END_CODES]
    unchanged, stopped = fix_autoregressive_output(codes[:3], stop)
    assert not stopped and torch.equal(unchanged, codes[:3])


def test_trim_at_calm_cuts_after_a_long_run():
    codes = torch.tensor([1, 2] + [CALM_TOKEN] * 12 + [3])
    assert trim_at_calm(codes) == 2 + 8  # the ninth calm code in a row
    assert trim_at_calm(torch.tensor([CALM_TOKEN] * 8 + [1])) == 9


def test_speed_options_on_cpu_keep_the_output_and_say_why(tts, voice):
    baseline = speak(tts, voice)
    for options in (dict(half=True), dict(deepspeed=True), dict(half=True, deepspeed=True, kv_cache=False)):
        speech = speak(tts, voice, **options)
        assert torch.equal(speech.wav, baseline.wav), options
        if options.get("half"):
            assert any("half precision" in n.lower() for n in speech.notes)
        if options.get("deepspeed"):
            assert deepspeed_off_cuda_note("cpu") in speech.notes


@pytest.mark.slow
def test_compiled_decode_step_keeps_the_output(tts, voice):
    baseline = speak(tts, voice)
    compiled = speak(tts, voice, compile=True)
    assert all(torch.equal(a, b) for a, b in zip(baseline.codes, compiled.codes))
    assert torch.equal(compiled.wav, baseline.wav)


def test_unbalanced_brackets_fail_before_any_work(tts, voice, monkeypatch):
    monkeypatch.setattr(pipeline, "sample_codes", lambda *a, **k: pytest.fail("sampled anyway"))
    with pytest.raises(ValueError, match="bracket"):
        tts.tts("Hello [there.", voice=voice, preset="ultra_fast", seed=1, **FAST)


def test_redaction_uses_the_aligner(voice):
    cut = []

    class FakeAligner:
        def redact(self, wav, text, sample_rate):
            cut.append(text)
            return wav[:, : wav.shape[-1] // 2]

    tts = TextToSpeech(random_models("tiny", seed=0), aligner=FakeAligner(), progress=False)
    whole = tts.tts("[I am] here.", voice=voice, preset="ultra_fast", seed=1, redact=False, **FAST)
    redacted = tts.tts("[I am] here.", voice=voice, preset="ultra_fast", seed=1, **FAST)
    assert cut == ["[I am] here."] and redacted.wav.shape[-1] == whole.wav.shape[-1] // 2


def test_int8_on_cpu_runs_int8_layers_in_the_decoder_and_clvp(tts, voice):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    settings = Settings.from_preset("ultra_fast", int8=True, **FAST)
    decoder, _ = tts.prepare(settings)
    calls = {"decoder": 0, "clvp": 0}
    int8_layers = {"decoder": [m for m in decoder.model.modules() if isinstance(m, DynamicInt8Linear)],
                   "clvp": [m for m in tts.models.ranker._model(settings.inference, tts.device).modules()
                            if isinstance(m, DynamicInt8Linear)]}
    for part, layers in int8_layers.items():
        assert layers, f"no int8 layers in the {part}"
        for layer in layers:
            layer.register_forward_hook(lambda *a, part=part: calls.__setitem__(part, calls[part] + 1))
    speech = tts.tts("Hello there, friend.", voice=voice, seed=7, settings=settings)
    assert calls["decoder"] > 0 and calls["clvp"] > 0  # the quantized copies did the work
    assert decoder.used["int8"] and speech.settings["int8"] is True
    assert not any("int8" in n for n in speech.notes)  # it is used on CPU, so nothing to explain
    assert not any(isinstance(m, DynamicInt8Linear) for m in tts.models.gpt.modules())  # the original is untouched


def test_a_prepared_decoder_that_went_stale_is_built_again(monkeypatch):
    """DeepSpeed keeps one model's state per process: after another DeepSpeed decoder is built, an older one
    refuses to run. Toggling options back and forth (as the playground invites) must rebuild it, not fail."""
    from tortoise_lab import pipeline as pipeline_module

    tts = TextToSpeech(random_models("tiny", seed=0), progress=False)  # its own: no decoder cached by other tests

    built, stale = [], set()

    class Prepared:
        def __init__(self, options):
            self.options = options
            built.append(options)

        def is_stale(self):
            return id(self) in stale

    monkeypatch.setattr(pipeline_module, "prepare_decoder", lambda gpt, options, rows: (Prepared(options), []))
    fast = Settings.from_preset("ultra_fast", deepspeed=True)
    halved = fast.replace(half=True)
    first, _ = tts.prepare(fast)
    assert tts.prepare(fast)[0] is first and len(built) == 1  # cached while it can run
    tts.prepare(halved)
    stale.add(id(first))  # what building the second DeepSpeed decoder does to the first
    again, _ = tts.prepare(fast)
    assert again is not first and again.options == fast.inference and len(built) == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible to torch)")
def test_toggling_half_with_deepspeed_on_a_gpu_keeps_speaking(voice):
    """The real thing the test above mocks: DeepSpeed with half on, off and on again in one session, as a playground
    user does; each take speaks, and a take with the same options gives the same audio as before."""
    tts = TextToSpeech(random_models("tiny", seed=0, device="cuda"), progress=False)
    takes = [speak(tts, voice, deepspeed=True, half=half) for half in (True, False, True, False)]
    for take in takes:
        assert take.settings["deepspeed"] and take.wav.isfinite().all() and take.wav.abs().max() > 0
        assert not any("DeepSpeed" in note for note in take.notes), take.notes  # DeepSpeed ran each time
    assert torch.equal(takes[0].wav, takes[2].wav) and torch.equal(takes[1].wav, takes[3].wav)
