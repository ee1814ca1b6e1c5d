"""Evaluate a finished model set on another run's held-out sentences: how two embedded models compare on the
same test, each with its own code book.

    python -m tortoise_lab.train crosseval --model-dir tortoise_lab/data/embedded --run runs/broad \\
        --out runs/broad/eval-shipped.json

``--samples-dir DIR`` also writes a few of those sentences as this set speaks them (WAVs, espeak-ng's renderings,
spectrograms), as the training command's ``samples/``.

``--run`` names a training folder (its ``train_config.json`` gives the corpus recipe: the held-out sentences,
voices and seed; the corpus is read from its cache). The model is conditioned on the same clips as that run's
own evaluation, and measured by the same ``evaluate_run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from tortoise_lab.text import Tokenizer
from tortoise_lab.train.ar import ARConfig, conditioning_pool
from tortoise_lab.train.corpus import Corpus, build_corpus
from tortoise_lab.train.run import TrainConfig, evaluate_run, recipe_sentences, write_samples

__all__ = ["cross_evaluate", "load_run"]


def load_run(run_dir: str | Path, eval_count: int | None = None) -> tuple[TrainConfig, Corpus]:
    """A training folder's config (``train_config.json``, with ``eval_count`` replaced when given) and its corpus,
    read from the run's cache (or synthesised again: the recipe is deterministic)."""
    config_path = Path(run_dir) / "train_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: --run must be a training folder (python -m "
                                "tortoise_lab.train --out-dir ...).")
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    if eval_count is not None:
        config = dataclasses.replace(config, eval_count=eval_count)
    sentences = recipe_sentences(config)
    corpus = build_corpus(sentences, config.voice_list(), config.backend, config.cache_dir or Path(run_dir) / "cache",
                          config.workers, config.seed, progress=config.progress)
    return config, corpus


def cross_evaluate(model_dir: str | Path, run_dir: str | Path, eval_count: int | None = None,
                   samples_dir: str | Path | None = None, samples: int = 3) -> dict:
    """``evaluate_run``'s result for the model set in ``model_dir`` on the held-out split of ``run_dir``'s corpus,
    with the set's own mel decoder (its code decoder, or its code book). With ``samples_dir``, also the training
    command's ``samples`` for ``samples`` of those sentences, spoken by this set (``run.write_samples``)."""
    from tortoise_lab.model_set import embedded_models

    config, corpus = load_run(run_dir, eval_count)
    models = embedded_models(model_dir)
    pool = conditioning_pool(corpus, corpus.indices("train"), ARConfig.pool_size)
    mel_decoder = models.decoder.mel_decoder
    result = evaluate_run(config, models.gpt, models.quantizer, corpus, pool, ARConfig.cond_clips, Tokenizer(),
                          mel_decoder=mel_decoder.decode)
    if samples_dir is not None:
        write_samples(Path(samples_dir), models.gpt, mel_decoder, corpus, pool, ARConfig.cond_clips, Tokenizer(),
                      samples)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tortoise_lab.train crosseval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="a model set folder (config.json + safetensors)")
    parser.add_argument("--run", required=True, help="the training folder whose held-out sentences to use")
    parser.add_argument("--eval-count", type=int, default=None, help="held-out utterances (default: the run's)")
    parser.add_argument("--out", default=None, help="write the result here as JSON (default: stdout only)")
    parser.add_argument("--samples-dir", default=None,
                        help="also write WAVs of held-out sentences spoken by this set, with espeak-ng's renderings "
                             "and spectrograms (as the training command's samples/)")
    parser.add_argument("--samples", type=int, default=3, help="how many, with --samples-dir")
    args = parser.parse_args(argv)
    result = cross_evaluate(args.model_dir, args.run, args.eval_count, args.samples_dir, args.samples)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    json.dump(result["summary"], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
