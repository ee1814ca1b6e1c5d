"""tortoise_lab.train.experiments.diffusion / .vocoder / .decoders: training the mel decoder and the vocoder, and the
measured choice between them and the code book / Griffin-Lim. Tiny sizes on the pure-torch tone corpus."""

from __future__ import annotations

import json

import pytest
import torch

from tortoise_lab.audio import conditioning_mel, normalize_univnet_mel, univnet_mel
from tortoise_lab.models.diffusion import DiffusionDecoder
from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.models.quantizer import KMeansQuantizer, QuantizerConfig, code_mel
from tortoise_lab.models.vocoder import UnivNetGenerator
from tortoise_lab.train.ar import ARConfig, embedded_gpt_config
from tortoise_lab.train.corpus import TEST_VOICES, build_corpus
from tortoise_lab.train.sentences import make_sentences
from tortoise_lab.train.experiments.diffusion import (DiffusionTrainConfig, diffusion_loss, init_for_training,
                                         prepare_diffusion_data, sample_mel)
from tortoise_lab.train.loop import LoopConfig, train_loop
from tortoise_lab.train.experiments.vocoder import VocoderTrainConfig, prepare_vocoder_data, stft_loss, vocoder_loss

TINY_DIFFUSION = DiffusionTrainConfig(model_channels=32, num_layers=1, num_heads=2, utterances=12, crop_codes=4,
                                      batch_size=4, pool_size=2)
TINY_VOCODER = VocoderTrainConfig(noise_dim=8, channel_size=8, utterances=8, segment_frames=8, batch_size=4)
STACK = 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(make_sentences(16, n_held_out=2, n_unseen=2, seed=2, broad_fraction=0), TEST_VOICES,
                        backend="tones", seed=2)


@pytest.fixture(scope="module")
def diffusion_data(corpus):
    train = corpus.indices("train")
    quantizer = KMeansQuantizer.fit([code_mel(corpus.wav(i)) for i in train], QuantizerConfig(codes=16, iterations=3))
    codes = [quantizer.encode(code_mel(corpus.wav(i))) for i in train]
    torch.manual_seed(0)
    gpt = UnifiedVoice(embedded_gpt_config(ARConfig(layers=1, model_dim=32, heads=2, conditioning_blocks=1), 16)).eval()
    with torch.no_grad():
        cond = {v: gpt.conditioning_latent(conditioning_mel(corpus.wav(i)).unsqueeze(0).unsqueeze(0))
                for v, i in ((v, next(i for i in train if corpus.voice_ids[i] == v)) for v in set(corpus.voice_ids))}
    return prepare_diffusion_data(gpt, corpus, train, codes, cond, TINY_DIFFUSION, STACK, seed=5), codes, train


def _loop(steps: int, lr: float) -> LoopConfig:
    return LoopConfig(steps=steps, lr=lr, warmup_steps=2, checkpoint_every=steps, log_every=5, progress=False)


def test_diffusion_examples_pair_each_codes_latents_with_their_own_frames(diffusion_data, corpus):
    data, codes, train = diffusion_data
    for k, latents in enumerate(data.latents):
        assert latents.shape[1] == 32 and data.mels[k].shape == (100, STACK * len(latents))
    # The mel of an utterance is its own UnivNet mel, normalised, cut to the frames its codes stand for.
    k = 0
    index = next(i for i in train if corpus.voice_ids[i] == data.voice_ids[k] and len(codes[train.index(i)]) == len(data.latents[k]))
    expected = normalize_univnet_mel(code_mel(corpus.wav(index)))
    frames = min(expected.shape[1], data.mels[k].shape[1])
    assert torch.allclose(data.mels[k][:, :frames].float(), expected[:, :frames], atol=2e-3)
    assert data.mels[k].float().abs().max() <= 1.0 + 1e-3


def test_diffusion_batches_are_a_pure_function_of_seed_and_step(diffusion_data):
    data = diffusion_data[0]
    a, b, c = data.batch(3), data.batch(3), data.batch(4)
    for name in ("latents", "mels", "cond_mels", "timesteps", "noise", "unconditioned"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.noise, c.noise)
    assert a.latents.shape == (4, 4, 32) and a.mels.shape == (4, 100, 16) and a.cond_mels.shape == (4, 1, 100, 401)
    assert int(a.timesteps.min()) >= 0 and int(a.timesteps.max()) < 4000


