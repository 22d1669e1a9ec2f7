"""The documentation site: its generated reference pages are current, a plugin's components
appear in them once it is installed, and the site builds with `mkdocs build --strict` (a broken
link or anchor, a missing page or a page left out of the nav fails)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lyra_core.cli import main
from lyra_core.cli.reference import pages
from lyra_core.discovery import load_plugins
from lyra_core.schema import experiment_schema
from tests.test_third_party_plugin import installed as example_plugin  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIG = DOCS / "config" / "mkdocs.yml"
REGENERATE = "lyra reference -o docs/reference --builtins-only"


def lyra(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lyra_core", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize(("name", "text"), pages(builtins_only=True).items())
def test_the_reference_pages_are_current(name, text):
    saved = (DOCS / "reference" / name).read_text(encoding="utf-8")
    assert saved == text, (
        f"docs/reference/{name} is stale: run lyra reference -o docs/reference --builtins-only"
    )


def test_the_reference_lists_every_component_and_command():
    text = pages(builtins_only=True)
    assert "### snake {#activation.snake}" in text["components.md"]
    assert "soft_clip" not in text["components.md"]  # no plugin's in a builtins-only page
    assert "## lyra run\n" in text["cli.md"] and "`--resume`" in text["cli.md"]


def test_every_component_field_is_listed_with_its_default_and_bounds():
    schema = experiment_schema(load_plugins(builtins_only=True).registry)
    text = pages(builtins_only=True)["components.md"]
    for key, comp in schema["$defs"].items():
        if "." not in key:
            continue
        body = text.split(f"{{#{key}}}\n", 1)[1].split("\n### ", 1)[0]
        for name, prop in comp["properties"].items():
            if name == "type":
                continue
            default = f"`{json.dumps(prop.get('default'), ensure_ascii=False)}`"
            shown = "required" if name in comp.get("required", ()) else default
            row = next(r for r in body.splitlines() if r.startswith(f"| `{name}` |"))
            assert row.split(" | ")[2] == shown, (key, name, row)
    kernel = text.split("{#encoder.conv_encoder}", 1)[1]
    assert "| `input_kernel` | integer | `7` | ≥ 1, ≤ 4095, not multiple of 2 |" in kernel
    assert "| length 1–32, each ≥ 1, ≤ 1024 |" in kernel  # strides


def test_an_installed_plugins_components_and_kind_appear(example_plugin, tmp_path):  # noqa: F811
    out = lyra("reference", "-o", str(tmp_path), env=example_plugin)
    assert out.returncode == 0, out.stderr
    components = (tmp_path / "components.md").read_text()
    assert "### soft_clip {#activation.soft_clip}" in components
    assert "lyra-example-plugin 0.1.0" in components
    assert "## envelope\n" in components  # the plugin's own kind


def test_an_unwritable_output_is_one_line(capsys):
    assert main(["reference", "-o", "/dev/null/x"]) == 2
    assert "/dev/null" in capsys.readouterr().err


def build_site(site: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(CONFIG)]
    return subprocess.run(
        [*command, "--site-dir", str(site)], capture_output=True, text=True, cwd=ROOT
    )


def test_the_site_builds_strictly(tmp_path):
    done = build_site(tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    for page in ("index.html", "reference/components/index.html", "troubleshooting/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    assert (tmp_path / "site" / "results" / "small_data" / "mel_distance.png").is_file()
