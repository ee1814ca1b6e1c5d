"""The embedded model shipped in the package: checked files, and it speaks the text it is given."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
import torchaudio

from tortoise_lab.audio import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, load_audio, univnet_mel
from tortoise_lab.checkpoints import CheckpointError
from tortoise_lab.cli import main
from tortoise_lab.model_set import CODE_DECODER_FILE, EMBEDDED_CHAIN, EMBEDDED_DIR, embedded_models
from tortoise_lab.models.code_decoder import CodeDecoder
from tortoise_lab.models.quantizer import KMeansQuantizer
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.train.evaluate import dtw_log_mel_distance
from tortoise_lab.voices import Voice, load_voice

DATA = Path(__file__).resolve().parent / "data" / "embedded"


@pytest.fixture(scope="module")
def tts():
    return TextToSpeech(embedded_models(), progress=False)


def _mel(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    if sample_rate != OUTPUT_SAMPLE_RATE:
        wav = torchaudio.functional.resample(wav, sample_rate, OUTPUT_SAMPLE_RATE)
    return univnet_mel(wav)


def test_shipped_files_match_their_manifest():
    manifest = json.loads((EMBEDDED_DIR / "config.json").read_text())
    assert set(manifest["sha256"]) == {"autoregressive.safetensors", "quantizer.safetensors", CODE_DECODER_FILE}
    total = sum(path.stat().st_size for path in EMBEDDED_DIR.iterdir())
    assert total < 20 * 2**20  # the budget for the whole folder
    assert manifest["command"].startswith("python -m tortoise_lab.train")
    # The chain it runs is the one its recorded comparisons chose, and the one this version runs: the code book
    # beat the diffusion decoder and Griffin-Lim beat UnivNet (decoders), then the code decoder beat the code book
    # on the sentence and paragraph tests (codedecoder).
    assert (manifest["mel_decoder"], manifest["vocoder"]) == EMBEDDED_CHAIN
    comparison = manifest["decoder_comparison"]
    assert comparison["decision"] == {**comparison["decision"], "mel_decoder": "codebook", "vocoder": "griffin-lim"}
    assert comparison["mel_decoders"]["codebook"]["distance"] < min(
        s["distance"] for name, s in comparison["mel_decoders"].items() if name != "codebook")
    learned = manifest["code_decoder"]
    assert learned["decision"]["mel_decoder"] == "code decoder"
    assert learned["command"].startswith("python -m tortoise_lab.train codedecoder")
    for test in ("sentence_test", "paragraph_test"):
        assert learned[test]["code decoder"]["distance"] < learned[test]["codebook"]["distance"]
        assert learned[test]["code decoder"]["swap_accuracy"] >= learned[test]["codebook"]["swap_accuracy"]


def test_the_shipped_code_decoder_loads_strictly(tmp_path):
    from safetensors.torch import load_file, save_file

    quantizer = KMeansQuantizer.load(EMBEDDED_DIR / "quantizer.safetensors")
    decoder = CodeDecoder.load(EMBEDDED_DIR / CODE_DECODER_FILE, quantizer.codebook)
    assert isinstance(embedded_models().decoder.mel_decoder, CodeDecoder)
    with safe_open(str(EMBEDDED_DIR / CODE_DECODER_FILE), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(EMBEDDED_DIR / CODE_DECODER_FILE))
    state["extra.weight"] = state.pop("norm.weight")
    save_file(state, str(tmp_path / "renamed.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="norm.weight"):
        CodeDecoder.load(tmp_path / "renamed.safetensors", quantizer.codebook)
    codes = quantizer.encode(_mel(load_audio(DATA / "same.wav", INPUT_SAMPLE_RATE), INPUT_SAMPLE_RATE))
    assert decoder.decode(codes).shape == quantizer.decode(codes).shape


def test_a_held_out_sentence_decoded_by_the_code_decoder_is_closer_to_its_rendering():
    """The shipped decoder on a held-out rendering's own codes: closer to that rendering than the code book gets,
    and far closer to it than to another sentence's."""
    quantizer = KMeansQuantizer.load(EMBEDDED_DIR / "quantizer.safetensors")
    decoder = CodeDecoder.load(EMBEDDED_DIR / CODE_DECODER_FILE, quantizer.codebook)
    same = _mel(load_audio(DATA / "same.wav", INPUT_SAMPLE_RATE), INPUT_SAMPLE_RATE)
    other = _mel(load_audio(DATA / "other.wav", INPUT_SAMPLE_RATE), INPUT_SAMPLE_RATE)
    codes = quantizer.encode(same)
    ours = decoder.decode(codes)
    assert dtw_log_mel_distance(ours, same) < dtw_log_mel_distance(quantizer.decode(codes), same)
    assert dtw_log_mel_distance(ours, same) < 0.5 * dtw_log_mel_distance(ours, other)


def test_a_set_made_before_the_code_decoder_runs_its_code_book(tmp_path):
    copy = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, copy, ignore=shutil.ignore_patterns(CODE_DECODER_FILE))
    manifest = json.loads((copy / "config.json").read_text())
    del manifest["sha256"][CODE_DECODER_FILE]
    (copy / "config.json").write_text(json.dumps({**manifest, "mel_decoder": "codebook"}))
    models = embedded_models(copy)
    assert isinstance(models.decoder.mel_decoder, KMeansQuantizer) and "codebook" in models.description


def test_a_damaged_file_is_refused(tmp_path):
    copy = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, copy)
    data = bytearray((copy / "quantizer.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "quantizer.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        embedded_models(copy)


def test_a_set_asking_for_a_decoder_this_version_lacks_is_refused(tmp_path):
    copy = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, copy)
    manifest = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**manifest, "mel_decoder": "diffusion"}))
    with pytest.raises(CheckpointError, match="mel decoder 'diffusion'"):
        embedded_models(copy)


def test_a_held_out_sentence_beats_the_different_sentence_baseline(tts):
    texts = json.loads((DATA / "texts.json").read_text())
    speech = tts.tts(texts["same"], voice=load_voice("espeak_us_m3"), preset="ultra_fast", seed=0)
    assert speech.wav.shape[-1] > 0.5 * OUTPUT_SAMPLE_RATE
    ours = _mel(speech.wav, OUTPUT_SAMPLE_RATE)
    same = dtw_log_mel_distance(ours, _mel(load_audio(DATA / "same.wav", INPUT_SAMPLE_RATE), INPUT_SAMPLE_RATE))
    other = dtw_log_mel_distance(ours, _mel(load_audio(DATA / "other.wav", INPUT_SAMPLE_RATE), INPUT_SAMPLE_RATE))
    assert same < other, (same, other)


def test_random_voice_is_refused_in_one_sentence(tts):
    with pytest.raises(ValueError, match="no random-voice generator"):
        tts.tts("Hello.", voice=Voice("random"), preset="ultra_fast", seed=0)


def test_speak_without_official_weights_uses_the_embedded_model(tmp_path, capsys):
    code = main(["speak", "A short test.", "--models-dir", str(tmp_path / "none"), "-O", str(tmp_path / "out"),
                 "--seed", "1", "-p", "ultra_fast"])
    assert code == 0
    out = capsys.readouterr().out
    assert "embedded tiny model" in out and "espeak_us_m3" in out
    sidecar = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert "embedded" in sidecar["model"] and sidecar["seed"] == 1


def test_asking_for_the_official_model_without_weights_fails_in_one_sentence(tmp_path, capsys):
    assert main(["speak", "Hi.", "--model", "official", "--models-dir", str(tmp_path)]) == 3
    assert "tortoise-lab download" in capsys.readouterr().err
