"""Test fixtures shared by the whole suite."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# The unit and parity tests mean the CPU (bit-exact comparisons, CPU-only options): an unset device choice is the
# CPU for them, on a GPU machine too (tortoise_lab.device reads this). Tests meant for CUDA ask for it by name, and
# the notebooks pass their own DEVICE parameter.
os.environ.setdefault("TORTOISE_LAB_DEVICE", "cpu")
REF_SCRIPTS = Path(__file__).resolve().parent / "parity" / "ref"


def reference_python() -> Path:
    return Path(os.environ.get("TORTOISE_LAB_REF_PYTHON", REPO / ".venv-ref" / "bin" / "python"))


class Reference:
    """Runs one reference-side script (tests/parity/ref/) in the reference environment and returns its tensors."""

    def __init__(self, python: Path, root: Path):
        self.python = python
        self.root = root
        self._count = 0

    def run(self, script: str, args: dict | None = None, inputs: dict[str, torch.Tensor] | None = None,
            timeout: float = 1200) -> tuple[dict[str, torch.Tensor], Path]:
        """Run ``script`` and return (its output tensors, its working folder, where it may have left files)."""
        from safetensors.torch import load_file, save_file

        self._count += 1
        work = self.root / f"{self._count:03d}-{Path(script).stem}"
        work.mkdir(parents=True)
        (work / "args.json").write_text(json.dumps(args or {}))
        if inputs:
            save_file({k: v.detach().cpu().clone().contiguous() for k, v in inputs.items()}, str(work / "inputs.safetensors"))
        done = subprocess.run(
            [str(self.python), str(REF_SCRIPTS / script), str(work)],
            capture_output=True, text=True, timeout=timeout, cwd=str(REF_SCRIPTS),
        )
        if done.returncode != 0:
            raise RuntimeError(f"reference script {script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
        outputs_path = work / "outputs.safetensors"
        outputs = load_file(str(outputs_path)) if outputs_path.exists() else {}
        return outputs, work


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Reference:
    python = reference_python()
    if not python.exists():
        pytest.fail(
            f"The reference environment is missing ({python}); create it with `bash scripts/setup-reference.sh` "
            "(the README's test command does this for you).",
            pytrace=False,
        )
    return Reference(python, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models gain
    nothing from a second thread, on a shared 2-core machine its spin-waiting makes each convolution hundreds of
    times slower, and bit-exact comparisons (resume) need the same thread count in both runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
