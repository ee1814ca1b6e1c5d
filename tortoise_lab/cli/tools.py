"""``tortoise-lab download``, ``assets``, ``bench``, ``compare`` and ``train``: fetching, measuring, training."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tortoise_lab import assets
from tortoise_lab.cli.common import (EXIT_FAILED, EXIT_NEEDS_FETCH, CliError, Parser, check_output_file,
                                     check_output_folder, fail, note, seed_value)

BENCH_EXAMPLES = """examples:
  tortoise-lab bench --quick --against-reference --out-dir bench-quick   # smoke test, a minute or two
  tortoise-lab bench --against-reference --out-dir bench-out             # the full table (official sizes)
  tortoise-lab bench --configs kv_cache,ultra_fast_int8_dpm --repeats 1
  tortoise-lab bench --embedded --out-dir bench-embedded                 # the embedded model's main job, RTF
  tortoise-lab bench --steps --out-dir bench-steps                       # what each lossless-path change buys
  tortoise-lab bench --cluster --out-dir bench-cluster                   # read on 1 and 2 Ray workers vs 1 process
"""


def cmd_assets(args: argparse.Namespace) -> int:
    try:  # an archive the user names is checked and unpacked even where the assets are present already
        where = assets.fetch_assets(sdist=args.sdist, force=args.force or args.sdist is not None)
        print(f"official assets (tokenizer, mel norms, built-in voices) are in {where}")
        encoder = assets.fetch_speaker_encoder(wheel=args.speaker_wheel,
                                               force=args.force or args.speaker_wheel is not None)
    except assets.AssetError as error:
        return fail(str(error), EXIT_NEEDS_FETCH)
    print(f"the speaker encoder (Resemblyzer 0.1.4's weights, for voice similarity) is {encoder}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    if args.models_dir:
        check_output_folder(args.models_dir, "--models-dir")
    try:
        paths = assets.download_weights(args.files or None, models_dir=args.models_dir, progress=not args.quiet)
    except assets.AssetError as error:
        return fail(str(error), EXIT_NEEDS_FETCH)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _config_list(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected configuration names like kv_cache,int8, got {value!r}")
    return names


def cmd_bench(args: argparse.Namespace) -> int:
    from tortoise_lab.tools.bench import DEFAULT_CONFIGS, run_benchmark

    for path, flag in ((args.out_dir, "--out-dir"), (args.weights_dir, "--weights-dir")):
        if path is not None:
            check_output_folder(path, flag)
    if args.json is not None:
        check_output_file(args.json, "--json")
    if sum(map(bool, (args.embedded, args.steps, args.cluster))) > 1:
        raise CliError("bench --embedded, --steps and --cluster are different benchmarks; run one at a time.")
    if args.cluster:
        return _bench_cluster(args)
    if args.embedded:
        return _bench_embedded(args)
    if args.steps:
        return _bench_steps(args)
    try:
        records = run_benchmark(quick=args.quick, against_reference=args.against_reference,
                                max_mel_tokens=args.max_mel_tokens, preset=args.preset or "ultra_fast",
                                repeats=args.repeats,
                                configs=args.configs or DEFAULT_CONFIGS, json_path=args.json, out_dir=args.out_dir,
                                seed=args.seed, weights_dir=args.weights_dir, device=args.device,
                                **({"text": args.text} if args.text else {}))
    except ValueError as error:
        raise CliError(str(error)) from None
    except FileNotFoundError as error:
        raise CliError(str(error), EXIT_NEEDS_FETCH) from None
    failed = [f"{r['impl']}/{r['config']}" for r in records if "error" in r]
    if failed:
        return fail(f"{len(failed)} configuration(s) failed: {', '.join(failed)} (see the table).", EXIT_FAILED)
    return 0


def _check_plot_suffix(path: str) -> None:
    from matplotlib.figure import Figure

    kinds = Figure().canvas.get_supported_filetypes()
    if Path(path).suffix.lstrip(".").lower() not in kinds:
        raise CliError(f"cannot save a plot as {path}: give it a .png (or .svg, .pdf) name.")


def _comparable(path: str, wav) -> None:
    """CliError for audio the measures cannot take: NaN samples, or fewer than one spectrum frame's worth."""
    from tortoise_lab.audio import N_FFT
    from tortoise_lab.config import OUTPUT_SAMPLE_RATE
    from tortoise_lab.voices.measure import find_sample_problem

    problem = find_sample_problem(wav.numpy())
    if problem is not None:
        raise CliError(f"{path} cannot be compared: {problem.detail}.")
    shortest = N_FFT // 2 + 1  # the spectra's centred frames reflect-pad half a window on each side
    if wav.shape[-1] < shortest:
        raise CliError(f"{path} is too short to compare: one spectrum frame needs {shortest} samples at "
                       f"{OUTPUT_SAMPLE_RATE} Hz and it has {wav.shape[-1]}.")


