"""The built documentation site in headless Chromium: it renders, its search finds a component
by name, and no page logs a console error. Skipped only where no Chromium is installed (as the
explorer's browser test). Screenshots are saved in tmp_path and, if set, in $LYRA_ARTIFACTS."""

from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.test_docs import build_site
from tests.test_explore_browser import ARGS, CHROMIUM, TIMEOUT_MS

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (make test adds it)"
)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no line per request in the test output
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    """The site built as `make docs` builds it, served from this process on a free port."""
    folder = tmp_path_factory.mktemp("docs") / "site"
    done = build_site(folder)
    assert done.returncode == 0, done.stderr[-3000:]
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser_page() -> Iterator[tuple[object, list[str]]]:
    """A page and the console errors (and uncaught exceptions) it logs."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs it")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}"))
        try:
            yield page, errors
        finally:
            context.close()
            browser.close()


def save(page, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    if os.environ.get("LYRA_ARTIFACTS"):
        folder = Path(os.environ["LYRA_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, folder / name)


def test_the_site_renders_and_search_finds_a_component(site, browser_page, tmp_path):
    page, errors = browser_page
    page.goto(site)
    assert page.locator("article h1").inner_text().startswith("Lyra")
    assert page.locator("nav.md-nav a", has_text="Troubleshooting").count() > 0

    search = page.locator("input.md-search__input")
    search.click()
    search.press_sequentially("snake_beta")  # Material searches on key presses
    hit = page.locator(".md-search-result__item a[href*='activation.snake_beta']").first
    hit.wait_for()
    save(page, tmp_path, "docs-search.png")
    hit.click()
    page.wait_for_url(re.compile(r"/reference/components/.*#activation\.snake_beta$"))
    heading = page.locator("[id='activation.snake_beta']")
    assert heading.is_visible() and heading.inner_text().startswith("snake_beta")

    page.goto(site + "benchmarks/")
    plot = page.locator("img[src*='mel_distance.png']")
    assert plot.evaluate("img => img.complete && img.naturalWidth > 0")
    page.goto(site + "getting-started/")
    save(page, tmp_path, "docs-getting-started.png")
    assert errors == []
