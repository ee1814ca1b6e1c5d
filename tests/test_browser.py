"""The notebooks in a real browser: headless Chromium drives JupyterLab from the project environment.

1. ``05_playground``: Run > Run All Cells, then press the playground's button; a new take with a player must come
   into the history (the button runs synthesis in a thread, and the result reaches the page through the widget
   messages, which only a browser exercises).
2. ``07_streaming``: Run > Run All Cells; the stream's pieces must have reached the page's audio queue as they were
   made (each one scheduled on the Web Audio clock: ``window.tortoiseLabStreams``), and the queue must end as a
   player of the whole take.
3. ``03_optimisations``, executed with nbconvert, trusted as ``jupyter trust`` would (JupyterLab strips the audio from
   an untrusted notebook's players) and opened without running it: every audio player it stored must load its
   audio and every plot must show.

Both run in test mode (the embedded model, short texts) on the CPU, in a JupyterLab serving a temporary copy of
``notebooks/`` (``tests/support/lab.py``). Each test saves a screenshot of what it checked in
``output-audio-samples/screenshots/`` (not committed): ``05_playground.png``, ``03_optimisations.png`` (its players)
and ``03_optimisations.plots.png``; ``NAME.failed.png`` when a test fails. Without Chromium
(``apt-get install chromium chromium-driver``) or Playwright (the dev extra) they skip and say which is missing.
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path

import nbformat
import pytest

from tests.support.lab import executed_copy, running_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
SCREENSHOTS = REPO / "output-audio-samples" / "screenshots"
PLAYGROUND = "05_playground"
STREAMING = "07_streaming"
# What the page's stream queues received: per player, the pieces and samples scheduled (workspace.streaming).
QUEUED = "name => Object.values(window[name] || {}).map(s => ({pieces: s.pieces, samples: s.samples}))"
EXECUTED = "03_optimisations"  # the notebook with the most players (one per speed option) and plots
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
NO_CHROMIUM = "No Chromium to drive: install it with `apt-get install chromium chromium-driver` (.ci/run does)."
NO_PLAYWRIGHT = "Playwright is not installed: it comes with the dev extra (`bash scripts/setup.sh`)."
SPEAK_BUTTON = re.compile(r"^\s*(Generate|Speak)\s*$")  # the playground's button, by the label it has shown
VIEWPORT = {"width": 1400, "height": 1200}
# Generous limits: a busy 2-core machine, where the kernel's first imports alone take tens of seconds.
ACTION_TIMEOUT_MS = 60_000
RUN_ALL_TIMEOUT_MS = 600_000
SPEAK_TIMEOUT_MS = 600_000
EXECUTE_TIMEOUT_S = 900
LOAD_TIMEOUT_MS = 120_000

# The status bar names the kernel and says it is idle, or a dialog asks something.
KERNEL_READY_OR_ASKED = """name => !!document.querySelector('.jp-Dialog') ||
  (document.querySelector('#jp-main-statusbar')?.textContent || '').includes(`${name} | Idle`)"""
# Run All has finished: the kernel is idle, no cell is queued or running ([*]) and the first code cell ran.
RUN_ALL_DONE = """panel => {
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  return status === 'idle' && prompts.length > 0 && !prompts.some(p => p.includes('*')) && /\\d/.test(prompts[0]);
}"""
PROMPTS = "panel => [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"
STDERR = "els => els.map(e => e.textContent.slice(-600))"
# What each player and picture shows the user: a player's source and length, an image's source and size.
PLAYERS = """players => players.map(a => ({src: (a.currentSrc || a.querySelector('source')?.src || '').slice(0, 22),
                                       duration: a.duration, ready: a.readyState}))"""
PLAYERS_LOADED = "players => players.length > 0 && players.every(a => a.readyState >= 1 && a.duration > 0)"
IMAGES = "images => images.map(i => ({src: i.src.slice(0, 22), width: i.naturalWidth, complete: i.complete}))"
IMAGES_LOADED = "images => images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0)"


def _kernelspec() -> dict:
    """The kernel the notebooks ask for ("tortoise-lab"); the lab runs it with the project environment."""
    return nbformat.read(NOTEBOOKS / f"{PLAYGROUND}.ipynb", as_version=4).metadata.kernelspec


def _chromium() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's: Playwright's own browser downloads are not needed), driven by Playwright."""
    executable = _chromium()
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(NO_PLAYWRIGHT)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    """JupyterLab serving a temporary copy of the notebooks (the repository's stay untouched), in test mode."""
    root = tmp_path_factory.mktemp("notebooks")
    for path in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy2(path, root)
    with running_lab(root, tmp_path_factory.mktemp("jupyter"), _kernelspec()) as server:
        yield server


