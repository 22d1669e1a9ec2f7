"""Structural rules: the core never imports the built-in plugins; importing registers nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "lyra_core"


def test_core_source_never_imports_builtin_plugins():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "lyra_plugins"]
    assert offenders == []


def test_importing_core_loads_no_plugin():
    code = (
        "import pkgutil, sys, lyra_core\n"
        "for m in pkgutil.iter_modules(lyra_core.__path__):\n"
        "    __import__('lyra_core.' + m.name)\n"
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
    from lyra_core.perf import tune_allocator

    assert tune_allocator()  # glibc accepted every mallopt setting