def _likeness_to_voice(name: str, wavs: dict) -> dict[str, float]:
    """Each 24 kHz waveform's similarity to the voice ``name`` (encoder and mfcc; the encoder left out, with a
    note, where it cannot run): {"a_voice_encoder": ..., "a_voice_mfcc": ..., ...}."""
    from tortoise_lab.config import OUTPUT_SAMPLE_RATE
    from tortoise_lab.voices import load_voice
    from tortoise_lab.voices.similarity import MEASURES, SimilarityUnavailable, measure, similarity_to_voice

    try:
        voice = load_voice(name)
    except ValueError as error:
        raise CliError(str(error)) from None
    if not voice.clips and not voice.parts:
        raise CliError(f"Voice {name!r} has no clips to compare against; --voice needs a clip voice.")
    values = {}
    for by in MEASURES:
        try:
            scorer = measure(by)
        except SimilarityUnavailable as error:
            note(str(error))
            continue
        for key, wav in wavs.items():
            values[f"{key}_voice_{by}"] = similarity_to_voice(wav, OUTPUT_SAMPLE_RATE, voice, scorer)
    return values


def cmd_compare(args: argparse.Namespace) -> int:
    import warnings

    from tortoise_lab.audio import load_audio
    from tortoise_lab.config import OUTPUT_SAMPLE_RATE
    from tortoise_lab.files import write_json
    from tortoise_lab.tools.compare import compare_waveforms, plot_comparison
    from tortoise_lab.voices.similarity import SimilarityUnavailable, measure

    if args.json:
        check_output_file(args.json, "--json")
    if args.plot:
        check_output_file(args.plot, "--plot")
        _check_plot_suffix(args.plot)
    with warnings.catch_warnings(record=True) as caught:  # "looks wrong" warnings: notes, after the checks below
        warnings.simplefilter("always")
        try:
            a, b = (load_audio(path, OUTPUT_SAMPLE_RATE) for path in (args.a, args.b))
        except (FileNotFoundError, ValueError) as error:
            raise CliError(str(error)) from None
    _comparable(args.a, a)
    _comparable(args.b, b)
    for warning in caught:
        note(str(warning.message))
    try:  # decided before any measuring: without the encoder every other measure still stands
        measure("encoder")
        speaker = True
    except SimilarityUnavailable as error:
        note(str(error))
        speaker = False
    values = compare_waveforms(a, b, speaker=speaker).to_dict()
    if args.voice:
        values.update(_likeness_to_voice(args.voice, {"a": a, "b": b}))
    for name, value in values.items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    if args.json:  # JSON has no inf or nan: identical audio's SNR is written "inf", as the benchmark's records do
        write_json(args.json, {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v
                               for k, v in values.items()})
    if args.plot:
        import matplotlib.pyplot as plt

        plt.close(plot_comparison(a, b, args.plot, labels=(Path(args.a).name, Path(args.b).name)))
        print(f"spectrograms: {args.plot}")
    return 0


