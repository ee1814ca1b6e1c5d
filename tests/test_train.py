"""tortoise_lab.train: corpus, quantiser, AR loss, the resumable loop, evaluation measures, and a whole tiny run.

Everything runs on the pure-torch tone corpus (no espeak-ng needed); one test also speaks with espeak-ng when it
is installed. Sizes are tiny: the whole file takes well under a minute on 2 cores.
"""

from __future__ import annotations

import csv
import hashlib
import json
import importlib.resources
import random

import pytest
import torch

from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.train import TrainConfig, run_training
from tortoise_lab.train.__main__ import build_parser
from tortoise_lab.train.ar import ARConfig, ar_loss, prepare_ar_data
from tortoise_lab.train.corpus import TEST_VOICES, VOICES, build_corpus, espeak_available, synthesize, tone_speech
from tortoise_lab.train.sentences import NOUNS, make_sentences
from tortoise_lab.models.griffin_lim import griffin_lim
from tortoise_lab.stages.sampling import codes_until_stop
from tortoise_lab.train.evaluate import (closer_to_right, dtw_log_mel_distance, length_ratio, stop_token_rate,
                                         swap_one_word)
from tortoise_lab.train.loop import LoopConfig, latest_step, learning_rate, train_loop
from tortoise_lab.models.quantizer import KMeansQuantizer, QuantizerConfig, code_mel, stack_frames, unstack_frames

