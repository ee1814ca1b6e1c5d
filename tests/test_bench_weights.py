"""The benchmark's random weights made by ours (tortoise_lab/tools/bench/weights.py), for a machine without the
reference environment: the bench takes them as it takes the reference's, they load with strict keys, the same seed
makes the same files, and a synthesis on them is finite audio."""

import json

import pytest
import torch

from tortoise_lab import cli
from tortoise_lab.model_set import official_models
from tortoise_lab.tools.bench import runner
from tortoise_lab.tools.bench.configs import WEIGHT_FILES, WEIGHTS_STAMP
from tortoise_lab.tools.bench.weights import MADE_BY, make_weights, randomize_, weights_folder


@pytest.fixture
def no_reference(monkeypatch, tmp_path):
    """The bench must not need the reference environment once our weights are there."""
    monkeypatch.setattr(runner, "reference_python", lambda: tmp_path / "no-reference" / "python")


def test_the_bench_takes_our_weights_without_the_reference(tmp_path, no_reference):
    folder = make_weights("tiny", tmp_path, seed=5, log=lambda message: None)
    assert folder == weights_folder("tiny", tmp_path, seed=5) == tmp_path / "tiny-seed5"
    assert runner.ensure_weights("tiny", tmp_path, seed=5) == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted((*WEIGHT_FILES, WEIGHTS_STAMP))
    assert json.loads((folder / WEIGHTS_STAMP).read_text())["made_by"] == MADE_BY
    models = official_models(folder, "cpu", size="tiny")  # strict keys: every file in the official format
    assert models.hifigan is not None


def test_the_same_seed_makes_the_same_weights_and_a_complete_folder_is_kept(tmp_path):
    quiet = dict(log=lambda message: None)
    one, two = make_weights("tiny", tmp_path / "a", seed=2, **quiet), make_weights("tiny", tmp_path / "b", seed=2, **quiet)
    other = make_weights("tiny", tmp_path / "c", seed=3, **quiet)
    for name in WEIGHT_FILES:
        first, second, third = (torch.load(f / name, weights_only=True) for f in (one, two, other))
        first, second, third = (s.get("model_g", s) for s in (first, second, third))
        assert all(torch.equal(first[k], second[k]) for k in first), name
        assert not all(torch.equal(first[k], third[k]) for k in first if first[k].is_floating_point()), name
    written = {name: (one / name).stat().st_mtime_ns for name in WEIGHT_FILES}
    said = []
    assert make_weights("tiny", tmp_path / "a", seed=2, log=said.append) == one
    assert said == [] and written == {name: (one / name).stat().st_mtime_ns for name in WEIGHT_FILES}


def test_randomized_tensors_are_well_scaled():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(400, 300), torch.nn.LayerNorm(300))
    randomize_(model, seed=1)
    linear, norm = model
    assert abs(linear.weight.std().item() * 400 ** 0.5 - 1) < 0.05  # std 1/sqrt(fan-in)
    assert abs(linear.bias.std().item() - 0.1) < 0.02 and abs(norm.weight.mean().item() - 1) < 0.02
    assert abs(norm.weight.std().item() - 0.1) < 0.02 and abs(norm.bias.std().item() - 0.1) < 0.02


@pytest.mark.slow
def test_quick_bench_runs_on_our_weights(tmp_path, no_reference):
    make_weights("tiny", tmp_path / "weights", log=lambda message: None)
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--configs", "kv_cache,hifigan", "--weights-dir", str(tmp_path / "weights"),
                     "--out-dir", str(out)]) == 0
    records = json.loads((out / "bench.json").read_text())
    assert [r["config"] for r in records] == ["kv_cache", "hifigan"] and not any("error" in r for r in records)
    assert all(r["audio_s"] > 0 for r in records)
