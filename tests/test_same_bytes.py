"""The redesign (issue 12) moved code, not behaviour: every user path writes the same WAV bytes as before it.

``tests/support/run_paths.py`` runs speak (random and clip voices, candidates, the embedded model, a blend), read
with a resumed chunk, voices match, bench --quick and the widgets' Playground with fixed seeds, once with the
package as it was before the redesign (``git archive`` of ``PRE_REDESIGN_COMMIT``) and once with this tree, each
in its own process on one thread; every WAV must be byte-identical. Both trees speak with this tree's embedded
model files (copied into the old tree): the redesign moved code, and a retrained model since changed weights. The
embedded set's mel decoder is the exception: the learned code decoder (issue 17) came after the redesign and the old
tree cannot run it, so both trees get the set with its manifest naming the code book (which this tree still runs,
as it does for any set made before the code decoder); this tree runs from a copy of its package holding that set.
The code decoder itself is held to its own bytes by tests/test_code_decoder.py (deterministic training) and to its
measures by tests/test_embedded.py. This tree runs with plain weights (``run_paths._plain_weights``): prepacked ones, added since and on by default, round
differently (tests/test_fast.py holds them to the plain numbers within fp32 rounding).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, reference_python

pytestmark = pytest.mark.slow

PRE_REDESIGN_COMMIT = "6bb210e"  # the last commit before the layout of issue 12
PATHS = ("speak", "read", "voices_match", "bench_quick", "widgets")


def _run_paths(package_root, out, tmp_path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package_root), "TORTOISE_LAB_REF_PYTHON": str(reference_python()),
           "TORTOISE_LAB_HOME": os.environ.get("TORTOISE_LAB_HOME", "")}
    if not env["TORTOISE_LAB_HOME"]:
        del env["TORTOISE_LAB_HOME"]
    done = subprocess.run([sys.executable, str(REPO / "tests" / "support" / "run_paths.py"), str(out)],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _codebook_set(shipped) -> None:
    """Replace the embedded set in ``shipped`` by this tree's, its manifest naming the code book (not the code
    decoder, which the tree before the redesign cannot run)."""
    from tortoise_lab.model_set import CODE_DECODER_FILE

    shutil.rmtree(shipped)
    shutil.copytree(REPO / "tortoise_lab" / "data" / "embedded", shipped,
                    ignore=shutil.ignore_patterns(CODE_DECODER_FILE))
    manifest = json.loads((shipped / "config.json").read_text())
    manifest["sha256"].pop(CODE_DECODER_FILE, None)
    (shipped / "config.json").write_text(json.dumps({**manifest, "mel_decoder": "codebook"}, indent=1))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    old = tmp_path_factory.mktemp("pre-redesign")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PRE_REDESIGN_COMMIT], capture_output=True)
    assert archive.returncode == 0, (f"this test needs the git history (commit {PRE_REDESIGN_COMMIT}): "
                                     f"{archive.stderr.decode()[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    _codebook_set(old / "tortoise_lab" / "data" / "embedded")
    new = tmp_path_factory.mktemp("this-tree")  # this working tree's files (as git sees them), the same code-book set
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (new / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, new / name)
    _codebook_set(new / "tortoise_lab" / "data" / "embedded")
    before = _run_paths(old, tmp_path_factory.mktemp("out-before"), old)
    after = _run_paths(new, tmp_path_factory.mktemp("out-after"), new)
    return before, after, new


def test_each_tree_ran_its_own_package(both):
    before, after, new = both
    assert before["package"]["file"] != after["package"]["file"]
    assert after["package"]["file"].startswith(str(new))


@pytest.mark.parametrize("path", PATHS)
def test_the_same_wav_bytes_as_before_the_redesign(both, path):
    before, after, _ = both
    assert before[path], f"{path} wrote no WAV"
    assert after[path] == before[path]