def test_diffusion_loss_falls_and_the_trained_decoder_samples_a_mel(diffusion_data, tmp_path):
    data = diffusion_data[0]
    torch.manual_seed(0)
    model = init_for_training(DiffusionDecoder(TINY_DIFFUSION.model_config(32, 16)))
    assert float(diffusion_loss(model, data.batch(0))[0].detach()) == pytest.approx(1.0, abs=0.1)  # predicts zero noise
    # Two batches in turn: the network must learn to read the timestep and the noisy mel to get below the
    # zero-prediction loss of 1 (a tiny model on fresh batches needs far more steps than a test can take).
    result = train_loop(model, diffusion_loss, lambda step: data.batch(step % 2), _loop(60, 3e-3),
                        tmp_path / "diffusion")
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.85 * first, (first, last)
    latents, cond = data.latents[0][None].float(), data.cond_pool[data.voice_ids[0]][:1][None].float()
    mel = sample_mel(model, latents, cond, 12, steps=4, cond_free_k=2.0, seed=1)
    assert mel.shape == (100, 12) and torch.isfinite(mel).all()
    assert torch.equal(mel, sample_mel(model, latents, cond, 12, steps=4, cond_free_k=2.0, seed=1))
    with pytest.raises(ValueError, match="ddim"):
        sample_mel(model, latents, cond, 12, sampler="ddpm")


def test_stft_loss_is_zero_only_for_the_same_audio():
    wav = torch.randn(2, 4096) * 0.1
    assert float(stft_loss(wav, wav)[0]) < 1e-5
    quieter, parts = stft_loss(wav * 0.5, wav)
    assert float(quieter) > 0.5 and parts["log_magnitude"] == pytest.approx(float(torch.tensor(2.0).log()), rel=1e-3)


def test_vocoder_segments_match_their_mel_and_the_loss_falls(corpus, tmp_path):
    data = prepare_vocoder_data(corpus, corpus.indices("train"), TINY_VOCODER, seed=1)
    assert data.mels[0].shape == univnet_mel(data.wavs[0].float()).shape
    batch = data.batch(2)
    assert batch.wavs.shape == (4, 8 * 256) and batch.mels.shape == (4, 100, 8)
    assert torch.equal(batch.wavs, data.batch(2).wavs) and not torch.equal(batch.wavs, data.batch(3).wavs)
    torch.manual_seed(0)
    model = UnivNetGenerator(TINY_VOCODER.model_config())
    result = train_loop(model, vocoder_loss, data.batch, _loop(30, 3e-3), tmp_path / "vocoder")
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.2, (first, last)


