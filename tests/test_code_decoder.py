"""models/code_decoder.py and train/experiments/codedecoder.py: the learned code -> mel decoder starts as the code
book, reads padded batches as single utterances, loads strictly, and trains deterministically. Tiny sizes on the
pure-torch tone corpus."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tortoise_lab.checkpoints import CheckpointError
from tortoise_lab.models.code_decoder import CodeDecoder, CodeDecoderConfig
from tortoise_lab.models.quantizer import KMeansQuantizer, QuantizerConfig, code_mel
from tortoise_lab.train.corpus import TEST_VOICES, build_corpus
from tortoise_lab.train.experiments.codedecoder import (CodeDecoderRunConfig, code_decoder_loss, new_decoder,
                                                         prepare_pairs)
from tortoise_lab.train.loop import LoopConfig, train_loop
from tortoise_lab.train.sentences import make_sentences

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = CodeDecoderConfig.from_name("tiny")


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(make_sentences(12, n_held_out=2, n_unseen=2, seed=3, broad_fraction=0), TEST_VOICES,
                        backend="tones", seed=3)


@pytest.fixture(scope="module")
def quantizer(corpus):
    train = corpus.indices("train")
    return KMeansQuantizer.fit([code_mel(corpus.wav(i)) for i in train], QuantizerConfig(codes=16, iterations=3))


def _trained_bytes(corpus, quantizer, folder) -> bytes:
    config = CodeDecoderRunConfig(size="tiny", utterances=8, batch_size=3, seed=4)
    pairs = prepare_pairs(corpus, corpus.indices("train"), quantizer, config.utterances, config.batch_size,
                          config.seed)
    model = new_decoder(config, quantizer)
    before = float(code_decoder_loss(model, pairs.batch(0))[0].detach())  # the code book's error
    loop = LoopConfig(steps=120, lr=3e-3, warmup_steps=10, checkpoint_every=60, log_every=10, progress=False)
    train_loop(model, code_decoder_loss, pairs.batch, loop, folder)
    assert float(code_decoder_loss(model, pairs.batch(0))[0].detach()) < 0.97 * before
    model.save(folder / "decoder.safetensors")
    return (folder / "decoder.safetensors").read_bytes()


def test_training_is_deterministic_and_lowers_the_loss(corpus, quantizer, tmp_path):
    assert _trained_bytes(corpus, quantizer, tmp_path / "a") == _trained_bytes(corpus, quantizer, tmp_path / "b")


def test_an_untrained_decoder_is_the_code_book(quantizer):
    model = CodeDecoder(dataclasses.replace(TINY, codes=16), quantizer.codebook)
    codes = torch.randint(16, (9,), generator=torch.Generator().manual_seed(0))
    floor = float(torch.tensor(1e-5).log())  # the log floor the decoder clamps to
    assert torch.allclose(model.decode(codes), quantizer.decode(codes).clamp_min(floor), atol=1e-4)
    assert model.decode(codes).shape == quantizer.decode(codes).shape == (100, 36)


def test_a_padded_row_decodes_as_it_does_alone(quantizer):
    torch.manual_seed(0)
    model = CodeDecoder(dataclasses.replace(TINY, codes=16), quantizer.codebook)
    torch.nn.init.normal_(model.out.weight, std=0.1)  # a decoder that reads its context
    codes = torch.randint(16, (2, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    together = model(codes, mask)
    alone = model(codes[1:, :6])
    assert torch.allclose(together[1, :, :24], alone[0], atol=1e-6)
    assert not torch.allclose(together[1, :, :24], model(codes[1:])[0, :, :24], atol=1e-6)  # context is read


def test_pairs_hold_each_utterances_codes_and_its_own_mel(corpus, quantizer, tmp_path):
    train = corpus.indices("train")
    pairs = prepare_pairs(corpus, train, quantizer, 5, 2, seed=0, cache=tmp_path / "pairs.safetensors")
    again = prepare_pairs(corpus, train, quantizer, 5, 2, seed=0, cache=tmp_path / "pairs.safetensors")
    for k, index in enumerate(pairs.indices):
        assert torch.equal(pairs.codes[k].long(), quantizer.encode(code_mel(corpus.wav(index))))
        assert pairs.mels[k].shape == (100, 4 * len(pairs.codes[k]))
        assert torch.equal(again.codes[k], pairs.codes[k]) and torch.equal(again.mels[k], pairs.mels[k])
    batch = pairs.batch(3)
    assert torch.equal(batch.codes, pairs.batch(3).codes)
    assert batch.mels.shape[-1] == 4 * batch.codes.shape[1] and batch.mask.sum(1).min() > 0


def test_the_file_loads_strictly(quantizer, tmp_path):
    model = CodeDecoder(dataclasses.replace(TINY, codes=16), quantizer.codebook)
    path = model.save(tmp_path / "decoder.safetensors", torch.float16)
    loaded = CodeDecoder.load(path, quantizer.codebook)
    assert loaded.config == model.config
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    del state["out.bias"]
    save_file(state, str(tmp_path / "broken.safetensors"), metadata={"config": __import__("json").dumps(
        dataclasses.asdict(model.config))})
    with pytest.raises(CheckpointError, match="out.bias"):
        CodeDecoder.load(tmp_path / "broken.safetensors", quantizer.codebook)


def test_the_command_explains_every_flag(capsys):
    from tortoise_lab.train.__main__ import main

    with pytest.raises(SystemExit):
        main(["codedecoder", "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(CodeDecoderRunConfig):
        assert "--" + field.name.replace("_", "-") in text