TINY_AR = ARConfig(layers=1, model_dim=32, heads=2, conditioning_blocks=1, batch_size=4, cond_clips=1, pool_size=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tone_corpus():
    sentences = make_sentences(24, n_held_out=2, n_unseen=2, seed=1)
    return build_corpus(sentences, TEST_VOICES, backend="tones", seed=1)


@pytest.fixture(scope="module")
def tone_data(tone_corpus):
    train = tone_corpus.indices("train")
    quantizer = KMeansQuantizer.fit([code_mel(tone_corpus.wav(i)) for i in train],
                                    QuantizerConfig(codes=16, iterations=5))
    data, dropped = prepare_ar_data(tone_corpus, quantizer, train, TINY_AR, seed=3)
    assert dropped == 0
    return data


# ------------------------------------------------------------------------------------------------ corpus


def test_sentences_are_seeded_distinct_and_split_by_unseen_words():
    from tortoise_lab.train.sentences import _inflect_engine

    first, again = make_sentences(300, 20, 20, seed=5), make_sentences(300, 20, 20, seed=5)
    assert first == again
    everything = first.train + first.held_out + first.unseen
    assert len(set(everything)) == len(everything)
    forms = set(first.unseen_words) | {_inflect_engine().plural(w) for w in first.unseen_words}

    def words(text):
        return {w.strip(".,?!").lower() for w in text.split()}

    assert not any(words(t) & forms for t in first.train + first.held_out)
    assert all(words(t) & forms for t in first.unseen)


def test_broad_sentences_widen_the_vocabulary_and_keep_the_splits_honest():
    from tortoise_lab.train.sentences import _inflect_engine, _words, broad_words

    narrow = make_sentences(400, 20, 20, seed=5)
    assert make_sentences(400, 20, 20, seed=5, broad_fraction=0.0) == narrow  # fraction 0: the old draw exactly
    broad = make_sentences(400, 20, 20, seed=5, broad_fraction=0.5)
    assert broad == make_sentences(400, 20, 20, seed=5, broad_fraction=0.5)
    vocabulary = set().union(*map(_words, broad.train))
    assert len(vocabulary) > 1.5 * len(set().union(*map(_words, narrow.train)))  # 1035 vs 523 at this size
    assert len(vocabulary & set(broad_words().nouns)) > 100
    # held-out sentences use only words heard in training; unseen ones each carry a word never heard
    assert all(_words(t) <= vocabulary for t in broad.held_out) and len(broad.held_out) == 20
    forms = set(broad.unseen_words) | {_inflect_engine().plural(w) for w in broad.unseen_words}
    assert not vocabulary & forms
    assert all(_words(t) & forms for t in broad.unseen)
    with pytest.raises(ValueError, match="train on more sentences or lower broad_fraction"):
        make_sentences(10, 20, 2, seed=5, broad_fraction=0.5)  # 10 sentences cannot hold 20 held-out ones' words
    banned = set((importlib.resources.files("wonderwords") / "assets" /
                  "profanitylist.txt").read_text().splitlines())
    assert not vocabulary & banned


def test_tone_speech_depends_on_text_and_voice():
    low, high = TEST_VOICES
    a = tone_speech("a cat", low)
    assert a.dtype.name == "int16" and a.any()
    assert (tone_speech("a cat", low) == a).all()  # deterministic
    assert len(tone_speech("a cat", high)) < len(a)  # faster voice
    assert len(a) == len(tone_speech("a dog", low)) and (tone_speech("a dog", low) != a).any()


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_espeak_speaks_each_voice_differently():
    pairs = [("The quick brown fox.", VOICES[0]), ("The quick brown fox.", VOICES[1])]
    first, second = synthesize(pairs, backend="espeak")
    assert len(first) > 0.5 * 22_050 and len(second) > 0.5 * 22_050
    assert len(first) != len(second) or (first != second).any()


# --------------------------------------------------------------------------------------------- quantizer


def test_stack_and_unstack_are_inverse():
    mel = torch.randn(100, 12)
    stacked = stack_frames(mel, 4)
    assert stacked.shape == (3, 400)
    assert torch.equal(unstack_frames(stacked, 4), mel)
    assert stack_frames(torch.randn(100, 13), 4).shape == (4, 400)  # tail padded with silence


def test_quantizer_round_trip_on_clustered_data_is_within_the_noise():
    generator = torch.Generator().manual_seed(0)
    codes, noise = 8, 0.05
    centres = torch.randn(codes, 8, generator=generator) * 3  # (K, stack*bands) with stack 2, bands 4
    labels = torch.randint(codes, (400,), generator=generator)
    vectors = centres[labels] + noise * torch.randn(400, 8, generator=generator)
    mel = unstack_frames(vectors, 2)  # (4, 800)
    quantizer = KMeansQuantizer.fit([mel], QuantizerConfig(codes=codes, stack=2, bands=4, iterations=10))
    restored = quantizer.decode(quantizer.encode(mel))
    rms = (restored - mel).pow(2).mean().sqrt()
    # Every vector lands on its own cluster's mean: the error is the noise itself (0.05), not a cluster distance.
    assert rms < 1.1 * noise


def test_quantizer_round_trip_on_tone_speech_and_save_load(tone_corpus, tmp_path):
    mels = [code_mel(tone_corpus.wav(i)) for i in tone_corpus.indices("train")]
    quantizer = KMeansQuantizer.fit(mels, QuantizerConfig(codes=64, iterations=8))
    held = code_mel(tone_corpus.wav(tone_corpus.indices("held_out")[0]))
    codes = quantizer.encode(held)
    restored = quantizer.decode(codes)[:, :held.shape[1]]
    shuffled = quantizer.decode(codes[torch.randperm(len(codes), generator=torch.Generator().manual_seed(0))])
    error, broken = dtw_log_mel_distance(restored, held), dtw_log_mel_distance(shuffled[:, :held.shape[1]], held)
    # Measured on these 4 held-out tone sentences, 64 codes, seeds 0-1: 0.96-1.26 (natural-log mel units), against
    # 1.96-2.35 for the same codes in shuffled order (16 codes: 1.44-1.66; 256 codes: 0.62-0.89).
    assert error < 1.0 and error < 0.6 * broken, (error, broken)
    quantizer.save(tmp_path / "q.safetensors")
    loaded = KMeansQuantizer.load(tmp_path / "q.safetensors")
    assert loaded.config == quantizer.config and torch.equal(loaded.codebook, quantizer.codebook)


def test_griffin_lim_gives_24k_audio_of_the_mel():
    wav = torch.from_numpy(tone_speech("abc", TEST_VOICES[0]).astype("float32") / 32768).unsqueeze(0)
    mel = code_mel(wav)
    audio = griffin_lim(mel, iterations=16)
    assert audio.shape == (1, (mel.shape[1] - 1) * 256) and audio.abs().max() <= 0.95 + 1e-6
    assert dtw_log_mel_distance(code_mel(audio, 24_000)[:, :mel.shape[1]], mel) < 0.6


# ------------------------------------------------------------------------------------------------ AR loss


def test_ar_loss_masks_padding_exactly(tone_data):
    """Two items with equal text but different code lengths: the padded batch's loss is the token-weighted mean of
    the two items' own losses (causal attention: padding after the codes changes nothing before it)."""
    torch.manual_seed(0)
    model = UnifiedVoice(tone_data.gpt_config)
    batch = tone_data.batch(0)
    text = batch.text_tokens[:1].expand(2, -1).clone()
    lengths = torch.tensor([5, 9])
    codes = torch.full((2, 9), tone_data.gpt_config.stop_mel_token)
    codes[0, :5], codes[1] = torch.arange(5), torch.arange(9) % 16
    batch.text_tokens, batch.text_lengths = text, batch.text_lengths[:1].expand(2).clone()
    batch.mel_codes, batch.code_lengths = codes, lengths
    batch.cond_index = torch.zeros(2, dtype=torch.long)
    _, parts = ar_loss(model, batch)
    singles = []
    for i in range(2):
        one = type(batch)(text[i:i + 1], batch.text_lengths[i:i + 1], codes[i:i + 1, :lengths[i]], lengths[i:i + 1],
                          batch.cond_mels, batch.cond_index[i:i + 1])
        singles.append(ar_loss(model, one)[1]["mel"])
    weights = (lengths + 2).float()  # each item's targets: its codes, stop, stop
    expected = float((torch.tensor(singles) * weights).sum() / weights.sum())
    assert parts["mel"] == pytest.approx(expected, rel=1e-5)


def test_batches_are_a_pure_function_of_seed_and_step(tone_data):
    first, again = tone_data.batch(7), tone_data.batch(7)
    assert torch.equal(first.mel_codes, again.mel_codes) and torch.equal(first.cond_mels, again.cond_mels)
    assert not torch.equal(tone_data.batch(0).mel_codes, tone_data.batch(1).mel_codes)


# ---------------------------------------------------------------------------------------------------- loop


def _train(tone_data, out_dir, steps, fail_at=None, checkpoint_every=4):
    torch.manual_seed(0)
    model = UnifiedVoice(tone_data.gpt_config)
    config = LoopConfig(steps=steps, lr=3e-3, warmup_steps=2, checkpoint_every=checkpoint_every, log_every=2,
                        progress=False)

    def batches(step):
        if step == fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return tone_data.batch(step)

    return model, train_loop(model, ar_loss, batches, config, out_dir)


def test_loss_falls_over_a_few_steps(tone_data, tmp_path):
    _, result = _train(tone_data, tmp_path / "run", steps=30, checkpoint_every=30)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.3, (first, last)  # measured: 3.05 -> 2.44 (first and last 5 steps)
    assert (tmp_path / "run" / "loss.png").is_file() and latest_step(tmp_path / "run") == 30


def test_resume_after_interruption_matches_an_uninterrupted_run(tone_data, tmp_path):
    straight, _ = _train(tone_data, tmp_path / "straight", steps=10)
    with pytest.raises(KeyboardInterrupt):
        _train(tone_data, tmp_path / "broken", steps=10, fail_at=6)
    assert latest_step(tmp_path / "broken") == 4
    resumed, result = _train(tone_data, tmp_path / "broken", steps=10)
    assert result.resumed_from == 4 and len(result.losses) == 6
    # The interrupted call's time to its checkpoint (step 4) is carried on and counted in the total.
    assert 0 < result.resumed_seconds < result.total_seconds
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rows = [list(csv.reader((tmp_path / d / "loss.csv").open())) for d in ("straight", "broken")]
    assert rows[0] == rows[1]  # the interrupted run's rows past step 4 were dropped and redone


def test_learning_rate_warms_up_then_decays():
    config = LoopConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, config) == pytest.approx(0.1)
    assert learning_rate(9, config) == pytest.approx(1.0)
    assert learning_rate(99, config) == pytest.approx(0.1, abs=1e-3)


