"""A headless JupyterLab for browser tests, isolated from the user's Jupyter set-up, and notebooks executed for it.

``running_lab(root, home)`` starts ``python -m jupyterlab`` (this interpreter, the project environment) on a free
loopback port with a random token, serving ``root``. Everything Jupyter keeps (config, data, runtime, user
settings, workspaces) lives under ``home``, where a kernelspec with the notebooks' kernel name runs this interpreter,
so the notebooks get the project's kernel whether or not ``scripts/setup.sh`` registered it on this machine. The
server and its kernels inherit test mode (``TORTOISE_LAB_TEST_MODE=1``) and the CPU. On exit the kernels are shut
down through the API and the server's process group is stopped: nothing is left running.

``executed_copy`` runs a notebook with nbconvert the same way (same kernel, same environment) and signs the result
with the server's notary key: JupyterLab sanitises the HTML of an untrusted notebook's outputs, which drops the
``data:`` URLs of its audio players (they show, but play nothing), as it would for any notebook run elsewhere until
``jupyter trust`` trusts it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.sign import NotebookNotary

from tortoise_lab.device import DEVICE_VARIABLE
from tortoise_lab.workspace import TEST_MODE_VARIABLE

START_TIMEOUT_S = 180  # a cold start on a busy 2-core machine
STOP_TIMEOUT_S = 30
# User settings the tests need: every cell rendered (JupyterLab's default renders cells lazily as they scroll into
# view), and no question about fetching news popping up over the notebook.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}


@dataclass(frozen=True)
class Lab:
    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path  # the folder it serves
    env: dict  # the environment of the server and its kernels (nbconvert runs in it too)
    data_dir: Path  # JUPYTER_DATA_DIR: the notary's key and the notebooks it signed

    def page_url(self, notebook: str, workspace: str) -> str:
        """The notebook in a fresh workspace of its own (``reset``: no tabs restored from an earlier page)."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"

    def get(self, path: str) -> tuple[int, bytes]:
        return _request("GET", f"{self.url}{path}", self.token)

    def kernels(self) -> dict[str, str]:
        """The kernel name of each notebook with a session: {path: kernel name}."""
        status, body = self.get("/api/sessions")
        return {session["path"]: session["kernel"]["name"] for session in json.loads(body)} if status == 200 else {}

    def wait_for_kernel(self, notebook: str, timeout_s: float) -> str:
        """Wait until the server has started a kernel for ``notebook``; its name."""
        deadline = time.monotonic() + timeout_s
        while notebook not in self.kernels():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel started for {notebook} in {timeout_s} s")
            time.sleep(0.5)
        return self.kernels()[notebook]


def _request(method: str, url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening yet
        return 0, b""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_environment(home: Path, kernelspec: dict) -> dict:
    """Jupyter's folders under ``home``, a kernelspec (the notebooks' name and display name) running this
    interpreter, the user settings above, and test mode on the CPU: the environment of the server."""
    dirs = {name: home / name for name in ("config", "data", "runtime", "settings", "path")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    # On JUPYTER_PATH, which comes before every other place, the one that scripts/setup.sh registers in .venv too.
    kernel_dir = dirs["path"] / "kernels" / kernelspec["name"]
    kernel_dir.mkdir(parents=True, exist_ok=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": kernelspec["display_name"], "language": "python"}))
    for name, values in SETTINGS.items():
        path = dirs["settings"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return {**os.environ, "JUPYTER_PATH": str(dirs["path"]), "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), TEST_MODE_VARIABLE: "1", DEVICE_VARIABLE: "cpu"}


@contextmanager
def running_lab(root: Path, home: Path, kernelspec: dict):
    """Yield a ``Lab`` serving ``root``; stop its kernels and its process group afterwards."""
    env = lab_environment(home, kernelspec)
    port, token = free_port(), secrets.token_hex(16)
    log = home / "lab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
               "--allow-root"]
    with open(log, "w") as handle:
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, env, Path(env["JUPYTER_DATA_DIR"]))
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while lab.get("/api/status")[0] != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start; the end of its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield lab
    finally:
        _stop(lab, server)


def _stop(lab: Lab, server: subprocess.Popen) -> None:
    # Kernels run in sessions of their own (jupyter_client starts them so), so stopping the server's process group
    # alone could leave them running: shut them down first.
    status, body = lab.get("/api/kernels") if server.poll() is None else (0, b"")
    for kernel in json.loads(body) if status == 200 else []:
        _request("DELETE", f"{lab.url}/api/kernels/{kernel['id']}", lab.token)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
            break
        except subprocess.TimeoutExpired:
            continue


def executed_copy(notebook: Path, lab: Lab, timeout_s: int) -> Path:
    """Run ``notebook`` with nbconvert in the lab's environment (its kernel, test mode), write the result, outputs
    included, beside the lab's other notebooks as ``NAME.executed.ipynb``, signed so the lab trusts it."""
    name = f"{notebook.stem}.executed"
    run = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute",
                          f"--ExecutePreprocessor.timeout={timeout_s}", f"--output-dir={lab.root}",
                          f"--output={name}", str(notebook)],
                         env=lab.env, capture_output=True, text=True, timeout=timeout_s)
    if run.returncode != 0:
        raise RuntimeError(f"nbconvert could not run {notebook.name}; the end of its output:\n{run.stderr[-3000:]}")
    path = lab.root / f"{name}.ipynb"
    executed = nbformat.read(path, as_version=4)
    NotebookNotary(data_dir=str(lab.data_dir)).sign(executed)
    nbformat.write(executed, path)
    return path
