"""`lyra report`: the listening page holds every file's three players and spectrograms under
relative links, its model version is the decoding of the `.lyra` file beside it, bad input is one
line, and in headless Chromium (skipped only where none is installed) every player loads and
plays its file, every picture loads and nothing logs an error."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import soundfile as sf

from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.inference.report import spectrogram
from lyra_core.services.compress import open_codec
from lyra_core.services.model import load_model
from tests.test_docs_browser import browser_page, save  # noqa: F401 (a fixture)
from tests.test_explore_browser import CHROMIUM, NO_CHROMIUM

from .test_compress import RATE, music, trained

pytestmark = pytest.mark.usefixtures("small_and_eager")
SYSTEMS = ("original", "model", "opus")
SHIPPED = Path(__file__).resolve().parents[1] / "docs" / "listen" / "index.html"


class Links(HTMLParser):
    """The page's players, pictures and links, by tag: [(tag, the address it names)]."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        address = named.get("href") if tag == "a" else named.get("src")
        if tag in ("audio", "img", "a") and address:
            self.found.append((tag, address))


def links(index: Path) -> list[tuple[str, str]]:
    parser = Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.found


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("report"), "listened")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """Two files, one whose name a link must escape."""
    folder = tmp_path_factory.mktemp("music")
    paths = [folder / "tones.wav", folder / "a song #2.flac"]
    for i, path in enumerate(paths):
        sf.write(path, music(1.5 + i, seed=i)[0, 0].numpy(), RATE)
    return paths


@pytest.fixture(scope="module")
def page(run, sources, tmp_path_factory) -> Path:
    (run / "rd").mkdir()
    (run / "rd" / "rd.png").write_bytes(spectrogram(music(1.0)[0].numpy(), RATE))  # a picture
    out = tmp_path_factory.mktemp("page") / "listen"
    args = ["--run", str(run), *map(str, sources), "-o", str(out), "--no-visqol"]
    assert main(["report", *args]) == 0
    return out / "index.html"


def test_the_page_has_each_files_three_players_and_pictures_under_relative_links(page, sources):
    found = links(page)
    audio = [a for tag, a in found if tag == "audio"]
    images = [a for tag, a in found if tag == "img"]
    assert len(audio) == len(sources) * len(SYSTEMS)
    assert len(images) == len(sources) * len(SYSTEMS) + 1  # and the rate–distortion plot
    assert "rd.png" in images
    for source in sources:
        stem = source.stem
        assert {unquote(a) for a in audio if unquote(a).startswith(f"{stem}/")} == {
            f"{stem}/{s}.flac" for s in SYSTEMS
        }
    for _, address in found:
        assert not urlparse(address).scheme and not address.startswith("/"), address
        assert (page.parent / unquote(address)).is_file(), address
    assert "a%20song%20%232/model.flac" in audio  # escaped, as a browser reads it


def test_the_model_version_is_the_decoding_of_the_lyra_file_beside_it(page, run, sources):
    codec = open_codec(load_model(run, load_plugins(), "cpu"), log=lambda _: None)
    folder = page.parent / sources[0].stem
    data = (folder / f"{sources[0].stem}.lyra").read_bytes()
    decoded = codec.decode(data, "x.lyra")[0].numpy()
    heard, rate = sf.read(folder / "model.flac", dtype="float32", always_2d=True)
    assert rate == RATE and heard.T.shape == decoded.shape
    assert np.abs(heard.T - np.clip(decoded, -1, 1)).max() < 2 / 2**15  # 16 bits, dithered
    kbps = len(data) * 8 / (decoded.shape[-1] / RATE) / 1000
    section = page.read_text().split("<h2>tones.wav</h2>")[1].split("<h2>")[0]
    assert f"<b>model</b><br>{kbps:.2f} kbps" in section


def test_the_means_are_over_all_the_audio_and_leave_the_original_out(page, sources):
    means = page.read_text().split("<h2>Means over the files</h2>")[1].split("</table>")[0]
    sizes = sum((page.parent / s.stem / f"{s.stem}.lyra").stat().st_size for s in sources)
    seconds = sum(sf.info(str(s)).duration for s in sources)
    assert f'<tr><td>model</td><td class="n">{sizes * 8 / seconds / 1000:.2f}</td>' in means
    assert "<td>opus</td>" in means and "original" not in means


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("missing", "missing.wav: no such file or folder"),
        ("unreadable", "bad.wav: cannot decode"),
        ("not a run", "not-a-run"),
        ("unwritable", "/dev/null"),
        ("no rd plot", "no rd.png in this folder"),
    ],
)
def test_bad_input_is_one_line_and_no_page(case, said, run, sources, tmp_path, capsys):
    (tmp_path / "bad.wav").write_text("not audio")
    (tmp_path / "not-a-run").mkdir()
    args = {
        "missing": ["--run", str(run), str(tmp_path / "missing.wav")],
        "unreadable": ["--run", str(run), str(sources[0]), str(tmp_path / "bad.wav")],
        "not a run": ["--run", str(tmp_path / "not-a-run"), str(sources[0])],
        "unwritable": ["--run", str(run), str(sources[0]), "-o", "/dev/null/page"],
        "no rd plot": ["--run", str(run), str(sources[0]), "--rd", str(tmp_path)],
    }[case]
    out = tmp_path / "out"
    assert main(["report", *args, "--no-visqol", *(["-o", str(out)] * ("-o" not in args))]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1, err
    assert not (out / "index.html").exists()


PLAY = """async (audio) => {
  if (audio.readyState < 1) await new Promise((loaded, failed) => {
    audio.addEventListener("loadedmetadata", loaded, {once: true});
    audio.addEventListener("error", () => failed(audio.error.message), {once: true});
  });
  audio.muted = true;
  await audio.play();
  audio.pause();
  return audio.duration;
}"""


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.parametrize("which", ["written here", "in the docs"])
def test_in_chromium_players_play_and_pictures_load(which, request, browser_page, tmp_path):  # noqa: F811
    index = request.getfixturevalue("page") if which == "written here" else SHIPPED
    found = links(index)
    browser, errors = browser_page
    browser.goto(index.as_uri())  # a file, opened as it is: no server
    players = browser.locator("audio")
    assert players.count() == sum(tag == "audio" for tag, _ in found) >= len(SYSTEMS)
    for i in range(players.count()):
        src = players.nth(i).get_attribute("src")
        seconds = sf.info(str(index.parent / unquote(src))).duration
        assert players.nth(i).evaluate(PLAY) == pytest.approx(seconds, abs=0.01), src
    pictures = browser.locator("img")
    assert pictures.count() == sum(tag == "img" for tag, _ in found) >= len(SYSTEMS)
    for i in range(pictures.count()):
        picture = pictures.nth(i)
        picture.scroll_into_view_if_needed()
        width = picture.evaluate("img => img.decode().then(() => img.naturalWidth)")
        assert width > 0, picture.get_attribute("src")
    save(browser, tmp_path, f"listening-page-{which.split()[-1]}.png")
    # a player cancels the rest of its file's request once it has what it needs
    assert [e for e in errors if not e.endswith(".flac: net::ERR_ABORTED")] == []
