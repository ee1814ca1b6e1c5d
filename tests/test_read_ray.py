"""``read --ray`` (issue 19): the same book, byte for byte, from one process, from one Ray worker and from two, and
after a worker and then the driver were killed mid-way and the run resumed; a killed worker's chunk made again
elsewhere; a chunk that fails twice reported while the rest of the book is read.

One local Ray cluster (2 CPUs) serves the module; each read is the CLI in-process (``cli.main``) on the tiny model,
except the driver that is killed, which is a subprocess joining the same cluster by its address. The reference is a
plain read with ``--threads 1``: the workers' thread count (on CPU the bytes can depend on it; see reading.set_threads).
What may differ between engines: the sidecars' timings, worker and command (``VOLATILE``); nothing else.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
import soundfile

from tortoise_lab import cli
from tortoise_lab.cluster import FAULTS_VARIABLE, RAY_PIN, check_address, cluster_device
from tortoise_lab.files import read_json
from tortoise_lab.reading import COMBINED_STEM, MANIFEST_NAME

REPO = Path(__file__).resolve().parent.parent
TINY = ["--tiny", "-q", "-p", "ultra_fast", "--num-autoregressive-samples", "2", "--max-mel-tokens", "12",
        "--diffusion-iterations", "3", "--seed", "11"]
STORY = " | ".join(f"Here is chunk number {word} of the story." for word in "zero one two three four five".split())
CHUNKS = 6
VOLATILE = {"timings_s", "worker", "command"}  # sidecar fields that may differ between engines and runs
WAIT_S = 180  # at most, for a worker to reach a held chunk (actors start in seconds; a busy CI machine is slower)


def _tone(path: Path, hz: float, seconds: float = 1.0, rate: int = 22_050) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), [0.3 * math.sin(2 * math.pi * hz * i / rate) for i in range(int(seconds * rate))], rate)


@dataclass
class Book:
    root: Path  # story.txt and voices/alpha (a tone)

    def argv(self, out: Path, *extra: str) -> list[str]:
        return ["read", str(self.root / "story.txt"), *TINY, "-v", "alpha", "-V", str(self.root / "voices"),
                "-O", str(out), *extra]

    def read(self, out: Path, *extra: str) -> int:
        return cli.main(self.argv(out, *extra))


@dataclass
class Output:
    wavs: dict[str, bytes]
    sidecars: dict[str, dict]  # without VOLATILE fields
    manifest: dict


def _output(out: Path) -> Output:
    folder = out / "story" / "alpha"
    wavs = {p.name: p.read_bytes() for p in sorted(folder.glob("*.wav"))}
    sidecars = {p.name: {k: v for k, v in read_json(p).items() if k not in VOLATILE}
                for p in sorted(folder.glob("*.json")) if p.name != MANIFEST_NAME}
    return Output(wavs, sidecars, read_json(folder / MANIFEST_NAME))


def _wait_for(condition, what: str, driver: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if driver is not None and driver.poll() is not None:
            pytest.fail(f"the driver exited ({driver.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module; its GCS address (the killed driver joins it by that)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Book:
    root = tmp_path_factory.mktemp("book")
    (root / "story.txt").write_text(STORY, encoding="utf-8")
    _tone(root / "voices" / "alpha" / "a.wav", 220)
    return Book(root)


@pytest.fixture(scope="module")
def reference(book, tmp_path_factory) -> Output:
    """Today's read, in this process, with the workers' thread count."""
    out = tmp_path_factory.mktemp("plain")
    assert book.read(out, "--threads", "1") == 0
    output = _output(out)
    assert len(output.wavs) == CHUNKS + 1 and all(s["threads"] == 1 for s in output.sidecars.values()
                                                  if "chunk_index" in s)
    return output


# ------------------------------------------------------------------------------------------- without a cluster


def test_without_ray_read_ray_says_how_to_install_it(book, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert book.read(tmp_path, "--ray") == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'tortoise-lab[cluster]'" in err, err
    assert not (tmp_path / "story").exists()


@pytest.mark.parametrize("extra, phrase", [
    (["--workers", "2"], "--workers needs --ray"),
    (["--threads", "0"], "expected a whole number from 1 up"),
    (["--ray", "story.txt"], "a text file goes before --ray"),
])
def test_cluster_flags_are_checked_before_any_work(book, tmp_path, capsys, extra, phrase):
    assert book.read(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and phrase in err, err


def test_addresses_and_devices_a_cluster_read_takes():
    assert [check_address(a) for a in (None, "auto", "ray://head:10001", "10.0.0.1:6379")] == [
        None, "auto", "ray://head:10001", "10.0.0.1:6379"]
    with pytest.raises(ValueError, match="text file goes before"):
        check_address("book.txt")
    assert (cluster_device("auto", 0), cluster_device("auto", 8), cluster_device("cpu", 8)) == ("cpu", "cuda", "cpu")
    with pytest.raises(ValueError, match="no GPUs"):
        cluster_device("cuda", 0)
    with pytest.raises(ValueError, match="GPU of its own"):
        cluster_device("cuda:1", 8)


def test_a_run_removes_the_scratch_a_killed_one_left(book, tmp_path):
    folder = tmp_path / "story" / "alpha"
    folder.mkdir(parents=True)
    left = folder / ".3.wav.0123456789ab.part"  # files.scratch_path's name: a WAV a SIGKILL cut short
    left.write_bytes(b"RIFF")
    assert book.read(tmp_path, "--threads", "1") == 0
    assert not left.exists() and not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_the_ray_pin_is_the_cluster_extras_and_constraints():
    pins = [line.split("#")[0].strip() for line in (REPO / "constraints.txt").read_text().splitlines()]
    assert RAY_PIN in pins


# ------------------------------------------------------------------------------------------- on the cluster


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_make_the_same_bytes_as_one_process(cluster, book, reference, tmp_path, workers, capsys):
    assert book.read(tmp_path, "--ray", "--workers", str(workers)) == 0, capsys.readouterr().err
    output = _output(tmp_path)
    assert output.wavs == reference.wavs  # every chunk and the joined book, bit for bit
    assert output.sidecars == reference.sidecars  # timings, worker and command aside
    assert output.manifest == reference.manifest
    folder = tmp_path / "story" / "alpha"
    makers = {read_json(folder / f"{i}.json")["worker"] for i in range(CHUNKS)}
    # A worker takes chunks as soon as its models are loaded, so with chunks this small the first one ready may make
    # them all; in the tests below a chunk is held on one worker while another makes the rest.
    assert 1 <= len(makers) <= workers
    assert "combined in combined.wav" in capsys.readouterr().out
    if workers == 2:  # --regenerate redoes just those chunks on the cluster, to the same bytes
        before = {p.name: p.stat().st_mtime_ns for p in folder.glob("[0-9]*.wav")}
        assert book.read(tmp_path, "--ray", "--workers", "2", "--regenerate", "1,4") == 0
        after = {p.name: p.stat().st_mtime_ns for p in folder.glob("[0-9]*.wav")}
        assert sorted(name for name in before if before[name] != after[name]) == ["1.wav", "4.wav"]
        assert _output(tmp_path).wavs == reference.wavs


# The README's Python block (section "A book on a cluster"), made cheap; each documented text must be found once.
README_SUBSTITUTIONS = (
    ("import official_models", "import official_models, random_models"),
    ('TextToSpeech(official_models(device="cpu"))', 'TextToSpeech(random_models("tiny"))'),
    ('Settings.from_preset("fast", device=reader.device)',
     'Settings.from_preset("ultra_fast", device=reader.device, max_mel_tokens=12, num_autoregressive_samples=2, '
     "diffusion_iterations=3, latent_cache=False)"),  # no latent cache written beside the built-in voice
)


@pytest.mark.slow
def test_the_readme_python_block_reads_on_the_cluster(cluster, tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## A book on a cluster"):]
    source = section[section.index("```python\n") + len("```python\n"):]
    source = source[:source.index("```")]
    for documented, cheap in README_SUBSTITUTIONS:
        assert source.count(documented) == 1, f"the README's cluster block no longer holds {documented!r}"
        source = source.replace(documented, cheap)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.txt").write_text(STORY, encoding="utf-8")
    namespace: dict = {}
    exec(compile(source, "README.md:cluster block", "exec"), namespace)
    result = namespace["result"]
    assert result.failed == {} and result.combined.is_file() and result.chunks == CHUNKS


@pytest.mark.slow
def test_a_killed_workers_chunk_is_made_again_elsewhere(cluster, book, reference, tmp_path, monkeypatch):
    held = tmp_path / "held.pid"
    monkeypatch.setenv(FAULTS_VARIABLE, f"hold=1:{held}")  # chunk 1's first attempt waits to be killed
    killed: list[int] = []

    def kill_the_worker_on_chunk_1():
        deadline = time.monotonic() + WAIT_S
        while not held.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if held.exists():
            killed.append(int(held.read_text()))
            os.kill(killed[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker_on_chunk_1)
    killer.start()
    rc = book.read(tmp_path / "out", "--ray", "--workers", "2")
    killer.join()
    assert killed and rc == 0
    output = _output(tmp_path / "out")
    assert output.wavs == reference.wavs and output.sidecars == reference.sidecars
    assert [c["attempts"] for c in output.manifest["chunks"]] == [1, 2, 1, 1, 1, 1]
    makers = [read_json(tmp_path / "out" / "story" / "alpha" / f"{i}.json")["worker"] for i in range(CHUNKS)]
    assert not makers[1].startswith(f"{killed[0]}@")  # chunk 1 was made by another worker


@pytest.mark.slow
def test_a_chunk_that_fails_twice_is_reported_and_the_rest_is_read(cluster, book, reference, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.setenv(FAULTS_VARIABLE, "fail=2")
    assert book.read(tmp_path, "--ray", "--workers", "2") == 1
    out = capsys.readouterr().out
    assert "1 failed (chunk 2: RuntimeError: chunk 2 fails on purpose" in out and "run the same command again" in out
    output = _output(tmp_path)
    entry = output.manifest["chunks"][2]
    assert (entry["done"], entry["attempts"]) == (False, 2) and "fails on purpose" in entry["error"]
    assert [c["done"] for c in output.manifest["chunks"]] == [True, True, False, True, True, True]
    assert output.manifest["combined"] is None
    assert output.wavs == {name: data for name, data in reference.wavs.items()
                           if name not in ("2.wav", f"{COMBINED_STEM}.wav")}  # no joined book with a gap

    # Run again, in this process this time (engines are interchangeable): only chunk 2 is made, and the book is whole.
    monkeypatch.delenv(FAULTS_VARIABLE)
    assert book.read(tmp_path, "--threads", "1") == 0
    output = _output(tmp_path)
    assert output.wavs == reference.wavs
    assert "error" not in output.manifest["chunks"][2] and output.manifest["combined"] == f"{COMBINED_STEM}.wav"


@pytest.mark.slow
def test_a_killed_worker_and_a_killed_driver_then_resumed_make_the_same_bytes(cluster, book, reference, tmp_path):
    held_2, held_4 = tmp_path / "2.pid", tmp_path / "4.pid"
    env = {**os.environ, FAULTS_VARIABLE: f"hold=2:{held_2},hold=4:{held_4}",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "driver.log"
    folder = tmp_path / "out" / "story" / "alpha"
    with open(log, "w") as sink:
        driver = subprocess.Popen([sys.executable, "-m", "tortoise_lab", *book.argv(tmp_path / "out"), "--ray",
                                   cluster, "--workers", "2"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for(held_2.exists, "a worker held chunk 2", driver, log)
        os.kill(int(held_2.read_text()), signal.SIGKILL)  # its chunk is made again by another worker
        _wait_for(lambda: held_4.exists() and (folder / "2.json").exists(), "chunk 2 made again, and chunk 4 held",
                  driver, log)
    finally:
        driver.send_signal(signal.SIGKILL)  # mid-book: chunk 4 is held, chunks 0-3 are written
        driver.wait()

    # What the killed run left is whole: each chunk it finished is the reference's; the rest is simply not there.
    left = _output(tmp_path / "out")
    assert left.wavs and set(left.wavs) < set(reference.wavs) and "4.wav" not in left.wavs
    assert all(reference.wavs[name] == data for name, data in left.wavs.items())
    assert {"0.wav", "1.wav", "2.wav", "3.wav"} <= set(left.wavs)

    assert book.read(tmp_path / "out", "--ray", cluster, "--workers", "2") == 0  # the same command resumes
    output = _output(tmp_path / "out")
    assert output.wavs == reference.wavs and output.sidecars == reference.sidecars
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no scratch of the killed driver