# ---------------------------------------------------------------------------------------------- evaluation


def test_dtw_distance_known_answers():
    mel = torch.randn(100, 20, generator=torch.Generator().manual_seed(0))
    assert dtw_log_mel_distance(mel, mel) == pytest.approx(0.0, abs=1e-6)
    slow = mel.repeat_interleave(2, dim=1)  # the same "speech" at half speed
    assert dtw_log_mel_distance(mel, slow) == pytest.approx(0.0, abs=1e-6)
    assert dtw_log_mel_distance(mel, mel + 0.5) == pytest.approx(0.5, abs=1e-6)  # constant offset: RMS = 0.5
    other = torch.randn(100, 20, generator=torch.Generator().manual_seed(1))
    assert dtw_log_mel_distance(mel, other) > 1.0


def test_stop_and_length_measures():
    stop = 9
    rows = [torch.tensor([1, 2, stop, stop]), torch.tensor([1, 2, 3, 4]), torch.tensor([stop, stop, stop, stop])]
    assert stop_token_rate(rows, stop) == pytest.approx(2 / 3)
    codes, stopped = codes_until_stop(rows[0], stop)
    assert stopped and codes.tolist() == [1, 2]
    assert codes_until_stop(rows[1], stop)[1] is False
    assert length_ratio(19, 20) == pytest.approx(0.95)