def test_decoder_comparison_end_to_end(tmp_path, capsys):
    """A tiny AR run, then both trainings and the comparison through the CLI; the decision follows the rule."""
    from tortoise_lab.train import TrainConfig, run_training
    from tortoise_lab.train.experiments.decoders import main

    run = tmp_path / "run"
    run_training(TrainConfig(out_dir=str(run), backend="tones", sentences=24, broad_fraction=0, held_out=2, unseen=2,
                             codes=16, fit_utterances=24, kmeans_iterations=3, layers=1, model_dim=32, heads=2,
                             conditioning_blocks=1, batch_size=8, steps=4, warmup_steps=2, checkpoint_every=4,
                             eval_count=2, samples=0, progress=False))
    common = ["--run", str(run), "--model-dir", str(run / "embedded"), "--out-dir", str(tmp_path / "dec"),
              "--diffusion-channels", "32", "--diffusion-layers", "1", "--diffusion-steps", "3",
              "--diffusion-utterances", "8", "--diffusion-batch-size", "2", "--vocoder-channels", "8",
              "--vocoder-steps", "3", "--vocoder-utterances", "8", "--vocoder-batch-size", "2",
              "--sampling-steps", "2", "--eval-count", "2", "--no-progress"]
    assert main(common + ["--stages", "compare"]) == 2  # nothing trained yet
    assert "no finished training" in capsys.readouterr().err
    assert main(common + ["--stages", "diffusion,typo"]) == 2
    assert "Unknown stage 'typo'" in capsys.readouterr().err
    assert main(common + ["--stages", "diffusion,vocoder"]) == 0
    result_code = main(common + ["--stages", "compare", "--record"])
    result = json.loads((tmp_path / "dec" / "comparison.json").read_text())
    manifest = json.loads((run / "embedded" / "config.json").read_text())
    shipped = (manifest["mel_decoder"], manifest["vocoder"])
    if (result["decision"]["mel_decoder"], result["decision"]["vocoder"]) == shipped:
        assert result_code == 0 and manifest["decoder_comparison"]["decision"] == result["decision"]
        assert manifest["decoder_comparison"]["command"].startswith("python -m tortoise_lab.train decoders --run ")
    else:  # a trained network won: it is not part of the set, so recording it is refused
        assert result_code == 2 and "decoder_comparison" not in manifest
    assert result["training"]["diffusion"]["steps"] == 3 and result["training"]["vocoder"]["seconds"] > 0
    assert set(result["vocoders"]) == {"griffin-lim", "univnet"}
    assert list(result["mel_decoders"])[0] == "codebook" and len(result["mel_decoders"]) == 3  # k = 0 and 2
    mels = result["mel_decoders"]
    winner = result["decision"]["mel_decoder"]
    if winner != "codebook":
        assert mels[winner]["distance"] < mels["codebook"]["distance"]
        assert mels[winner]["swap_accuracy"] >= mels["codebook"]["swap_accuracy"]
    # The code book's chain measures what the run's own evaluation measured (same items; the run used the fp32
    # weights, the comparison the exported fp16 ones).
    own = json.loads((run / "eval.json").read_text())["summary"]
    assert mels["codebook"]["distance"] == pytest.approx(own["distance"], rel=1e-2)
    assert mels["codebook"]["swap_accuracy"] == own["swap_accuracy"]
    vocoders = result["vocoders"]
    if result["decision"]["vocoder"] == "univnet":
        assert vocoders["univnet"]["distance"] < vocoders["griffin-lim"]["distance"]
    assert "Decision" in (tmp_path / "dec" / "comparison.md").read_text()
    assert set(result["copy_synthesis"]) == {"griffin-lim", "univnet"}
    examples = tmp_path / "dec" / "examples"
    assert (examples / "mels.png").stat().st_size > 1000
    assert {"01-codebook-griffin-lim.wav", "01-codebook-univnet.wav", "02-diffusion-ddim-2-k-2-griffin-lim.wav"} <= {
        f.name for f in examples.glob("*.wav")}
    assert "| codebook |" in capsys.readouterr().out


def test_vqvae_quantiser_comparison(tmp_path):
    """The VQ-VAE trains (its loss falls), encodes one code per 4 frames, and is measured beside k-means."""
    from tortoise_lab.train import TrainConfig, run_training
    from tortoise_lab.train.experiments.vqvae import MelVQVAE, VQVAEConfig, main

    model = MelVQVAE(VQVAEConfig(codes=8, hidden=16, code_dim=4))
    mel = torch.full((100, 10), -5.0)
    codes = model.encode(mel)
    assert codes.shape == (3,) and model.decode(codes).shape == (100, 12)
    run = tmp_path / "run"
    run_training(TrainConfig(out_dir=str(run), backend="tones", sentences=24, broad_fraction=0, held_out=2, unseen=2,
                             codes=16, fit_utterances=24, kmeans_iterations=3, layers=1, model_dim=32, heads=2,
                             conditioning_blocks=1, batch_size=8, steps=2, warmup_steps=1, checkpoint_every=2,
                             eval_count=0, samples=0, progress=False))
    assert main(["--run", str(run), "--model-dir", str(run / "embedded"), "--out-dir", str(tmp_path / "vq"),
                 "--steps", "40", "--utterances", "16", "--eval-count", "2"]) == 0
    result = json.loads((tmp_path / "vq" / "quantizers.json").read_text())
    assert set(result) == {"k-means", "vq-vae", "settings"}
    assert 0 < result["vq-vae"]["codes_used"] <= 16 and result["vq-vae"]["ceiling"] > 0
    import csv

    rows = list(csv.DictReader((tmp_path / "vq" / "loss.csv").open()))
    assert float(rows[-1]["reconstruction"]) < float(rows[0]["reconstruction"])
