"""README.md's snippets work as written: its JSON specs validate against the live registry, and
its plugin (pyproject.toml + module) installs with pip and adds its component through the real
entry-point machinery; the plugin's contract test from "Testing a plugin" passes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lyra_core.loader import validate_data
from lyra_core.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.M | re.S)
JSON_BLOCKS = [body for lang, body in BLOCKS if lang == "json"]
PLUGIN_SECTION = README.split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]


def section_blocks(section: str, lang: str) -> list[str]:
    return [b for lg, b in re.findall(r"^```(\w*)\n(.*?)^```", section, re.M | re.S) if lg == lang]


def test_the_readme_has_json_snippets():
    assert JSON_BLOCKS


@pytest.mark.parametrize("index", range(len(JSON_BLOCKS)))
def test_every_json_snippet_validates_against_the_live_registry(index):
    data = json.loads(JSON_BLOCKS[index])
    validate_data(data, load_plugins(builtins_only=True).registry, source=f"README json #{index}")


@pytest.fixture(scope="module")
def plugin_snippet() -> tuple[dict, str]:
    [toml_text] = [b for b in section_blocks(PLUGIN_SECTION, "toml") if "[project]" in b]
    [module] = [b for b in section_blocks(PLUGIN_SECTION, "python") if "@hookimpl" in b]
    return tomllib.loads(toml_text), module


def test_the_plugin_snippet_is_a_whole_distribution(plugin_snippet):
    project, module = plugin_snippet
    assert project["build-system"]["build-backend"]
    assert "lyra-audio" in project["project"]["dependencies"]
    assert project["project"]["entry-points"]["lyra"]
    for name in re.findall(r"registry\.add\([^,]+, [^,]+, (\w+)\)", module):
        assert re.search(rf"^class {name}\b", module, re.M), f"{name} is used but not defined"
    compile(module, "README plugin", "exec")  # syntax


@pytest.fixture(scope="module")
def installed(plugin_snippet, tmp_path_factory) -> dict[str, str]:
    """The README's plugin written to disk as it says, pip-installed into its own directory."""
    project, module = plugin_snippet
    source = tmp_path_factory.mktemp("plugin")
    [toml_text] = [b for b in section_blocks(PLUGIN_SECTION, "toml") if "[project]" in b]
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
    spec = json.loads(JSON_BLOCKS[0])
    spec["model"]["encoder"]["activation"] = {"type": "soft_clip", "threshold": 0.5}
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
    section = README.split("### Testing a plugin", 1)[1]
    [test_code] = [b for b in section_blocks(section, "python") if "check_component" in b]
    (tmp_path / "test_snippet.py").write_text(test_code)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=installed,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