def test_word_swap_changes_one_word_and_discrimination_picks_the_closer():
    rng = random.Random(0)
    text = "The small apple opened the window near the station."
    swapped = swap_one_word(text, rng, NOUNS)
    changed = [(a, b) for a, b in zip(text.split(), swapped.split()) if a != b]
    assert len(changed) == 1 and len(swapped.split()) == len(text.split())
    right = torch.zeros(10, 8)
    assert closer_to_right(right + 0.1, right, right + 1.0)
    assert not closer_to_right(right + 0.9, right, right + 1.0)


def test_speaker_identification_tells_two_espeak_voices_apart_and_not_by_the_words():
    """The listen-proxy: the voice profile of a sentence is nearest to its own speaker's other sentences."""
    from tortoise_lab.train.evaluate import nearest_voice, voice_profile

    low, high = TEST_VOICES
    texts = ["a quiet river runs", "seven small kettles", "the harbour is busy today", "bring the blue lantern"]
    mels = {voice.name: [code_mel(torch.from_numpy(tone_speech(t, voice).astype("float32") / 32768).unsqueeze(0))
                         for t in texts] for voice in (low, high)}
    for name in mels:
        for k in range(len(texts)):  # each sentence against the pooled other sentences of both speakers
            profiles = {voice: voice_profile(torch.cat([m for j, m in enumerate(pool) if j != k], dim=1))
                        for voice, pool in mels.items()}
            assert nearest_voice(voice_profile(mels[name][k]), profiles) == name
    silent = torch.full((100, 20), -11.5)
    assert voice_profile(silent).shape == voice_profile(mels[low.name][0]).shape


# ---------------------------------------------------------------------------------------------- whole run


def test_run_training_end_to_end_and_cli(tmp_path):
    args = ["--out-dir", str(tmp_path / "run"), "--backend", "tones", "--sentences", "32", "--broad-fraction", "0",
            "--held-out", "2", "--unseen", "2", "--codes", "16", "--fit-utterances", "32", "--kmeans-iterations", "4",
            "--layers", "1", "--model-dim", "32", "--heads", "2", "--conditioning-blocks", "1", "--batch-size", "8",
            "--steps", "6", "--warmup-steps", "2", "--checkpoint-every", "3", "--log-every", "3", "--eval-count", "2",
            "--no-progress"]
    config = TrainConfig(**vars(build_parser().parse_args(args)))
    result = run_training(config)
    folder = tmp_path / "run" / "embedded"
    manifest = json.loads((folder / "config.json").read_text())
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert manifest["vocoder"] == "griffin-lim" and manifest["evaluation"]["count"] == 2
    assert set(result.evaluation["summary"]["per_split"]) == {"held_out", "unseen"}
    assert "speaker_accuracy" in result.evaluation["summary"] and "speaker_ceiling" in manifest["evaluation"]
    samples = json.loads((tmp_path / "run" / "samples" / "samples.json").read_text())
    assert len(samples) == 2 and {s["split"] for s in samples} == {"held_out", "unseen"}
    assert all((tmp_path / "run" / "samples" / s[key]).is_file() for s in samples for key in ("ours", "espeak"))
    assert (tmp_path / "run" / "samples" / "spectrograms.png").stat().st_size > 1000
    # The embedded decode path runs on the trained model: codes -> codebook mel -> Griffin-Lim audio.
    from tortoise_lab.audio import conditioning_mel
    from tortoise_lab.stages.decode import codes_audio
    from tortoise_lab.stages.sampling import draw_until_stop

    clip = torch.from_numpy(tone_speech("a voice clip", TEST_VOICES[0]).astype("float32") / 32768).unsqueeze(0)
    cond = result.model.conditioning_latent(conditioning_mel(clip).unsqueeze(0))
    codes, _ = draw_until_stop(result.model, cond, torch.tensor([[20, 30, 0]]), max_codes=8)
    audio = codes_audio(result.quantizer, codes, iterations=4)
    assert audio.shape[-1] == (len(codes) * 4 - 1) * 256 if len(codes) else audio.shape[-1] == 0
    # The shipped folder evaluates on the run's held-out sentences as the run itself did.
    from tortoise_lab.train.experiments.crosseval import main as crosseval

    assert crosseval(["--model-dir", str(folder), "--run", str(tmp_path / "run"), "--out", str(tmp_path / "x.json"),
                      "--samples-dir", str(tmp_path / "crossed")]) == 0
    crossed = json.loads((tmp_path / "x.json").read_text())
    assert [u["text"] for u in crossed["utterances"]] == [u["text"] for u in result.evaluation["utterances"]]
    assert crossed["summary"]["count"] == 2
    # ... and speaks the same sentences as the run's samples, through the set's own mel decoder.
    crossed_samples = json.loads((tmp_path / "crossed" / "samples.json").read_text())
    assert [s["text"] for s in crossed_samples] == [s["text"] for s in samples]
    assert all((tmp_path / "crossed" / s["ours"]).stat().st_size > 1000 for s in crossed_samples)
    # The paragraph test: the four held-out sentences make one paragraph, spoken chunk by chunk.
    from tortoise_lab.train.experiments.paragraphs import main as paragraphs

    assert paragraphs(["--model-dir", str(folder), "--out", str(tmp_path / "p.json")]) == 0
    measured = json.loads((tmp_path / "p.json").read_text())
    assert measured["summary"]["count"] == 1 and measured["chunks"][0] >= 1
    assert measured["paragraphs"][0]["text"].count(".") + measured["paragraphs"][0]["text"].count("?") >= 3
    assert paragraphs(["--model-dir", str(tmp_path / "nowhere")]) == 2
    # Running the same command again finds everything done: no new steps, and the training time is kept.
    again = run_training(config)
    assert again.losses == [] and again.timings["training_s"] >= result.timings["training_s"]


