"""What the README shows, a test runs (STYLE.md, principle 14; issue 13, item 7).

The usage block under "## Using it" is parsed here, so a command documented there without a row in ``COMMANDS``
fails the suite, and so does a row whose command left the README. Each command runs in-process
(``cli.main(shlex.split(line)[1:] + extra)``), in README order, in one workspace shared by the module: the files the
commands read (``story.txt``, ``my-recordings/``, ``a.wav``, ``b.wav``) are made here, ``voices prepare`` makes the
voice ``voices match`` uses, and every command must exit 0 and write (or print) what the README says it does.
``extra`` is appended to the documented line (argparse keeps the last value of a repeated flag, so it overrides) to
run the command cheaply without the official weights; the one line that claims to need no downloads,
``speak --tiny ...``, runs exactly as written.

Also: the README's Python block (with ``official_models()`` swapped for ``random_models("tiny")``, as its own comment
suggests), the first two lines of the README (``bash scripts/setup.sh``, ``bash scripts/test.sh``: checked, not
run; CI runs them) and the commands of ``notebooks/README.md``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile

from tortoise_lab import assets
from tortoise_lab.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
NOTEBOOKS_README = REPO / "notebooks" / "README.md"
USAGE_HEADING = "## Using it"

# What makes a synthesis cheap: the tiny random model, the fastest preset, few codes, samples and steps. The latent
# cache is off because the built-in voices are the user's real ones (see `workspace`): no run writes beside them.
CHEAP = ("--tiny -p ultra_fast --max-mel-tokens 16 --num-autoregressive-samples 2 --diffusion-iterations 2 "
         "--no-latent-cache")
HOME = "{home}"  # in `writes`: $TORTOISE_LAB_HOME of the workspace


@dataclass(frozen=True)
class Row:
    extra: str = ""  # appended to the documented line
    writes: tuple[str, ...] = ()  # files it must write, relative to the workspace (or under HOME)
    prints: tuple[str, ...] = ()  # text its standard output must hold
    needs: tuple[str, ...] = ()  # documented lines that must have run first (shared state)
    slow: bool = True


PREPARE = "tortoise-lab voices prepare my-recordings/ me"
COMMANDS: dict[str, Row] = {
    'tortoise-lab speak "Hello there." -v tom -p fast': Row(
        CHEAP, ("output-audio-samples/tom.wav", "output-audio-samples/tom.json")),
    # Exactly as documented (the fast preset's 96 samples and 80 steps, the tiny model's limit of 60 codes): 5.7 s
    # in this test (torch on one thread, load 2.6 on 2 cores); from a shell, 10 s, and 46 s while other jobs ran.
    'tortoise-lab speak --tiny --seed 3 "Try it without downloads."': Row(
        "", ("output-audio-samples/random.wav", "output-audio-samples/random.json"), ("seed: 3",)),
    'tortoise-lab speak "Two voices, one sentence." -v "tom:0.7&emma:0.3" --candidates 3 --sampler dpm++2m '
    '--diffusion-iterations 20': Row(
        CHEAP + " --num-autoregressive-samples 3",  # three candidates need three samples
        tuple(f"output-audio-samples/tom_0.7+emma_0.3{suffix}.{kind}" for suffix in ("", "_candidate1", "_candidate2")
              for kind in ("wav", "json"))),
    "tortoise-lab read story.txt -v tom": Row(
        CHEAP, ("output-audio-samples/story/tom/manifest.json", "output-audio-samples/story/tom/combined.wav",
                "output-audio-samples/story/tom/combined.json")),
    # A local Ray cluster started for the run (one worker: the story is one chunk); tests/test_read_ray.py checks the bytes.
    "tortoise-lab read story.txt -v emma --ray": Row(
        CHEAP, ("output-audio-samples/story/emma/manifest.json", "output-audio-samples/story/emma/combined.wav",
                "output-audio-samples/story/emma/combined.json"), ("combined in combined.wav",)),
    'tortoise-lab speak "Hello there." -v tom --decoder hifigan -o fast.wav': Row(
        "--tiny --max-mel-tokens 16 --no-latent-cache", ("fast.wav", "fast.json")),  # unused settings are refused
    'tortoise-lab speak "Hello there." -v tom --stream -o streamed.wav': Row(
        "--tiny --max-mel-tokens 16 --no-latent-cache", ("streamed.wav", "streamed.json"), ("first audio after",)),
    "tortoise-lab voices list": Row(prints=("tom ", "emma "), slow=False),
    PREPARE: Row(
        "", (f"{HOME}/voices/me/01.wav", f"{HOME}/voices/me/prepare-report.md"), ("voice 'me' is in",)),
    'tortoise-lab voices match me --text "Hi, it\'s me." --seeds 1-20': Row(
        "--tiny --max-mel-tokens 16 --num-autoregressive-samples 2 --diffusion-iterations 2 --seeds 1-2",
        tuple(f"output-audio-samples/seed-search/me/{name}"
              for name in ("ranking.csv", "ranking.md", "seed-1.wav", "seed-2.wav")),
        ("best seed",), needs=(PREPARE,)),
    "tortoise-lab voices similarity tom emma pat": Row(prints=("3 voices, 11 clips", "| encoder |", "| mfcc |"),
                                                      slow=False),
    "tortoise-lab compare a.wav b.wav": Row(prints=("mcd_db: ", "log_mel_distance: ", "speaker_similarity: "),
                                            slow=False),
    "tortoise-lab bench --against-reference": Row(
        "--quick --configs baseline --out-dir bench-out",
        tuple(f"bench-out/{name}" for name in ("bench.json", "bench.md", "bench.png", "wavs/tortoise_lab-baseline.wav",
                                               "wavs/reference-baseline.wav"))),
    "tortoise-lab bench --steps": Row(
        "--quick --repeats 1 --out-dir bench-steps",
        tuple(f"bench-steps/{name}" for name in ("bench-steps.json", "bench-steps.md"))),
    "tortoise-lab bench --embedded": Row(
        '--repeats 1 --out-dir bench-embedded --text "A short one. And another."',
        tuple(f"bench-embedded/{name}" for name in ("bench-embedded.json", "bench-embedded.md", "defaults.wav",
                                                    "previous_defaults.wav"))),
    "tortoise-lab bench --cluster": Row(
        '--quick --text "One. Two." --out-dir bench-cluster',
        tuple(f"bench-cluster/{name}" for name in ("bench-cluster.json", "bench-cluster.md")), ("same bytes",)),
    "tortoise-lab train --help": Row(prints=("usage:", "resumable"), slow=False),
}

# The Python block, made cheap: each (documented text, replacement) must be found exactly once.
PYTHON_SUBSTITUTIONS = (
    ("import official_models", "import official_models, random_models"),
    ("TextToSpeech(official_models())", 'TextToSpeech(random_models("tiny"))'),
    ('preset="fast", seed=3)', 'preset="fast", seed=3, max_mel_tokens=16, num_autoregressive_samples=2, '
                               "diffusion_iterations=2, latent_cache=False)"),
)

# The stream's block ("Fast path and streaming"), made cheap the same way.
STREAM_SUBSTITUTIONS = (
    ("import official_models", "import official_models, random_models"),
    ("TextToSpeech(official_models())", 'TextToSpeech(random_models("tiny"))'),
    ('seed=3)', "seed=3, max_mel_tokens=30, latent_cache=False)"),
)


# ------------------------------------------------------------------------------------------- reading the README


def code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.M | re.S)


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    start = markdown.index(f"\n{heading}\n")
    following = markdown.find("\n## ", start + len(heading) + 2)
    return markdown[start:following if following >= 0 else None]


def command(line: str) -> str:
    """The command of a usage line, its ``# comment`` removed."""
    text = re.split(r"\s#", line, maxsplit=1)[0].strip()
    assert shlex.split(text) == shlex.split(line, comments=True), f"a '#' inside quotes in {line!r}"
    return text