@contextmanager
def notebook_page(browser, lab, notebook: str, workspace: str):
    """A page with ``notebook`` open in JupyterLab; yields the page and the notebook's panel. When the block fails,
    the page is saved as ``NAME.failed.png`` beside the screenshots, to see what it showed."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(lab.page_url(notebook, workspace))
        panel = page.locator(".jp-NotebookPanel")
        panel.locator(".jp-Cell").first.wait_for(timeout=LOAD_TIMEOUT_MS)
        _wait_for_kernel(page, lab, notebook)
        yield page, panel
    except BaseException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with suppress(Exception):  # the failure itself is what matters
            page.screenshot(path=SCREENSHOTS / f"{Path(notebook).stem}.failed.png")
        raise
    finally:
        context.close()


def _wait_for_kernel(page, lab, notebook: str) -> None:
    """Wait until the notebook's kernel (the project's) has started and the page is connected to it. Should the page
    ask which kernel to start (JupyterLab does when it could not start the preferred one by itself, which a slow
    server can cause), answer as a user would: the preferred one, which must be the project's."""
    name = _kernelspec()["display_name"]
    assert lab.wait_for_kernel(notebook, LOAD_TIMEOUT_MS / 1000) == _kernelspec()["name"]
    while True:
        page.wait_for_function(KERNEL_READY_OR_ASKED, arg=name, timeout=LOAD_TIMEOUT_MS)
        dialog = page.locator(".jp-Dialog")
        if not dialog.count():
            return
        assert "Select Kernel" in dialog.inner_text(), dialog.inner_text()
        assert dialog.locator("select").evaluate("s => s.options[s.selectedIndex].text") == name
        dialog.locator("button.jp-mod-accept").click()
        dialog.wait_for(state="detached")


def _run_all_cells(page, panel) -> None:
    """Run > Run All Cells, as a user would, and wait until every cell has run (or one failed)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(RUN_ALL_DONE, arg=panel.element_handle(), timeout=RUN_ALL_TIMEOUT_MS)
    prompts = panel.evaluate(PROMPTS)
    errors = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').evaluate_all(
        STDERR)
    assert all(re.search(r"\d", p) for p in prompts), f"not every cell ran: {prompts}; stderr: {errors}"


def _wait(page, condition: str, elements, timeout_ms: int) -> None:
    """Wait until ``condition`` holds for the located elements; the assertion that follows says what they show."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"([els]) => ({condition})(els)", arg=[elements.element_handles()],
                               timeout=timeout_ms)
    except PlaywrightTimeout:
        pass


def _screenshot(page, element, name: str) -> Path:
    element.evaluate("e => e.scrollIntoView({block: 'start'})")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path)
    return path


