"""The README's and the documentation site's snippets work as written: every JSON spec validates
against the live registry (a fragment, merged into the demo spec), every `lyra` command line in a
shell block parses with the real parser, every Python block compiles, every TOML block parses;
the plugin on "Writing a plugin" (pyproject.toml + module) installs with pip and adds its
component through the real entry-point machinery, and its contract test passes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lyra_core.cli import build_parser
from lyra_core.discovery import load_plugins
from lyra_core.loader import validate_data

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)  # pymdownx.snippets, paths from the root
DEMO = json.loads((ROOT / "experiments" / "snake_pqmf.json").read_text())


def page_text(path: Path) -> str:
    """The page as the site shows it: snippets replaced by the files they name."""
    text = path.read_text(encoding="utf-8")
    return SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), text)


def blocks(text: str, lang: str) -> list[str]:
    return [b for lg, b in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S) if lg == lang]


def snippets(lang: str) -> list[tuple[str, str]]:
    """(where, body) of every `lang` code block on every page."""
    return [
        (f"{page.relative_to(ROOT)} {lang} #{i}", body)
        for page in PAGES
        for i, body in enumerate(blocks(page_text(page), lang))
    ]


def section(page: str, heading: str) -> str:
    return page.split(heading + "\n", 1)[1].split("\n## ", 1)[0]


PLUGIN_PAGE = page_text(ROOT / "docs" / "plugins.md")
PLUGIN_SECTION = PLUGIN_PAGE.split("## Testing a plugin", 1)[0]


def merged(base: dict, fragment: dict) -> dict:
    """`fragment` laid over `base`; an object naming a component `type` replaces it whole."""
    out = dict(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and "type" not in value and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def cases(found: list[tuple[str, object]]) -> list:
    return [pytest.param(where, value, id=where) for where, value in found]


def test_every_page_is_read():
    assert len(PAGES) > 10 and any(snippets("json")) and any(snippets("sh"))


def test_the_readmes_links_and_picture_exist():
    """The site checks its own links (mkdocs --strict); the README's are checked here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert "benchmarks/results/small_data/mel_distance.png" in targets
    assert [t for t in targets if not (ROOT / t).exists()] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_says_what_it_holds(page):
    """A checked language, or `text` (messages, usage lines) for what no check applies to."""
    fences = re.findall(r"^```(\w*)\n.*?^```", page_text(page), re.M | re.S)
    assert set(fences) <= {"json", "sh", "python", "toml", "text"}, fences


@pytest.mark.parametrize(("where", "body"), cases(snippets("json")))
def test_every_json_snippet_validates_against_the_live_registry(where, body):
    data = json.loads(body)
    spec = data if "model" in data else merged(DEMO, data)
    validate_data(spec, load_plugins(builtins_only=True).registry, source=where)


def lyra_commands() -> list[tuple[str, list[str]]]:
    """Each `lyra ...` (or `-m lyra_core ...`) line of the shell blocks, as its arguments."""
    found = []
    for where, body in snippets("sh"):
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["lyra"]:
                found.append((f"{where}: {line.strip()}", words[1:]))
            elif "lyra_core" in words:
                found.append((f"{where}: {line.strip()}", words[words.index("lyra_core") + 1 :]))
    return found


@pytest.mark.parametrize(("where", "args"), cases(lyra_commands()))
def test_every_lyra_command_line_parses(where, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # output folders are checked, never created
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"{where}\n{errors.getvalue()}(exit {exc.code})")


@pytest.mark.parametrize(("where", "body"), cases(snippets("python")))
def test_every_python_snippet_compiles(where, body):
    compile(body, where, "exec")


@pytest.mark.parametrize(("where", "body"), cases(snippets("toml")))
def test_every_toml_snippet_parses(where, body):
    assert tomllib.loads(body), where


@pytest.fixture(scope="module")
def plugin_snippet() -> tuple[dict, str]:
    [toml_text] = [b for b in blocks(PLUGIN_SECTION, "toml") if "[project]" in b]
    [module] = [b for b in blocks(PLUGIN_SECTION, "python") if "@hookimpl" in b]
    return tomllib.loads(toml_text), module


def test_the_plugin_snippet_is_a_whole_distribution(plugin_snippet):
    project, module = plugin_snippet
    assert project["build-system"]["build-backend"]
    assert "lyra-audio" in project["project"]["dependencies"]
    assert project["project"]["entry-points"]["lyra"]
    for name in re.findall(r"registry\.add\([^,]+, [^,]+, (\w+)\)", module):
        assert re.search(rf"^class {name}\b", module, re.M), f"{name} is used but not defined"


@pytest.fixture(scope="module")
def installed(plugin_snippet, tmp_path_factory) -> dict[str, str]:
    """The page's plugin written to disk as it says, pip-installed into its own directory."""
    project, module = plugin_snippet
    source = tmp_path_factory.mktemp("plugin")
    [toml_text] = [b for b in blocks(PLUGIN_SECTION, "toml") if "[project]" in b]
    (source / "pyproject.toml").write_text(toml_text)
    [package] = project["tool"]["setuptools"]["packages"]
    (source / package).mkdir()
    (source / package / "__init__.py").write_text(module)
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip, "--target", str(target), str(source)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    env.pop("LYRA_DISABLE_PLUGINS", None)
    return env


def test_the_installed_plugin_snippet_adds_its_component(installed, plugin_snippet, tmp_path):
    project, _ = plugin_snippet
    out = subprocess.run(
        [sys.executable, "-m", "lyra_core", "components", "activation"],
        capture_output=True,
        text=True,
        env=installed,
    )
    assert out.returncode == 0, out.stderr
    assert "soft_clip" in out.stdout
    assert project["project"]["name"] in out.stdout  # listed with its distribution
    spec = merged(DEMO, {"model": {"encoder": {"activation": {"type": "soft_clip"}}}})
    spec["model"]["encoder"]["activation"]["threshold"] = 0.5
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({k: v for k, v in spec.items() if k != "$schema"}))
    out = subprocess.run(
        [sys.executable, "-m", "lyra_core", "validate", str(path)],
        capture_output=True,
        text=True,
        env=installed,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_plugin_testing_snippet_passes_for_the_plugin(installed, tmp_path):
    [test_code] = [
        b
        for b in blocks(section(PLUGIN_PAGE, "## Testing a plugin"), "python")
        if "check_component" in b
    ]
    (tmp_path / "test_snippet.py").write_text(test_code)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=installed,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