def usage_commands() -> list[str]:
    usage = section(README.read_text(), USAGE_HEADING)
    block = code_blocks(usage, "bash")[0]
    return [command(line) for line in block.splitlines() if line.strip()]


def python_block(index: int = 0) -> str:
    return code_blocks(section(README.read_text(), USAGE_HEADING), "python")[index]


# ------------------------------------------------------------------------------------------- the workspace


def _espeak(path: Path, text: str, voice: str = "en-us+m3", speed: int = 160) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                   capture_output=True)


@dataclass
class Workspace:
    root: Path  # the commands' working folder
    home: Path  # $TORTOISE_LAB_HOME
    done: set[str]  # documented lines that have run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A working folder with the files the README's commands read, and a $TORTOISE_LAB_HOME of its own (``voices
    prepare`` writes there) whose ``assets`` is the real assets folder (the tokenizer, the 30 built-in voices), and ``speaker_encoder`` the real
    speaker-encoder weights."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    real_assets = assets.assets_dir()  # before $TORTOISE_LAB_HOME changes
    if not (real_assets / "voices" / "tom").is_dir():
        pytest.fail(f"the official assets are not unpacked in {real_assets}; run `tortoise-lab assets`.",
                    pytrace=False)
    root, home = tmp_path_factory.mktemp("readme"), tmp_path_factory.mktemp("home")
    (home / "assets").symlink_to(real_assets, target_is_directory=True)
    (home / "speaker_encoder").symlink_to(assets.speaker_encoder_file().parent, target_is_directory=True)
    takes = ["The north wind and the sun were disputing which was the stronger, when a traveler came along.",
             "They agreed that the one who first made the traveler take off his cloak should be the stronger.",
             "Then the north wind blew as hard as he could, but the more he blew, the closer the traveler held it."]
    for number, take in enumerate(takes, start=1):
        _espeak(root / "my-recordings" / f"take{number}.wav", take)
    (root / "story.txt").write_text("The tortoise woke up early. It walked to the river, slowly, and drank.\n")
    _espeak(root / "a.wav", "How much do two renderings differ?", speed=160)
    _espeak(root / "b.wav", "How much do two renderings differ?", speed=180)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORTOISE_LAB_HOME", str(home))
        yield Workspace(root, home, set())


