"""The registry benchmarks cover every registered component of the benchmarked kinds.

pytest collects benchmarks/bench_registry.py and every `(kind, name)` of the live registry must
appear among the collected node ids; a third-party plugin found on the path shows up with no code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lyra_core.discovery import load_plugins

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


# -- lyra bench: the pytest command it runs, and the table of a saved run --------------------


def test_bench_command_selects_node_ids(tmp_path):
    from lyra_core.cli import bench

    folder = bench.benchmarks_dir()
    args, env = bench.pytest_command(folder, kind="activation", spec="snake", storage=tmp_path)
    targets = [a for a in args if "::" in a]
    assert targets and all("test_component[activation-snake-" in a for a in targets)
    assert "--benchmark-only" in args and f"--benchmark-storage={tmp_path}" in args
    assert not env
    args, _ = bench.pytest_command(folder, compare=True, fail_above=10, quick=True)
    assert str(folder) in args and "--benchmark-disable" in args
    assert "--benchmark-compare-fail=median:10%" in args
    spec = ROOT / "experiments" / "snake_pqmf.json"
    args, env = bench.pytest_command(folder, spec=str(spec))
    assert args[3].endswith("bench_experiments.py") and env[bench.SPECS_ENV] == str(spec)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "activaton"}, "did you mean 'activation'"),
        ({"spec": "snek"}, "did you mean 'snake'"),
        ({"spec": "missing.json"}, "no such spec file"),
        ({"compare": True, "fail_above": -5}, "positive percentage"),
    ],
)
def test_bench_mistakes_are_lyra_errors(options, message):
    from lyra_core.cli import bench
    from lyra_core.errors import LyraError

    with pytest.raises(LyraError, match=message):
        bench.pytest_command(bench.benchmarks_dir(), **options)


def saved_run(storage: Path, number: int, median: float) -> Path:
    """A run in pytest-benchmark's saved format, as `--benchmark-autosave` writes it."""
    stats = {"median": median, "iqr": median / 10, "rounds": 5, "mean": median}
    bench = {"group": "registry: activation [4, 64, 16384]", "stats": stats}
    run = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.11"},
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "datetime": "2026-01-01T00:00:00.000000",
        "benchmarks": [
            bench | {"name": "test_component[activation-snake-forward]", "extra_info": {}},
            bench
            | {
                "name": "test_train_step[lyracodec_vae-reduced]",
                "group": "experiment: lyracodec_vae train step",
                "extra_info": {
                    "params": 255858050,
                    "peak_mib": 812.5,
                    "experiment": "lyracodec_vae",
                    "reduced": "data.batch_size 1 (spec: 4)",
                },
            },
        ],
    }
    path = storage / "Linux-CPython-3.11-64bit" / f"{number:04d}_run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


def test_table_of_the_latest_saved_run(tmp_path):
    from lyra_core.cli import bench

    saved_run(tmp_path, 1, 2.0)
    latest = saved_run(tmp_path, 2, 0.0123)
    os.utime(latest, (latest.stat().st_atime, latest.stat().st_mtime + 10))
    table = bench.markdown_table(tmp_path)
    assert "0002_run.json" in table and "Test CPU, 2 cores" in table
    assert "| component[activation-snake-forward] | 12.3 ms | 1.23 ms | 5 |" in table
    assert "| 255,858,050 | 812.5 |" in table
    assert "- lyracodec_vae: data.batch_size 1 (spec: 4)" in table

    readme = tmp_path / "README.md"
    readme.write_text(f"# X\n\n{bench.START}\nold\n{bench.END}\n\nafter\n")
    bench.write_between_markers(readme, table)
    text = readme.read_text()
    assert "old" not in text and table in text and text.endswith(f"{bench.END}\n\nafter\n")
    bench.write_between_markers(readme, table)  # idempotent
    assert readme.read_text() == text


def test_table_without_saved_runs_says_what_to_do(tmp_path):
    from lyra_core.cli import bench
    from lyra_core.errors import LyraError

    with pytest.raises(LyraError, match="make bench"):
        bench.markdown_table(tmp_path)
    with pytest.raises(LyraError, match="markers"):
        (tmp_path / "R.md").write_text("no markers\n")
        bench.write_between_markers(tmp_path / "R.md", "table\n")
