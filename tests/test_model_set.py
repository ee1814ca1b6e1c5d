"""Loading a model set from files in the official format: strict, and CVVP / random-voice models only on demand."""

import pytest
import torch

from tortoise_lab.model_set import WeightsMissing, official_models, random_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.voices import Voice
from tests.support.weights import write_official_style

FAST = dict(num_autoregressive_samples=2, max_mel_tokens=10, diffusion_iterations=2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    models = random_models("tiny", seed=1)
    write_official_style(models, folder)
    return folder, models


def test_loads_strictly_and_equals_what_was_saved(saved):
    folder, original = saved
    loaded = official_models(folder, size="tiny")
    for name in ("gpt", "diffusion", "clvp", "vocoder"):
        a, b = getattr(original, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cvvp_and_random_voice_models_load_only_when_needed(saved):
    folder, original = saved
    loaded = official_models(folder, size="tiny")
    tts = TextToSpeech(loaded, progress=False)
    tts.tts("Hi.", voice=Voice("clips", clips=[torch.randn(1, 30000) * 0.1]), preset="ultra_fast", seed=1, **FAST)
    assert loaded.loaded == ["gpt", "diffusion", "clvp", "vocoder"]
    # Asking for them without their files fails then, naming the file.
    with pytest.raises(WeightsMissing, match="cvvp.pth"):
        tts.tts("Hi.", voice=Voice("clips", clips=[torch.randn(1, 30000) * 0.1]), preset="ultra_fast", seed=1,
                cvvp_amount=0.5, **FAST)
    with pytest.raises(WeightsMissing, match="rlg_auto.pth"):
        tts.tts("Hi.", voice=Voice("random"), preset="ultra_fast", seed=1, **FAST)
    torch.save(original.cvvp.state_dict(), folder / "cvvp.pth")
    tts.tts("Hi.", voice=Voice("clips", clips=[torch.randn(1, 30000) * 0.1]), preset="ultra_fast", seed=1,
            cvvp_amount=0.5, **FAST)
    assert "cvvp" in loaded.loaded


def test_missing_files_are_named_with_what_to_do(tmp_path):
    with pytest.raises(WeightsMissing, match=r"autoregressive.pth.*tortoise-lab download"):
        official_models(tmp_path, size="tiny")


def test_a_file_for_another_model_fails_naming_file_and_keys(saved, tmp_path):
    folder, original = saved
    write_official_style(original, tmp_path)
    torch.save(original.clvp.state_dict(), tmp_path / "diffusion_decoder.pth")  # the wrong file under this name
    from tortoise_lab.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match=r"diffusion_decoder.pth does not fit DiffusionDecoder.*missing keys"):
        official_models(tmp_path, size="tiny")