def run_documented(line: str, space: Workspace) -> int:
    """Run a documented line in-process with its row's extra arguments; the exit code (SystemExit's too: a verb
    that hands its arguments on, like ``train --help``, may exit through argparse)."""
    argv = shlex.split(line)
    assert argv[0] == "tortoise-lab", line
    try:
        return main(argv[1:] + shlex.split(COMMANDS[line].extra))
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1


# ------------------------------------------------------------------------------------------- the tests


def test_every_documented_command_has_a_row_and_every_row_a_command():
    documented = usage_commands()
    assert documented, f"no commands found in the bash block under {USAGE_HEADING!r}"
    assert not [line for line in documented if line not in COMMANDS], "documented commands without a row here"
    assert not [line for line in COMMANDS if line not in documented], "rows for commands the README no longer shows"
    assert all(need in documented and documented.index(need) < documented.index(line)
               for line, row in COMMANDS.items() for need in row.needs), "a row needs a line that comes after it"


@pytest.mark.parametrize("line", [pytest.param(line, id=line[len("tortoise-lab "):],
                                               marks=[pytest.mark.slow] if COMMANDS.get(line, Row()).slow else [])
                                  for line in usage_commands()])
def test_documented_command_runs_and_writes_what_it_says(line, workspace, monkeypatch, capsys):
    assert line in COMMANDS, f"{line!r} is documented in README.md but has no row in COMMANDS here"
    monkeypatch.chdir(workspace.root)  # outputs (output-audio-samples/ by default) land in the workspace
    for need in COMMANDS[line].needs:
        if need not in workspace.done:
            assert run_documented(need, workspace) == 0, need
            workspace.done.add(need)
    capsys.readouterr()
    code = run_documented(line, workspace)
    out, err = capsys.readouterr()
    assert code == 0, f"{line} exited {code}:\n{err[-3000:]}"
    workspace.done.add(line)
    row = COMMANDS[line]
    for name in row.writes:
        path = Path(name.replace(HOME, str(workspace.home)))
        path = path if path.is_absolute() else workspace.root / path
        assert path.is_file() and path.stat().st_size > 0, f"{line} did not write {name}"
    for text in row.prints:
        assert text in out, f"{line} did not print {text!r}:\n{out[-3000:]}"