def add_parsers(verbs) -> None:
    """download, assets, bench and compare."""
    download = verbs.add_parser("download", help="fetch the official weights from the model hub")
    download.add_argument("--models-dir", default=None, help="download into this folder instead of the hub cache")
    download.add_argument("--files", nargs="+", metavar="FILE", choices=list(assets.WEIGHT_FILES),
                          help=f"only these files (default: all of {', '.join(assets.WEIGHT_FILES)})")
    download.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    download.set_defaults(run=cmd_download)

    fetch = verbs.add_parser("assets", help="fetch the tokenizer, mel norms and built-in voices (tortoise-tts sdist), "
                                            "and the speaker encoder's weights (Resemblyzer 0.1.4 wheel)")
    fetch.add_argument("--sdist", type=Path, default=None, help="use this local tortoise-tts-3.0.0.tar.gz")
    fetch.add_argument("--speaker-wheel", type=Path, default=None,
                       help="use this local Resemblyzer-0.1.4-py3-none-any.whl")
    fetch.add_argument("--force", action="store_true", help="unpack again even if the assets are present")
    fetch.set_defaults(run=cmd_assets)

    _add_bench_parser(verbs)

    compare = verbs.add_parser("compare", help="measure how two WAVs differ (log-mel distance, MCD, SNR, speaker "
                                               "similarity)",
                               description="Log-mel distance, mel-cepstral distortion after DTW, duration "
                                           "difference, SNR and speaker similarity between two recordings of speech.")
    compare.add_argument("a", help="the reference WAV")
    compare.add_argument("b", help="the WAV compared with it")
    compare.add_argument("--plot", default=None, metavar="PNG", help="save both spectrograms and their difference")
    compare.add_argument("--json", default=None, metavar="PATH", help="also write the measures as JSON")
    compare.add_argument("--voice", default=None, metavar="NAME",
                         help="also say how much each file sounds like this voice (speaker encoder and MFCC)")
    compare.set_defaults(run=cmd_compare)


def run_train(argv: list[str]) -> int:
    """``tortoise-lab train ARGS``: ``python -m tortoise_lab.train ARGS``, its usage errors one sentence as ours are
    (its parsers are plain argparse: train/ knows nothing of the CLI). --help and usage errors raise SystemExit,
    which ``main`` turns into the exit code."""
    from tortoise_lab.train.__main__ import main as train_main

    plain_error = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = Parser.error  # for this call only
    try:
        return train_main(argv)
    finally:
        argparse.ArgumentParser.error = plain_error


