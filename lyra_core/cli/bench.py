"""`lyra bench`: run the pytest-benchmark suite in `benchmarks/`, and tabulate saved results.

The suite lives in the repository, next to the `lyra_core` package of a checkout (an editable
install); elsewhere give its folder with `--path`. Selections map onto pytest node ids:
`--kind K` and `--spec NAME` pick registry benchmarks (bench_registry.py), `--spec FILE.json`
benchmarks an experiment spec (bench_experiments.py, through LYRA_BENCH_SPECS).
`--table` prints (or `--write`s into a Markdown file, between markers) the latest saved run.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from lyra_core.cli.common import add_command
from lyra_core.errors import LyraError, did_you_mean

SPECS_ENV = "LYRA_BENCH_SPECS"
STORAGE = Path(".benchmarks")
START, END = "<!-- lyra bench table: start -->", "<!-- lyra bench table: end -->"


def benchmarks_dir(path: str | None = None) -> Path:
    """The benchmark folder: `path`, or `benchmarks/` beside the `lyra_core` package."""
    folder = Path(path) if path else Path(__file__).resolve().parents[2] / "benchmarks"
    if not (folder / "bench_registry.py").is_file():
        where = f"--path {path}" if path else f"{folder} (beside the installed lyra_core)"
        raise LyraError(
            f"{where}: no Lyra benchmark suite there (bench_registry.py is missing); "
            "give --path DIR, the benchmarks/ folder of a Lyra checkout"
        )
    return folder


@functools.cache
def _registry_module(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lyra_bench_registry", folder / "bench_registry.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def registry_node_ids(folder: Path, kind: str | None, name: str | None) -> list[str]:
    """Node ids of the registry benchmarks of `kind` and/or component `name`."""
    module = _registry_module(folder)
    if kind is not None and kind not in module.KINDS:
        raise LyraError(
            f"--kind {kind}: not a benchmarked kind{did_you_mean(kind, module.KINDS)}; "
            f"benchmarked kinds: {', '.join(module.KINDS)}"
        )
    cases = [c for c in module.CASES if kind in (None, c[0]) and name in (None, c[1])]
    if not cases:
        names = sorted({c[1] for c in module.CASES if kind in (None, c[0])})
        scope = f" {kind}" if kind else ""
        raise LyraError(
            f"--spec {name}: no benchmarked{scope} component of that name"
            f"{did_you_mean(name or '', names)}; known: {', '.join(names)}"
        )
    file = folder / "bench_registry.py"
    return [f"{file}::test_component[{module.case_id(*c)}]" for c in cases]


def pytest_command(
    folder: Path,
    kind: str | None = None,
    spec: str | None = None,
    compare: bool = False,
    fail_above: float | None = None,
    save: bool = False,
    quick: bool = False,
    extra: list[str] | None = None,
    storage: Path = STORAGE,
) -> tuple[list[str], dict[str, str]]:
    """The pytest command line and the extra environment that run the selection."""
    env: dict[str, str] = {}
    if spec is not None and (spec.endswith(".json") or Path(spec).is_file()):
        if not Path(spec).is_file():
            raise LyraError(f"--spec {spec}: no such spec file")
        if kind is not None:
            raise LyraError("--kind selects components; with an experiment spec file, drop it")
        targets = [str(folder / "bench_experiments.py")]
        env[SPECS_ENV] = str(Path(spec).resolve())
    elif kind is not None or spec is not None:
        targets = registry_node_ids(folder, kind, spec)
    else:
        targets = [str(folder)]
    args = [sys.executable, "-m", "pytest", *targets, "-o", "python_files=bench_*.py", "-q"]
    if quick:
        args.append("--benchmark-disable")
    else:
        args.append("--benchmark-only")
    args.append(f"--benchmark-storage={storage}")
    if save:
        args.append("--benchmark-autosave")
    if compare or fail_above is not None:
        args.append("--benchmark-compare")
    if fail_above is not None:
        if fail_above <= 0:
            raise LyraError(f"--fail-above {fail_above}: give a positive percentage, e.g. 10")
        args.append(f"--benchmark-compare-fail=median:{fail_above:g}%")
    return args + list(extra or []), env


def run(args: Any) -> int:
    """`lyra bench`: run the selection with pytest; its exit status."""
    if args.table or args.write:
        table = markdown_table(Path(args.storage))
        if args.write:
            write_between_markers(Path(args.write), table)
            print(f"wrote the benchmark table into {args.write}")
        else:
            print(table, end="")
        return 0
    folder = benchmarks_dir(args.path)
    command, env = pytest_command(
        folder,
        args.kind,
        args.spec,
        args.compare,
        args.fail_above,
        args.save,
        args.quick,
        [a for a in args.pytest_args if a != "--"],
        Path(args.storage),
    )
    if args.compare and not list(Path(args.storage).glob("*/*.json")):
        raise LyraError(
            f"--compare: no saved run in {args.storage}/ to compare with; "
            "save one first with `lyra bench --save` (or `make bench`)"
        )
    return subprocess.run(command, env=os.environ | env).returncode


# -- the Markdown table of the latest saved run ------------------------------------------------


def latest_run(storage: Path = STORAGE) -> Path:
    runs = sorted(storage.glob("*/*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    if not runs:
        raise LyraError(
            f"{storage}/: no saved benchmark run; run `make bench` or `lyra bench --save` first"
        )
    return runs[-1]


def duration(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            return f"{seconds / scale:.3g} {unit}"
    raise AssertionError


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else ""


def markdown_table(storage: Path = STORAGE) -> str:
    """The latest saved run as Markdown: one row per benchmark, grouped, with its extra_info."""
    path = latest_run(storage)
    data = json.loads(path.read_text(encoding="utf-8"))
    machine, commit = data.get("machine_info", {}), data.get("commit_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor") or "unknown CPU"
    dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
    lines = [
        f"Run {path.name} of {data.get('datetime', '?')[:19]}: {cpu}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores, Python "
        f"{machine.get('python_version', '?')}, commit {str(commit.get('id', '?'))[:10]}{dirty}.",
        "",
        "| group | benchmark | median | IQR | rounds | parameters | peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes: dict[str, str] = {}
    rows = sorted(data.get("benchmarks", []), key=lambda b: (b.get("group") or "", b["name"]))
    for bench in rows:
        stats, info = bench["stats"], bench.get("extra_info", {})
        name = bench["name"].removeprefix("test_")
        peak = info.get("peak_mib", info.get("peak_mb", ""))
        lines.append(
            f"| {bench.get('group') or ''} | {name} | {duration(stats['median'])} "
            f"| {duration(stats['iqr'])} | {stats['rounds']} | {_count(info.get('params'))} "
            f"| {peak} |"
        )
        if info.get("reduced"):
            notes[info.get("experiment", name)] = info["reduced"]
    if notes:
        lines += ["", "Reduced (GPU-sized experiments on this CPU):", ""]
        lines += [f"- {experiment}: {note}" for experiment, note in notes.items()]
    return "\n".join(lines) + "\n"


def write_between_markers(file: Path, table: str) -> None:
    """Replace the text between the table markers in `file` (Markdown) with `table`."""
    if not file.is_file():
        raise LyraError(f"--write {file}: no such file")
    text = file.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise LyraError(f"--write {file}: put the markers {START} and {END} where the table goes")
    head = text[: start + len(START)]
    file.write_text(f"{head}\n{table}{text[end:]}", encoding="utf-8")


def add_parsers(sub: Any) -> None:
    """The `lyra bench` subcommand's options."""
    p = add_command(
        sub,
        "bench",
        run,
        help="time components and experiments with the pytest-benchmark suite",
        description="Run benchmarks/ (pytest-benchmark) on this machine, or tabulate saved runs. "
        "Extra pytest options go after `--`, e.g. `lyra bench --kind loss -- -x`.",
    )
    p.add_argument("--kind", help="only the registry benchmarks of this component kind")
    p.add_argument(
        "--spec",
        help="a component name (registry benchmarks of it), or an experiment spec file (.json): "
        "its training step, encode and decode",
    )
    p.add_argument("--compare", action="store_true", help="compare with the latest saved run")
    p.add_argument(
        "--fail-above",
        type=float,
        metavar="PCT",
        help="with --compare: fail if a median is more than PCT%% slower than the saved run",
    )
    p.add_argument("--save", action="store_true", help="save the results (--benchmark-autosave)")
    p.add_argument(
        "--quick", action="store_true", help="run each benchmark once, untimed (a smoke check)"
    )
    p.add_argument("--path", help="the benchmarks folder (default: beside lyra_core)")
    p.add_argument(
        "--storage", default=str(STORAGE), help="where saved runs are (default: .benchmarks)"
    )
    p.add_argument("--table", action="store_true", help="print the latest saved run as Markdown")
    p.add_argument(
        "--write",
        metavar="FILE",
        help="put that table into FILE (docs/benchmarks.md) between its bench-table markers",
    )
    p.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
