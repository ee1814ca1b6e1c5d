"""The package's layout keeps its promises (issue 12): layers import only downwards, each decision has one home,
files and CLI functions stay short, and the pipeline never branches on which model set it runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "tortoise_lab"

# Each module's layer, lowest first: a module may import its own layer and the ones below it, never one above.
# The longest matching prefix decides. train/ is apart: it may use layers up to the pipeline, and only the CLI
# (handing `tortoise-lab train` on) imports it.
LAYERS = {
    "tortoise_lab": 0, "tortoise_lab.config": 0, "tortoise_lab.files": 0, "tortoise_lab.device": 0,
    "tortoise_lab.assets": 1, "tortoise_lab.checkpoints": 1, "tortoise_lab.text": 1, "tortoise_lab.audio": 1,
    "tortoise_lab.models": 2,
    "tortoise_lab.fast": 3, "tortoise_lab.voices": 3, "tortoise_lab.tools.compare": 3, "tortoise_lab.outputs": 3,
    "tortoise_lab.speech": 3,
    "tortoise_lab.stages": 4,
    "tortoise_lab.model_set": 5,
    "tortoise_lab.pipeline": 6,
    "tortoise_lab.reading": 7, "tortoise_lab.voices.seed_search": 7, "tortoise_lab.cluster": 7.5,
    "tortoise_lab.tools": 8, "tortoise_lab.tools.bench": 8, "tortoise_lab.workspace": 8, "tortoise_lab.widgets": 9,
    "tortoise_lab.cli": 10, "tortoise_lab.__main__": 10,
    "tortoise_lab.train": 6.5,
}
MAX_FILE_LINES = 400
MAX_CLI_FUNCTION_LINES = 60
LONG_FILE_REASON = "Longer than 400 lines because"  # a module over the limit says why in its docstring


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> float:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported tortoise_lab module, line) for every import, also inside functions; not those under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("tortoise_lab")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("tortoise_lab"):
                continue
            for alias in node.names:  # `from tortoise_lab.stages import sampling` imports a module
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in _modules() else base, node.lineno))
    return found


def test_no_module_imports_one_above_its_layer():
    wrong = []
    for module, path in _modules().items():
        for imported, line in _imports(path):
            if imported.startswith("tortoise_lab.train") and not (module.startswith(("tortoise_lab.train",
                                                                                    "tortoise_lab.cli"))):
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {imported} (only the CLI may use train/)")
            elif _layer(imported) > _layer(module) and not module.startswith("tortoise_lab.cli"):
                wrong.append(f"{path.relative_to(REPO)}:{line} ({_layer(module)}) imports {imported} "
                             f"({_layer(imported)})")
    assert not wrong, "\n".join(wrong)


def test_the_layer_table_knows_every_module():
    assert all(any(m == p or m.startswith(p + ".") for p in LAYERS) for m in _modules())


def _definitions(pattern: str, where: Path = PACKAGE) -> list[str]:
    regex = re.compile(pattern)
    return [f"{p.relative_to(REPO)}:{i}" for p in sorted(where.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if regex.search(line)]


@pytest.mark.parametrize("what, pattern, home", [
    ("text chunking", r"^def (chunk_text|split_text)\b", "tortoise_lab/text.py"),
    ("model choice", r"^def resolve_models\b", "tortoise_lab/model_set.py"),
    ("the 'no weights' sentence", r"needs its weights", "tortoise_lab/model_set.py"),
    ("Settings", r"^class Settings\b", "tortoise_lab/config.py"),
    ("seed drawing", r"SystemRandom\(\)", "tortoise_lab/config.py"),
    ("the seed range", r"^SEED_RANGE\s*=", "tortoise_lab/config.py"),
    ("the default batch size", r"^DEFAULT_BATCH_SIZE\s*=|BATCH\w* = 16", "tortoise_lab/config.py"),
    ("the sample rates", r"^(INPUT|OUTPUT)_SAMPLE_RATE\s*=", "tortoise_lab/config.py"),
    ("which options leave the audio unchanged", r"LOSSLESS\s*=", "tortoise_lab/config.py"),
    ("device resolution", r"^def choose_device\b", "tortoise_lab/device.py"),
    ("atomic writing", r"os\.replace\(|os\.rename\(|\.replace\(path\)", "tortoise_lab/files.py"),
    ("audio reading", r"soundfile\.read\(|sf\.read\(|soundfile\.SoundFile\(.*\"r\"", "tortoise_lab/audio.py"),
])
def test_each_decision_is_made_in_one_place(what, pattern, home):
    found = _definitions(pattern)
    assert found and all(f.startswith(home + ":") for f in found), f"{what}: {found}"


def test_the_pipeline_does_not_branch_on_the_model_kind():
    source = (PACKAGE / "pipeline.py").read_text()
    assert ".kind" not in source and "diffusion is None" not in source and "embedded" not in source


def test_files_are_short_or_say_why():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        docstring = ast.get_docstring(ast.parse("\n".join(lines))) or ""
        if len(lines) > MAX_FILE_LINES and LONG_FILE_REASON not in docstring.replace("\n", " "):
            long.append(f"{path.relative_to(REPO)}: {len(lines)} lines")
    assert not long, long


def test_cli_functions_are_short():
    long = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLI_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert not long, long


def test_the_readme_layout_names_every_module():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    missing = []
    for module, path in _modules().items():
        relative = path.relative_to(PACKAGE)
        shown = relative.parent.name + "/" if relative.name == "__init__.py" else relative.name
        if shown == "./" or relative.parts[0] in ("train", "models") and len(relative.parts) > 1 and \
                relative.name != "__init__.py":
            continue  # train/ and models/ are listed as folders with their files in their own READMEs/docstrings
        if shown not in section:
            missing.append(str(relative))
    assert not missing, f"README layout section does not name: {missing}"


def test_every_test_the_readme_names_exists():
    """The README cites tests as `tests/FILE.py` or `tests/FILE.py::name` (`::other` continues the last file)."""
    readme = (REPO / "README.md").read_text()
    missing, last = [], None
    for file, name in re.findall(r"`(tests/[\w/]+\.py|)(?:::(\w+))?`", readme):
        if not file and not name:
            continue
        file = file or last
        last = file
        path = REPO / file
        if not path.is_file():
            missing.append(file)
        elif name and not re.search(rf"^def {name}\b", path.read_text(), re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert not missing, missing
