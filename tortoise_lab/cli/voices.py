"""``tortoise-lab voices``: list voices, prepare a voice from raw recordings, and search seeds for a voice."""

from __future__ import annotations

import argparse
from pathlib import Path

from tortoise_lab.cli.common import CliError, check_output_folder, check_voice_dirs, flag_names
from tortoise_lab.cli.options import add_model_options
from tortoise_lab.voices import user_voices_dir

DEFAULT_MATCH_DIR = "output-audio-samples/seed-search"


def format_voice_table(extra_dirs) -> str:
    from tortoise_lab.voices import RANDOM_VOICE, describe_voices

    rows = [(RANDOM_VOICE, "-", "-", "(a new voice from the random-latent generators)")]
    for info in sorted(describe_voices(extra_dirs), key=lambda v: v.name):
        clips = "latents" if info.latents_file and not info.clips else str(info.clips)
        rows.append((info.name, clips, f"{info.seconds:.1f}", str(info.folder)))
    widths = [max(len(row[i]) for row in rows + [("voice", "clips", "seconds", "folder")]) for i in range(3)]
    lines = [f"{'voice':<{widths[0]}}  {'clips':>{widths[1]}}  {'seconds':>{widths[2]}}  folder"]
    lines += [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    return "\n".join(lines)


def cmd_voices_list(args: argparse.Namespace) -> int:
    check_voice_dirs(args.voices_dir)
    print(format_voice_table(args.voices_dir))
    return 0


def cmd_voices_prepare(args: argparse.Namespace) -> int:
    from tortoise_lab.voices.prep import prepare_voice

    target = Path(args.voices_dir) if args.voices_dir else user_voices_dir()
    check_output_folder(target, "--voices-dir")
    report = prepare_voice(args.sources, args.name, target, denoise=args.denoise, overwrite=args.overwrite)
    print(report.to_text())
    print(f"voice {args.name!r} is in {target / args.name} (report: prepare-report.md)")
    return 0


def cmd_voices_match(args: argparse.Namespace) -> int:
    from tortoise_lab.config import Settings
    from tortoise_lab.model_set import resolve_models
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.voices.seed_search import match_seeds, parse_seeds, write_table
    from tortoise_lab.voices import load_voice

    seeds = parse_seeds(args.seeds)
    overrides = {k: v for k, v in (("max_mel_tokens", args.max_mel_tokens),
                                   ("num_autoregressive_samples", args.num_autoregressive_samples),
                                   ("diffusion_iterations", args.diffusion_iterations)) if v is not None}
    try:
        settings = Settings.from_preset(args.preset, **overrides)  # checked now, naming the flag, before any load
    except ValueError as error:
        raise CliError(flag_names(str(error))) from None
    check_voice_dirs(args.voices_dir)
    out_dir = Path(args.output_dir) / args.name
    check_output_folder(out_dir, "-O/--output-dir")
    voice = load_voice(args.name, args.voices_dir)
    chosen = resolve_models("tiny" if args.tiny else args.model, args.models_dir, args.device)
    if args.tiny or not args.quiet:
        print(chosen.message, flush=True)
    try:
        chosen.models.fit(settings)  # a value typed beyond the model's limits fails before any take
    except ValueError as error:
        raise CliError(flag_names(str(error))) from None
    tts = TextToSpeech(chosen.models, progress=not args.quiet)
    try:
        ranking = match_seeds(tts, voice, args.text, seeds, out_dir, settings=settings, rank_by=args.rank_by)
    except ValueError as error:  # CVVP asked for where the model set has none
        raise CliError(str(error)) from None
    csv_path, md_path = write_table(ranking, out_dir)
    print(md_path.read_text(), end="")
    print(f"WAVs and ranking.csv/.md in {out_dir}")
    return 0


def cmd_voices_similarity(args: argparse.Namespace) -> int:
    from tortoise_lab.assets import builtin_voices_dir
    from tortoise_lab.voices import load_voice
    from tortoise_lab.voices.similarity import MEASURES, SimilarityUnavailable, measure, separation

    check_voice_dirs(args.voices_dir)
    names = args.names or sorted(p.name for p in builtin_voices_dir().iterdir() if p.is_dir())
    voices = [v for v in (load_voice(name, args.voices_dir) for name in names) if len(v.clips) >= 2]
    if len(voices) < 2:
        raise CliError("Name at least two voices with two clips or more each (or fetch the built-in ones with "
                       "`tortoise-lab assets`).")
    print(f"{len(voices)} voices, {sum(len(v.clips) for v in voices)} clips")
    print("| measure | same voice: mean, min | different voices: mean, max | clips nearest their own voice |")
    print("|---|---|---|---|")
    for name in ([args.measure] if args.measure else MEASURES):
        try:
            found = separation(voices, measure(name))
        except SimilarityUnavailable as error:
            raise CliError(str(error)) from None
        print(f"| {name} | {found.same_mean:.3f}, {found.same_min:.3f} | {found.different_mean:.3f}, "
              f"{found.different_max:.3f} | {found.nearest_own:.0%} ({found.clips - len(found.misplaced)} of "
              f"{found.clips}) |")
    return 0


def add_parser(verbs) -> None:
    from tortoise_lab.voices.seed_search import RANKINGS

    voices = verbs.add_parser("voices", help="list, prepare and match voices")
    actions = voices.add_subparsers(dest="voices_verb", required=True, metavar="ACTION")
    extra = dict(action="append", default=None, metavar="DIR", help="a folder of extra voices, searched first")

    listing = actions.add_parser("list", help="every voice with its number of clips and seconds")
    listing.add_argument("-V", "--voices-dir", **extra)
    listing.set_defaults(run=cmd_voices_list)

    prepare = actions.add_parser("prepare", help="raw recordings -> a clean voice folder, with a report")
    prepare.add_argument("sources", nargs="+", metavar="SRC", help="audio files or folders of them (never modified)")
    prepare.add_argument("name", metavar="NAME", help="the new voice's name")
    prepare.add_argument("--voices-dir", default=None, metavar="DIR",
                         help=f"where the voice folder goes (default: {user_voices_dir()})")
    prepare.add_argument("--denoise", action=argparse.BooleanOptionalAction, default=True,
                         help="spectral-gating noise reduction (default: on)")
    prepare.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                         help="replace an existing voice of that name")
    prepare.set_defaults(run=cmd_voices_prepare)

    similar = actions.add_parser("similarity", help="how well each similarity measure tells the voices' speakers "
                                                    "apart, clip by clip")
    similar.add_argument("names", nargs="*", metavar="NAME", help="voices with two clips or more (default: the built-in "
                                                                  "voices)")
    similar.add_argument("--measure", choices=("encoder", "mfcc"), default=None, help="only this measure")
    similar.add_argument("-V", "--voices-dir", **extra)
    similar.set_defaults(run=cmd_voices_similarity)

    match = actions.add_parser("match", help="synthesise with several seeds and rank them by likeness to the voice")
    match.add_argument("name", metavar="NAME", help="a clip voice")
    match.add_argument("--text", required=True, help="what to say")
    match.add_argument("--seeds", default="1-20", help="seeds to try, like 1-20 or 3,7,9 (default: 1-20)")
    match.add_argument("-V", "--voices-dir", **extra)
    match.add_argument("--rank-by", choices=RANKINGS, default="encoder",
                       help="the measure that orders the takes: encoder (speaker-encoder similarity; mfcc where its "
                            "weights are missing), mfcc (MFCC statistics) or cvvp (official weights only); the table "
                            "shows every measure that ran (default: encoder)")
    match.add_argument("-p", "--preset", default="ultra_fast", help="preset for each take (default: ultra_fast)")
    match.add_argument("-O", "--output-dir", default=DEFAULT_MATCH_DIR, metavar="DIR",
                       help=f"WAVs and the ranking go to DIR/NAME (default: {DEFAULT_MATCH_DIR})")
    add_model_options(match)
    match.add_argument("--max-mel-tokens", type=int, default=None, help="override the preset")
    match.add_argument("--num-autoregressive-samples", type=int, default=None, help="override the preset")
    match.add_argument("--diffusion-iterations", type=int, default=None, help="override the preset")
    match.add_argument("-q", "--quiet", action=argparse.BooleanOptionalAction, default=False, help="no progress bars")
    match.set_defaults(run=cmd_voices_match)
