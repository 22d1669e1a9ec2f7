"""A real third-party distribution (tests/example_plugin), installed by pip, found by `lyra`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "example_plugin"
DEMO = ROOT / "experiments" / "snake_pqmf.json"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """pip-install the example plugin into its own directory; the environment that sees it."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert list(target.glob("lyra_example_plugin-0.1.0.dist-info"))
    env = dict(os.environ, PYTHONPATH=str(target))
    env.pop("LYRA_DISABLE_PLUGINS", None)
    return env


def lyra(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lyra_core", *args], capture_output=True, text=True, env=env
    )


def test_components_lists_the_plugin(installed):
    out = lyra(installed, "components")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("soft_clip "))
    assert "[example, lyra-example-plugin 0.1.0]" in line
    assert "envelope: build(ctx)" in out.stdout  # the new kind
    assert any(x.strip().startswith("rms ") for x in out.stdout.splitlines())


def test_generated_schema_includes_plugin_but_builtins_only_does_not(installed):
    full = json.loads(lyra(installed, "schema").stdout)
    assert "soft_clip" in full["$defs"]["activation"]["properties"]["type"]["enum"]
    assert "envelope.rms" in full["$defs"]
    builtins = json.loads(lyra(installed, "schema", "--builtins-only").stdout)
    assert "soft_clip" not in builtins["$defs"]["activation"]["properties"]["type"]["enum"]


SOFT_CLIP = 'model.encoder.activation={"type": "soft_clip", "threshold": 2.0}'


def test_spec_using_plugin_builds(installed):
    out = lyra(installed, "summary", str(DEMO), "--set", SOFT_CLIP, "--seconds", "0.5")
    assert out.returncode == 0, out.stderr
    assert "total" in out.stdout.lower()


def test_blocked_plugin_gives_clear_error(installed):
    blocked = dict(installed, LYRA_DISABLE_PLUGINS="example")
    out = lyra(blocked, "plugins")
    assert any(x.split()[:2] == ["example", "disabled"] for x in out.stdout.splitlines())
    out = lyra(blocked, "validate", str(DEMO), "--set", SOFT_CLIP)
    assert out.returncode == 2
    assert "$.model.encoder.activation.type: unknown activation 'soft_clip'" in out.stderr
    assert "is the plugin installed and enabled?" in out.stderr
    assert "example (disabled)" in out.stderr
    assert "Traceback" not in out.stderr
    assert lyra(installed, "validate", str(DEMO), "--set", SOFT_CLIP).returncode == 0


def test_plugin_passes_the_contract_kit(installed, tmp_path):
    """The pytest plugin (entry point pytest11) runs a third party's components through it."""
    test = tmp_path / "test_contract_example.py"
    test.write_text(
        "from lyra_core.testing import check_component\n\n"
        "def test_soft_clip(lyra_registry, lyra_context):\n"
        "    check_component(lyra_registry, 'activation', 'soft_clip', lyra_context)\n\n"
        "def test_rms(lyra_registry, lyra_context):\n"
        "    check_component(lyra_registry, 'envelope', 'rms', lyra_context)\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        env=installed,
        cwd=tmp_path,
    )
    assert "2 passed" in out.stdout, out.stdout + out.stderr