def test_the_playground_speaks_in_the_browser(browser, lab):
    from playwright.sync_api import expect

    with notebook_page(browser, lab, f"{PLAYGROUND}.ipynb", workspace="playground") as (page, panel):
        _run_all_cells(page, panel)

        # By its text: the accessible name would include the icon font's glyph.
        speak = page.locator("button.jupyter-button", has_text=SPEAK_BUTTON)
        playground = panel.locator(".jp-OutputArea-output .widget-vbox", has=speak).first
        button = playground.locator(speak)
        history = playground.locator(":scope > .widget-output").last  # the last part of the playground
        takes = history.locator("audio")
        before = takes.count()  # the notebook's own run (playground.generate()) left one take already
        button.click()
        expect(takes).to_have_count(before + 1, timeout=SPEAK_TIMEOUT_MS)
        newest = takes.first  # newest first
        _wait(page, PLAYERS_LOADED, newest, LOAD_TIMEOUT_MS)
        (player,) = newest.evaluate_all(PLAYERS)
        assert player["src"].startswith("data:audio/wav") and player["duration"] > 0, player
        _screenshot(page, playground, PLAYGROUND)


def test_the_stream_plays_in_the_page_as_it_arrives(browser, lab):
    from tortoise_lab.workspace.streaming import STREAMS_REGISTRY

    with notebook_page(browser, lab, f"{STREAMING}.ipynb", workspace="streaming") as (page, panel):
        _run_all_cells(page, panel)
        queues = page.evaluate(QUEUED, STREAMS_REGISTRY)
        assert len(queues) == 1, queues  # one stream played, one queue
        # Test mode: 59 codes, so pieces after 8, 28 and 48 codes and the rest; 64 samples a frame (tiny HiFiGAN).
        assert queues[0]["pieces"] == 4 and queues[0]["samples"] > 0, queues
        table = panel.locator(".jp-RenderedMarkdown table", has_text="ready at s")
        assert table.locator("tbody tr").count() == queues[0]["pieces"]  # the timeline lists what was played
        stream_cell = panel.locator(".jp-Cell", has_text="play_stream(stream)")
        player = stream_cell.locator(".jp-OutputArea-output audio")  # the queue, replaced by the whole take
        _wait(page, PLAYERS_LOADED, player, LOAD_TIMEOUT_MS)
        (shown,) = player.evaluate_all(PLAYERS)
        assert shown["src"].startswith("data:audio/wav") and shown["duration"] > 0, shown
        assert abs(shown["duration"] - queues[0]["samples"] / 24_000) < 0.01  # the take is what was queued
        _screenshot(page, stream_cell, STREAMING)


def _stored(notebook) -> tuple[int, int]:
    """How many audio players (HTML with an <audio>) and PNG pictures the notebook's outputs hold."""
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    players = sum("<audio" in o.get("data", {}).get("text/html", "") for o in outputs)
    pictures = sum("image/png" in o.get("data", {}) for o in outputs)
    return players, pictures


def test_an_executed_notebook_shows_its_players_and_plots(browser, lab):
    from playwright.sync_api import expect

    executed = executed_copy(lab.root / f"{EXECUTED}.ipynb", lab, EXECUTE_TIMEOUT_S)
    players, pictures = _stored(nbformat.read(executed, as_version=4))
    assert players > 0 and pictures > 0, f"{EXECUTED} stored {players} players and {pictures} pictures"
    with notebook_page(browser, lab, executed.name, workspace="executed") as (page, panel):
        audio, images = panel.locator(".jp-OutputArea-output audio"), panel.locator(".jp-RenderedImage img")
        expect(audio).to_have_count(players, timeout=LOAD_TIMEOUT_MS)
        expect(images).to_have_count(pictures, timeout=LOAD_TIMEOUT_MS)
        _wait(page, PLAYERS_LOADED, audio, LOAD_TIMEOUT_MS)
        _wait(page, IMAGES_LOADED, images, LOAD_TIMEOUT_MS)
        shown_players, shown_images = audio.evaluate_all(PLAYERS), images.evaluate_all(IMAGES)
        assert all(p["src"].startswith("data:audio/wav") and p["duration"] > 0 for p in shown_players), shown_players
        assert all(i["src"].startswith("data:image/png") and i["width"] > 0 for i in shown_images), shown_images
        cell = "xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-Cell ')]"
        _screenshot(page, audio.first.locator(cell), EXECUTED)  # the players
        _screenshot(page, images.first.locator(cell), f"{EXECUTED}.plots")