def test_joining_sentences_keeps_every_word_and_only_the_training_split():
    from tortoise_lab.train.sentences import MAX_JOINED, Sentences, join_sentences

    sentences = Sentences(train=[f"Sentence number {i}." for i in range(2000)], held_out=["Held."], unseen=["New."])
    assert join_sentences(sentences, 0.0) is sentences  # recipes without it draw what they did
    joined = join_sentences(sentences, 0.5, seed=1)
    assert " ".join(joined.train) == " ".join(sentences.train)  # same sentences, same order, none lost
    assert joined.held_out == ["Held."] and joined.unseen == ["New."]
    counts = [text.count(".") for text in joined.train]
    assert max(counts) == MAX_JOINED and min(counts) == 1
    share = sum(c for c in counts if c > 1) / len(sentences.train)
    assert 0.4 < share < 0.6  # about the fraction asked for
    assert join_sentences(sentences, 0.5, seed=1) == joined  # seeded
    with pytest.raises(ValueError, match="between 0 and 1"):
        join_sentences(sentences, 1.5)


def test_paragraphs_gather_the_held_out_sentences_in_order_read_by_each_voice_in_turn():
    from tortoise_lab.train.experiments.paragraphs import LONGEST, SHORTEST, make_paragraphs
    from tortoise_lab.train.run import recipe_sentences

    config = TrainConfig(backend="tones", sentences=60, held_out=16, unseen=16, broad_fraction=0.0)
    paragraphs = make_paragraphs(config)
    sentences = recipe_sentences(config)
    alternating = [s for pair in zip(sentences.held_out, sentences.unseen) for s in pair]
    spoken = sum(p["sentences"] for p in paragraphs)
    assert " ".join(p["text"] for p in paragraphs) == " ".join(alternating[:spoken])  # in order, none repeated
    assert len(alternating) - spoken < SHORTEST  # only a remainder too short for a paragraph is left out
    assert all(SHORTEST <= p["sentences"] <= LONGEST for p in paragraphs)
    assert len({p["sentences"] for p in paragraphs}) > 1  # lengths vary
    names = [v.name for v in config.voice_list()]
    assert [p["voice"] for p in paragraphs] == [names[k % len(names)] for k in range(len(paragraphs))]
    assert make_paragraphs(config) == paragraphs and make_paragraphs(config, seed=1) != paragraphs
