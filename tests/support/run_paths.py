"""Runs each user-facing path once with fixed seeds and prints the sha256 of every WAV it wrote, as JSON.

Used by tests/test_same_bytes.py against two package trees: the one under test and the tree before the redesign
(``git archive``), each put first on PYTHONPATH. It only uses what both trees offer: the CLI's verbs and flags,
``Playground``, ``embedded_models``, ``TextToSpeech`` and ``save_audio``.

    python tests/support/run_paths.py OUT_DIR
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import torch


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.wav"))}


def _cli(*argv: str) -> None:
    from tortoise_lab.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(list(argv))
    if code != 0:
        raise SystemExit(f"tortoise-lab {' '.join(argv)} exited {code}: {err.getvalue()[-2000:]}")


def _plain_weights() -> bool:
    """Prepacked weights (a speed-up added after the redesign, on by default) compute the same numbers in another
    order: equal within fp32 rounding, not in every bit. The comparison is about code that moved, so this tree runs
    with plain weights, as the tree before it had no others. True when this tree has them (and they are now off)."""
    try:
        from tortoise_lab.stages import decode, sampling
    except ImportError:  # the tree before the redesign
        return False
    if not hasattr(sampling, "prepacked_if_asked"):
        return False
    sampling.prepacked_if_asked = decode.prepacked_if_asked = lambda model, *args, **kwargs: model
    return True


def main(out: Path) -> dict[str, dict[str, str]]:
    torch.set_num_threads(1)  # bit-exact results need the same thread count in both runs
    import tortoise_lab

    prepacks = _plain_weights()

    results: dict[str, dict[str, str]] = {"package": {"file": tortoise_lab.__file__}}
    small = ("--max-mel-tokens", "24", "--num-autoregressive-samples", "2", "--diffusion-iterations", "4", "-q")

    speak = out / "speak"
    _cli("speak", "--tiny", "--seed", "3", "Hello there.", "-O", str(speak), "-p", "ultra_fast", *small)
    _cli("speak", "--tiny", "--seed", "5", "Two takes, one voice.", "-v", "espeak_us_f2", "--candidates", "2",
         "-O", str(speak / "cand"), "-p", "ultra_fast", *small)
    _cli("speak", "--model", "embedded", "--seed", "7", "A short sentence.", "-v", "espeak_us_m3", "-O",
         str(speak / "embedded"), "-p", "ultra_fast", "--num-autoregressive-samples", "4", "-q")
    _cli("speak", "--model", "embedded", "--seed", "7", "A blend of two.", "-v", "espeak_us_m3&espeak_gb_f4",
         "-O", str(speak / "blend"), "-p", "ultra_fast", "--num-autoregressive-samples", "2", "-q")
    results["speak"] = _digests(speak)

    read = out / "read"
    text = out / "story.txt"
    text.write_text("First part of the story.|Second part, a little longer.|The end.")
    reading = ("read", str(text), "--tiny", "--seed", "11", "-O", str(read), "-p", "ultra_fast", *small)
    _cli(*reading)
    (read / "story" / "random" / "1.wav").unlink()  # lost chunk: the second run resumes and redoes only it
    (read / "story" / "random" / "combined.wav").unlink()
    _cli(*reading)
    results["read"] = _digests(read)

    match = out / "match"
    _cli("voices", "match", "espeak_en_us", "--text", "Hi there.", "--seeds", "1-2", "--tiny", "-O", str(match),
         "--max-mel-tokens", "16", "--num-autoregressive-samples", "2", "--diffusion-iterations", "4", "-q")
    results["voices_match"] = _digests(match)

    bench = out / "bench"
    # The benchmark's workers are processes of their own: with prepacked weights, its kv_cache_plain configuration is
    # what kv_cache was before them.
    cached = "kv_cache_plain" if prepacks else "kv_cache"
    _cli("bench", "--quick", "--configs", f"baseline,{cached}", "--out-dir", str(bench), "--weights-dir",
         str(out / "bench-weights"))
    results["bench_quick"] = {name.replace(cached, "kv_cache"): digest for name, digest in _digests(bench).items()}

    from tortoise_lab.audio import save_audio
    from tortoise_lab.model_set import embedded_models
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.widgets import Playground

    playground = Playground(TextToSpeech(embedded_models(), progress=False), voice="espeak_us_m3",
                            overrides={"num_autoregressive_samples": 2})
    playground.text.value, playground.seed.value = "The playground speaks.", 13
    speech = playground.generate()
    widgets = out / "widgets"
    save_audio(widgets / "playground.wav", speech.wav, speech.sample_rate)
    results["widgets"] = _digests(widgets)
    shutil.rmtree(out / "bench-weights", ignore_errors=True)
    return results


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