def add_train_parser(verbs) -> None:
    """train: its arguments go to ``python -m tortoise_lab.train`` (``main`` hands them on before parsing)."""
    train = verbs.add_parser("train", add_help=False,
                             help="train the embedded model (the same as `python -m tortoise_lab.train`; try --help)")
    train.add_argument("train_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # main() hands these on


def _refuse_unused(args: argparse.Namespace, what: str, flags: tuple[str, ...]) -> None:
    """One sentence for the first of ``flags`` (as typed, e.g. "--configs") given to a bench mode that takes none."""
    given = [flag for flag in flags if getattr(args, flag.lstrip("-").replace("-", "_"))]
    if given:
        raise CliError(f"{what} and takes no {given[0]}; drop it.")


def _bench_embedded(args: argparse.Namespace) -> int:
    """``bench --embedded``: the embedded model's main job, its defaults beside the previous ones."""
    from tortoise_lab.tools.bench.embedded import run_embedded_benchmark

    _refuse_unused(args, "bench --embedded times the embedded model's defaults",
                   ("--quick", "--against-reference", "--configs", "--max-mel-tokens", "--weights-dir"))
    try:
        run_embedded_benchmark(**({"text": args.text} if args.text else {}), preset=args.preset or "fast",
                               repeats=args.repeats or 3, seed=args.seed, device=args.device, out_dir=args.out_dir,
                               json_path=args.json)
    except ValueError as error:
        raise CliError(str(error)) from None
    return 0


def _bench_steps(args: argparse.Namespace) -> int:
    """``bench --steps``: each lossless-path change's piece of work, before and after, in one process."""
    from tortoise_lab.tools.bench.steps import run_step_benchmark

    _refuse_unused(args, "bench --steps times pieces of the work on random weights",
                   ("--against-reference", "--configs", "--max-mel-tokens", "--weights-dir", "--text", "--preset",
                    "--json"))
    try:
        rows, _ = run_step_benchmark(quick=args.quick, repeats=args.repeats or 5, out_dir=args.out_dir)
    except ValueError as error:
        raise CliError(str(error)) from None
    for row in rows:
        print(f"{row.piece}: {row.before} {row.before_ms:.2f} ms, {row.after} {row.after_ms:.2f} ms "
              f"({row.speedup:.2f}x; outputs differ by at most {row.max_difference:.2g})")
    return 0


def _bench_cluster(args: argparse.Namespace) -> int:
    """``bench --cluster``: read on a local Ray cluster with 1 and 2 workers, beside one process."""
    from tortoise_lab.cluster import RayMissing
    from tortoise_lab.tools.bench.cluster_read import run_cluster_benchmark

    _refuse_unused(args, "bench --cluster reads on CPU workers",
                   ("--against-reference", "--configs", "--max-mel-tokens", "--weights-dir", "--device"))
    try:
        record = run_cluster_benchmark("tiny" if args.quick else "embedded", args.text,
                                       preset=args.preset or ("ultra_fast" if args.quick else "fast"),
                                       repeats=args.repeats or 1, seed=args.seed, out_dir=args.out_dir)
    except RayMissing as error:
        raise CliError(str(error), EXIT_NEEDS_FETCH) from None
    except ValueError as error:
        raise CliError(str(error)) from None
    if args.json is not None:
        from tortoise_lab.files import write_json

        write_json(args.json, record)
    return 0


def _add_bench_parser(verbs) -> None:
    bench = verbs.add_parser("bench", help="time each stage per option combination, beside upstream tortoise-tts",
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=BENCH_EXAMPLES,
                             description="Time synthesis stage by stage for option combinations, each in its own "
                                         "process, on shared random weights; optionally upstream tortoise-tts "
                                         "3.0.0 too (same weights, same work). See benchmarks/README.md.")
    bench.add_argument("--quick", action="store_true",
                       help="tiny random models, 16 tokens, 4 samples, 1 repeat: a smoke test")
    bench.add_argument("--against-reference", action="store_true",
                       help="also run upstream tortoise-tts from .venv-ref (or $TORTOISE_LAB_REF_PYTHON)")
    bench.add_argument("--max-mel-tokens", type=int, default=None, metavar="N",
                       help="AR codes drawn per sample (random weights never stop early; default 48, quick 16)")
    bench.add_argument("--embedded", action="store_true",
                       help="time the embedded model's main job on a paragraph: its defaults beside the previous "
                            "defaults (writes bench-embedded.json/.md, WAVs and paragraph.png with --out-dir)")
    bench.add_argument("--steps", action="store_true",
                       help="time each lossless-path change's piece of work (the AR step, the latent pass, a guided "
                            "diffusion step) before and after it, in one process, with a profile of the AR step "
                            "(writes bench-steps.json/.md with --out-dir)")
    bench.add_argument("--cluster", action="store_true",
                       help="time `read` of a paragraph on a local Ray cluster with 1 and 2 workers beside one "
                            "process: the overhead per chunk and the speed-up, each on one torch thread (embedded "
                            "model; --quick: the tiny one; needs the cluster extra; writes bench-cluster.json/.md "
                            "with --out-dir)")
    bench.add_argument("--text", default=None, metavar="TEXT",
                       help="the text spoken (default: a pangram; with --embedded, a paragraph of twelve sentences)")
    bench.add_argument("-p", "--preset", default=None, metavar="PRESET",
                       help="the preset the option configurations run (default: ultra_fast; fast with --embedded)")
    bench.add_argument("--repeats", type=int, default=None, metavar="N",
                       help="timed runs per configuration (default: 3; 1 with the KV cache off; 1 with --quick)")
    bench.add_argument("--configs", type=_config_list, default=None, metavar="A,B,...",
                       help="configurations to run, comma-separated (default: every one but int8; the list is "
                            "in benchmarks/README.md)")
    bench.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the records here")
    bench.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                       help="write bench.json, bench.md (table), bench.png (chart) and wavs/ here")
    bench.add_argument("--seed", type=seed_value, default=3, help="synthesis seed, the same for every run (default: 3)")
    bench.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                       help="cache of the shared random weights (default: $TORTOISE_LAB_HOME/bench-weights)")
    bench.add_argument("--device", default=None, metavar="DEVICE", help="cpu or cuda (default: the best available)")
    bench.set_defaults(run=cmd_bench)