def test_blend_example_speaks_a_sentence():
    """The blend example once had the text "...": nothing pronounceable, so it could only fail."""
    blend = next(line for line in usage_commands() if "&" in line)
    assert re.search(r"[A-Za-z]{3}", shlex.split(blend)[2]), blend


@pytest.mark.slow
def test_python_block_runs_on_the_tiny_model(workspace, monkeypatch):
    source = python_block()
    for documented, cheap in PYTHON_SUBSTITUTIONS:
        assert source.count(documented) == 1, f"the README's Python block no longer holds {documented!r}"
        source = source.replace(documented, cheap)
    monkeypatch.chdir(workspace.root)
    namespace: dict = {}
    exec(compile(source, f"{README}:python block", "exec"), namespace)  # its last line reads every field it names
    speech = namespace["speech"]
    assert speech.wav.numel() > 0 and speech.sample_rate == 24_000 and speech.seed == 3


@pytest.mark.slow
def test_stream_block_runs_on_the_tiny_model(workspace, monkeypatch):
    source = python_block(1)
    assert "tts.stream(" in source
    for documented, cheap in STREAM_SUBSTITUTIONS:
        assert source.count(documented) == 1, f"the README's stream block no longer holds {documented!r}"
        source = source.replace(documented, cheap)
    monkeypatch.chdir(workspace.root)
    namespace: dict = {}
    exec(compile(source, f"{README}:stream block", "exec"), namespace)
    speech = namespace["speech"]
    assert speech.wav.numel() > 0 and speech.seed == 3 and speech.timings["first_audio"] <= speech.timings["total"]


def test_first_commands_are_setup_and_test_and_the_scripts_are_bash():
    """CI runs these two on a clean clone; here they are only checked (setup installs, test runs everything)."""
    first = code_blocks(README.read_text(), "bash")[0]
    lines = [command(line) for line in first.splitlines() if line.strip()]
    assert lines[:2] == ["bash scripts/setup.sh", "bash scripts/test.sh"]
    for line in lines[:2]:
        script = REPO / shlex.split(line)[1]
        assert script.is_file(), script
        assert script.read_text().startswith("#!/usr/bin/env bash\n"), script
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def notebook_commands() -> list[str]:
    """Every `.venv/bin/...` command of notebooks/README.md, inline or in a block, comments removed."""
    text = NOTEBOOKS_README.read_text()
    inline = re.findall(r"`(\.venv/bin/[^`\n]+)`", text)
    blocks = [command(line) for block in code_blocks(text, "bash") for line in block.splitlines() if line.strip()]
    return list(dict.fromkeys(inline + blocks))


# How each notebooks/README.md command is checked: "exists" (an interactive server), "skip" (it rewrites the
# notebooks), "run".
NOTEBOOK_COMMANDS = {
    ".venv/bin/jupyter lab": "exists",
    ".venv/bin/python scripts/clean_notebooks.py --execute": "skip",
    ".venv/bin/python scripts/clean_notebooks.py --check": "run",
}


def test_notebook_readme_commands():
    found = notebook_commands()
    assert sorted(found) == sorted(NOTEBOOK_COMMANDS), found
    for line, how in NOTEBOOK_COMMANDS.items():
        argv = shlex.split(line)
        executable = REPO / argv[0]
        assert executable.is_file() and executable.stat().st_mode & 0o111, f"{line}: {executable} is missing"
        if len(argv) > 1 and argv[1].endswith(".py"):
            assert (REPO / argv[1]).is_file(), line
        if how == "run":
            done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{line} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        elif how == "skip":
            assert argv[-1] in (REPO / argv[1]).read_text(), f"{line}: the script no longer mentions {argv[-1]}"
