"""Structural rules: the layout shows the architecture, and a test keeps it that way.

- the kernel (`lyra_core`'s top-level modules) imports no run service and no application;
- the run services (`lyra_core.runs`) import the kernel and each other only;
- the applications (`training`, `inference`, `explore`) import the kernel and the run services,
  never each other; the command line (`cli`) is the one front that imports them all;
- the core never imports the built-in plugins, and importing a module registers nothing;
- a module at the top of `plugins/` registers components; helpers live in a family's package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "lyra_core"
PLUGINS = ROOT / "plugins"
SERVICES = "runs"
APPLICATIONS = ("training", "inference", "explore")
FRONT = "cli"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _part(module: str, core: Path = CORE) -> str | None:
    """The part of lyra_core a dotted module name belongs to ('kernel', 'runs', 'training', ...)."""
    parts = module.split(".")
    if parts[0] != "lyra_core":
        return None
    if len(parts) == 1 or not (core / parts[1]).is_dir():
        return FRONT if parts[1:] == ["__main__"] else "kernel"
    return parts[1]


def _part_of_file(path: Path, core: Path) -> str:
    rel = path.relative_to(core).parts
    if rel == ("__main__.py",):  # `python -m lyra_core` is the command line
        return FRONT
    return rel[0] if len(rel) > 1 else "kernel"


def _below() -> dict[str, set[str]]:
    below = {"kernel": set(), SERVICES: {"kernel"}, FRONT: {"kernel", SERVICES, *APPLICATIONS}}
    return below | {app: {"kernel", SERVICES} for app in APPLICATIONS}


def _violations(core: Path, allowed: dict[str, set[str]]) -> list[str]:
    bad = []
    for path in sorted(core.rglob("*.py")):
        here = _part_of_file(path, core)
        for module in sorted(_imports(path)):
            there = _part(module, core)
            if there is not None and there != here and there not in allowed[here]:
                bad.append(f"{path.relative_to(core.parent)} ({here}) imports {module} ({there})")
    return bad


def test_each_part_of_the_core_imports_only_what_is_below_it():
    packages = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert set(_below()) == {"kernel"} | packages  # every package has its place
    assert _violations(CORE, _below()) == []


def test_the_rule_catches_sideways_and_upward_imports(tmp_path):
    core = tmp_path / "lyra_core"
    for package in (SERVICES, *APPLICATIONS, FRONT):
        (core / package).mkdir(parents=True)
        (core / package / "__init__.py").write_text("")
    (core / "loader.py").write_text("from lyra_core.runs import checkpoint\n")
    (core / "explore" / "x.py").write_text("from lyra_core.inference.files import encode_files\n")
    (core / "cli" / "y.py").write_text("import lyra_core.training\nfrom lyra_core import errors\n")
    assert _violations(core, _below()) == [
        "lyra_core/explore/x.py (explore) imports lyra_core.inference.files (inference)",
        "lyra_core/explore/x.py (explore) imports lyra_core.inference.files.encode_files "
        "(inference)",
        "lyra_core/loader.py (kernel) imports lyra_core.runs (runs)",
        "lyra_core/loader.py (kernel) imports lyra_core.runs.checkpoint (runs)",
    ]


def test_core_source_never_imports_builtin_plugins():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in CORE.rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] == "lyra_plugins"
    ]
    assert offenders == []


def test_top_level_plugin_modules_register_components():
    """Helpers that register nothing belong in a family's package (datasets/, bottlenecks/...)."""
    idle = []
    for path in sorted(PLUGINS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if "lyra_register_components" not in names:
            idle.append(path.name)
    packages = [p for p in PLUGINS.iterdir() if (p / "__init__.py").is_file()]
    for package in packages:
        tree = ast.parse((package / "__init__.py").read_text())
        if "lyra_register_components" not in {
            n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
        }:
            idle.append(f"{package.name}/__init__.py")
    assert idle == []


def test_importing_core_loads_no_plugin():
    code = (
        "import pkgutil, sys, lyra_core\n"
        "for m in pkgutil.walk_packages(lyra_core.__path__, 'lyra_core.'):\n"
        "    if not m.name.endswith('.page'): __import__(m.name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('lyra_plugins')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_a_plugin_registers_nothing():
    import lyra_plugins.activations  # noqa: F401
    from lyra_core.plugins import load_plugins

    registry = load_plugins(disabled={"activations"}).registry
    assert registry.names("activation") == []


def test_cli_keeps_freed_memory_for_reuse():
    from lyra_core.cli.allocator import tune_allocator

    assert tune_allocator()  # glibc accepted every mallopt setting
