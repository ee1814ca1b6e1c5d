"""The notebooks: in reading order, thin, parameterised, stored clean, and served by JupyterLab.

nbval runs them (pytest collects ``notebooks/``, see pyproject.toml); these tests check what nbval cannot: the
shape every notebook follows, and that a headless JupyterLab starts with the project kernel and serves each one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
READING_ORDER = ("01_installation", "02_presets", "03_optimisations", "04_custom_voice", "05_playground",
                 "06_listening", "07_streaming")
KERNEL = "tortoise-lab"
SHELL_OUT = re.compile(r"^\s*(!|%pip|%conda|%%bash|%%sh|%system)|subprocess|os\.system", re.MULTILINE)
LAB_START_TIMEOUT_S = 90
MAX_NOTEBOOK_BYTES = 60_000  # narrative and code only: a stored output this large would be an image or audio

sys.path.insert(0, str(REPO / "scripts"))
import clean_notebooks  # noqa: E402


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def read(path: Path):
    return nbformat.read(path, as_version=4)


def test_the_notebooks_are_there_in_reading_order():
    assert [p.stem for p in notebook_paths()] == list(READING_ORDER)


@pytest.mark.parametrize("name", READING_ORDER)
def test_one_parameters_cell_then_the_test_mode_switch(name):
    cells = read(NOTEBOOKS / f"{name}.ipynb").cells
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: one cell tagged 'parameters', found {len(tagged)}"
    following = cells[tagged[0] + 1]
    assert following.cell_type == "code" and "TEST_MODE = test_mode()" in following.source
    assert not any("test_mode()" in c.source for c in cells[:tagged[0]])


@pytest.mark.parametrize("name", READING_ORDER)
def test_notebooks_are_thin(name):
    """Narrative and package calls: no installs or shell-outs, no functions or classes defined in a cell."""
    notebook = read(NOTEBOOKS / f"{name}.ipynb")
    assert notebook.metadata["kernelspec"]["name"] == KERNEL
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert not [s for s in code if SHELL_OUT.search(s)]
    assert not [s for s in code if re.search(r"^\s*(def|class) ", s, re.MULTILINE)]
    assert any("tortoise_lab" in s for s in code)
    markdown = [c.source for c in notebook.cells if c.cell_type == "markdown"]
    assert markdown and markdown[0].startswith("# ")


@pytest.mark.parametrize("name", READING_ORDER)
def test_notebooks_are_stored_clean_with_their_checked_outputs(name):
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.read_text() == clean_notebooks.cleaned_text(path), f"run scripts/clean_notebooks.py on {path}"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES
    checked = [c for c in read(path).cells if clean_notebooks.is_checked(c)]
    assert checked, f"{name}: no cell's output is checked by nbval"
    assert all(c.outputs for c in checked), f"{name}: a checked cell has no stored output to compare with"


def test_the_cleaner_drops_run_noise_and_keeps_checked_text():
    spec = {"name": KERNEL, "display_name": "Python (tortoise-lab)"}
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": spec, "widgets": {"state": {}}})
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", execution_count=7,
                                        outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                                                 nbformat.v4.new_output("display_data",
                                                                        data={"image/png": "AAAA"})])
    other = nbformat.v4.new_code_cell("x", execution_count=8, metadata={"scrolled": True},
                                      outputs=[nbformat.v4.new_output("execute_result", data={"text/plain": "2"},
                                                                      execution_count=8)])
    notebook.cells = [checked, other]
    clean_notebooks.clean(notebook)
    assert notebook.metadata == {"kernelspec": spec, "language_info": {"name": "python"}}
    assert [o.output_type for o in checked.outputs] == ["stream"] and checked.execution_count == 1
    assert other.outputs == [] and other.execution_count is None and other.metadata == {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return 0, b""


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A headless JupyterLab on a free loopback port, rooted at the repository; stopped after the tests."""
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path_factory.mktemp("jupyter") / "lab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(log.parent / "runtime")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={REPO}", "--ServerApp.port_retries=0",
               "--allow-root"]
    with open(log, "w") as handle:
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    try:
        while _get(f"{base}/api/status", token)[0] != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_jupyterlab_serves_the_lab_page_and_the_project_kernel(jupyterlab):
    base, token = jupyterlab
    status, page = _get(f"{base}/lab", token)
    assert status == 200 and b"JupyterLab" in page
    status, body = _get(f"{base}/api/kernelspecs", token)
    specs = json.loads(body)["kernelspecs"]
    assert status == 200 and KERNEL in specs, f"kernel {KERNEL!r} not registered: {sorted(specs)}"
    assert specs[KERNEL]["spec"]["display_name"] == "Python (tortoise-lab)"


@pytest.mark.parametrize("name", READING_ORDER)
def test_jupyterlab_opens_each_notebook(jupyterlab, name):
    base, token = jupyterlab
    status, body = _get(f"{base}/api/contents/notebooks/{name}.ipynb?content=1", token)
    assert status == 200
    model = json.loads(body)
    assert model["type"] == "notebook" and model["content"]["metadata"]["kernelspec"]["name"] == KERNEL
    assert len(model["content"]["cells"]) == len(read(NOTEBOOKS / f"{name}.ipynb").cells)
    status, _ = _get(f"{base}/lab/tree/notebooks/{name}.ipynb", token)
    assert status == 200
