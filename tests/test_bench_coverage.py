"""The registry benchmarks cover every registered component of the benchmarked kinds.

pytest collects benchmarks/bench_registry.py and every `(kind, name)` of the live registry must
appear among the collected node ids; a third-party plugin found on the path shows up with no code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lyra_core.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_registry.py"
EXAMPLE = ROOT / "tests" / "example_plugin"
ID = re.compile(
    r"::test_component\[(?P<kind>[a-z_]+)-(?P<name>.+)-(?P<mode>forward(\+backward)?)\]"
)


def collected(env: dict[str, str] | None = None) -> set[tuple[str, str, str]]:
    """`(kind, name, mode)` of each benchmark that pytest collects from bench_registry.py."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", BENCH],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return {(m["kind"], m["name"], m["mode"]) for m in map(ID.search, out.stdout.splitlines()) if m}


def expected(registry, kinds) -> set[tuple[str, str]]:
    return {(c.kind, c.name) for k in kinds if k in registry.kinds for c in registry.components(k)}


@pytest.fixture(scope="module")
def bench_registry():
    from benchmarks import bench_registry

    return bench_registry


def test_every_registered_component_is_collected(bench_registry):
    registry = load_plugins().registry
    cases = collected()
    want = expected(registry, bench_registry.KINDS)
    assert want, "no components of the benchmarked kinds are registered"
    missing = want - {(kind, name) for kind, name, _ in cases}
    assert not missing, f"registered but not benchmarked: {sorted(missing)}"
    assert {(kind, name) for kind, name, _ in cases} == want
    assert cases == set(bench_registry.CASES)  # what `lyra bench --kind` selects from
    # Gradients flow through everything but data augmentations: those get forward+backward too.
    for kind, name in want:
        assert (kind, name, "forward") in cases
        if kind != "augmentation":
            assert (kind, name, "forward+backward") in cases, (kind, name)


def test_the_kinds_are_the_issues(bench_registry):
    core = {"activation", "block", "filterbank", "bottleneck", "loss", "discriminator"}
    assert core | {"augmentation", "adversarial"} == set(bench_registry.KINDS)
    assert set(bench_registry.SHAPES) == set(bench_registry.KINDS)


def test_a_third_party_component_shows_up_with_no_code(tmp_path):
    """The example plugin, made importable with a dist-info folder, is benchmarked too."""
    info = tmp_path / "lyra_example_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lyra-example-plugin\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text("[lyra]\nexample = lyra_example\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(EXAMPLE)]))
    env.pop("LYRA_DISABLE_PLUGINS", None)
    cases = collected(env)
    assert ("activation", "soft_clip", "forward") in cases
    assert ("activation", "soft_clip", "forward+backward") in cases
    assert ("activation", "snake", "forward") in cases  # beside the built-ins
