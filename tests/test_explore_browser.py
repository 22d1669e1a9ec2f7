"""`lyra explore` in headless Chromium: upload, move a slider, export, a bad upload.

Needs the `explore` extra (Gradio), the `test` extra (Playwright, whose Python package drives
the system's Chromium: `make test` installs Debian's `chromium` as root). Skipped only where no
Chromium is installed. The page's screenshot is saved in tmp_path and, if set, in $LYRA_ARTIFACTS.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lyra_core.discovery import load_plugins
from lyra_core.explore.explorer import Explorer
from lyra_core.services.model import load_model
from tests.conftest import missing_system_packages
from tests.test_explore import GAUSSIAN, RATE, make_run, tiny_spec, tone

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = os.environ.get("LYRA_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000

# Without a browser the tests skip with tools/system_packages.sh's line (what to install, and how).
NO_CHROMIUM = (
    (missing_system_packages("browser") or "no chromium on PATH") if CHROMIUM is None else ""
)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
    pytest.mark.filterwarnings("ignore::Warning:gradio"),  # Gradio's own pandas deprecations
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Explorer]]:
    """The page for a tiny untrained model, served from this process on a free local port."""
    pytest.importorskip("gradio", reason="the explore extra: pip install -e '.[explore]'")
    from lyra_core.explore import page as explore_ui

    plugins = load_plugins()
    run = make_run(tmp_path_factory.mktemp("browser") / "run", tiny_spec(GAUSSIAN), plugins)
    examples = run / "validation" / "step-0000001"
    examples.mkdir(parents=True)
    sf.write(examples / "example0_original.wav", tone(0.2, freq=330.0), RATE)
    explorer = Explorer.open(load_model(run, plugins, device="cpu"), components=3)
    port = free_port()
    app = explore_ui.serve(explorer, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", explorer
    finally:
        app.close()
        explorer.close()


@pytest.fixture
def page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs it")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1300, "height": 1100})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def audio_link(page, elem_id: str, after: str | None = None) -> str:
    """The download link of an audio or file component, waiting for one other than `after`."""
    selector = f"#{elem_id} a[href*='gradio_api/file=']"
    page.wait_for_function(
        "([sel, old]) => { const a = document.querySelector(sel); "
        "return a && a.href && a.href !== old; }",
        arg=[selector, after],
    )
    return page.locator(selector).first.get_attribute("href")


def fetch(page, url: str) -> bytes:
    response = page.request.get(url)
    assert response.ok, f"{url}: {response.status}"
    return response.body()


def message(page) -> str:
    return page.locator("#lyra-message textarea").input_value()


def save_screenshot(page, tmp_path: Path) -> None:
    shot = tmp_path / "explore.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("LYRA_ARTIFACTS"):
        folder = Path(os.environ["LYRA_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, folder / "explore.png")


def test_upload_move_a_slider_export_and_survive_a_bad_upload(server, page, tmp_path):
    url, explorer = server
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(0.5), RATE)
    page.goto(url)
    page.locator("#upload input[type=file]").set_input_files(str(wav))
    first = audio_link(page, "current")
    still, rate = sf.read(io.BytesIO(fetch(page, first)), dtype="float32")
    assert rate == RATE and len(still) == len(tone(0.5))
    assert "si_sdr" in page.locator("#metrics").inner_text()

    # drag PC1 towards its right end: decoded on release
    track = page.locator("#pc1 input[type=range]")
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=5)
    page.mouse.up()
    moved_link = audio_link(page, "current", after=first)
    moved, _ = sf.read(io.BytesIO(fetch(page, moved_link)), dtype="float32")
    assert float(page.locator("#pc1 input[type=number]").input_value()) > 1.0
    assert moved.shape == still.shape and np.abs(moved - still).max() > 1e-3

    # export as 24-bit FLAC at 16 kHz
    page.locator("#fmt label", has_text="flac").click()
    page.locator("#bits label", has_text="24").click()
    rate_box = page.locator("#rate input")
    rate_box.fill("16000")
    rate_box.press("Enter")
    page.locator("#export").click()
    info = sf.info(io.BytesIO(fetch(page, audio_link(page, "exported"))))
    assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_24", 16000)
    assert (explorer.run_dir / "explore" / "exports" / "tone.flac").is_file()

    # a file that is not audio: a message on the page, and the server still answers
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    page.locator("#upload button[aria-label=Clear]").click()
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    page.wait_for_function(
        "() => document.querySelector('#lyra-message textarea').value.includes('not an audio')"
    )
    assert "notes.wav" in message(page)
    page.locator("#pick input").click()
    page.get_by_role("option", name="example0_original.wav").click()
    audio_link(page, "current", after=moved_link)
    assert message(page) == ""
    save_screenshot(page, tmp_path)
