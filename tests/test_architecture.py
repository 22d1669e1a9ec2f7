"""Structural rules: the layout shows the architecture, and a test keeps it that way.

- the kernel (`lyra_core`'s top-level modules) imports no run service and no application;
- the run services (`lyra_core.services`) import the kernel and each other only;
- the applications (`training`, `inference`, `explore`, `corpus`) import the kernel and the run
  services, never each other; the command line (`cli`) is the one front that imports them all;
- a component (`plugins/`) imports the kernel; a run service only where `COMPONENT_SERVICES`
  states why; never an application (`training`, `inference`, `explore`, `corpus`) or the command
  line: what two of them share goes down to the kernel or a run service;
- benchmarks and tools use the library, not the command line's modules;
- the core never imports the built-in plugins, nor MLflow (the `mlflow` tracker's library), and
  importing a module registers nothing;
- a module at the top of `plugins/` registers components; helpers live in a family's package.

An import is any of `import x`, `from x import y`, a relative `from ..x import y` and
`importlib.import_module("x")` (or `__import__("x")`) with a literal name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "lyra_core"
PLUGINS = ROOT / "plugins"
CLIENTS = (ROOT / "benchmarks", ROOT / "tools")
SERVICES = "services"
APPLICATIONS = ("training", "inference", "explore", "corpus")
FRONT = "cli"
# The run services a family of components may import, and why; nothing else beyond the kernel.
COMPONENT_SERVICES = {
    ("datasets", "lyra_core.services.atomic"): "a cache or shard is written whole or not at all",
    ("datasets", "lyra_core.services.audio"): "files are read with inference's channels and rate",
    ("priors", "lyra_core.services.model"): "model `latent_prior` is built on a trained codec run",
    ("priors", "lyra_core.services.checkpoint"): "it reads that run's checkpoint",
}


def _module(path: Path, top: Path, name: str) -> str:
    """The dotted name of the module in `path`, in the package `name` whose folder is `top`."""
    parts = [name, *path.relative_to(top).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_by_name(node: ast.AST) -> str | None:
    """The module an `importlib.import_module("...")` or `__import__("...")` call names."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    value = node.args[0].value
    return value if name in ("import_module", "__import__") and isinstance(value, str) else None


def _imports(path: Path, module: str = "") -> set[str]:
    """The modules a file imports, relative imports resolved from its dotted name `module`."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            up = package[: len(package) + 1 - node.level] if node.level else []
            source = ".".join([*up, *filter(None, [node.module])])
            found.add(source)
            found |= {f"{source}.{a.name}" for a in node.names}
        elif name := _imported_by_name(node):
            found.add(name)
    return found


def _part(module: str, core: Path = CORE) -> str | None:
    """The part of lyra_core a dotted module name belongs to ('kernel', 'services', ...)."""
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
        for module in sorted(_imports(path, _module(path, core, core.name))):
            there = _part(module, core)
            if there is not None and there != here and there not in allowed[here]:
                bad.append(f"{path.relative_to(core.parent)} ({here}) imports {module} ({there})")
    return bad


def _stated(family: str, module: str, stated: dict[tuple[str, str], str]) -> bool:
    """Whether `module` is (in, or a package holding) a run service `family` may import."""
    return any(
        f == family and (module == m or module.startswith(f"{m}.") or m.startswith(f"{module}."))
        for f, m in stated
    )


def _component_violations(
    plugins: Path, stated: dict[tuple[str, str], str] = COMPONENT_SERVICES
) -> list[str]:
    """Imports of `lyra_core` by components beyond the kernel and the stated run services."""
    bad = []
    for path in sorted(plugins.rglob("*.py")):
        family = path.relative_to(plugins).parts[0].removesuffix(".py")
        for module in sorted(_imports(path, _module(path, plugins, "lyra_plugins"))):
            there = _part(module)
            if there not in (None, "kernel") and not _stated(family, module, stated):
                bad.append(f"{path.relative_to(plugins.parent)} imports {module} ({there})")
    return bad


def _client_violations(folders: tuple[Path, ...]) -> list[str]:
    """Imports of the command line's modules by benchmarks and tools."""
    return [
        f"{path.relative_to(folder.parent)} imports {module}"
        for folder in folders
        for path in sorted(folder.rglob("*.py"))
        for module in sorted(_imports(path, _module(path, folder, folder.name)))
        if _part(module) == FRONT
    ]


def test_each_part_of_the_core_imports_only_what_is_below_it():
    packages = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert set(_below()) == {"kernel"} | packages  # every package has its place
    assert _violations(CORE, _below()) == []


def test_the_rule_catches_sideways_and_upward_imports(tmp_path):
    core = tmp_path / "lyra_core"
    for package in (SERVICES, *APPLICATIONS, FRONT):
        (core / package).mkdir(parents=True)
        (core / package / "__init__.py").write_text("")
    (core / "loader.py").write_text("from lyra_core.services import checkpoint\n")
    (core / "explore" / "x.py").write_text("from lyra_core.inference.files import encode_files\n")
    (core / "explore" / "z.py").write_text("from ..training import seeds\nfrom . import x\n")
    (core / "services" / "w.py").write_text(
        "import importlib\nimportlib.import_module('lyra_core.cli')\n"
    )
    (core / "cli" / "y.py").write_text("import lyra_core.training\nfrom lyra_core import errors\n")
    assert _violations(core, _below()) == [
        "lyra_core/explore/x.py (explore) imports lyra_core.inference.files (inference)",
        "lyra_core/explore/x.py (explore) imports lyra_core.inference.files.encode_files "
        "(inference)",
        "lyra_core/explore/z.py (explore) imports lyra_core.training (training)",
        "lyra_core/explore/z.py (explore) imports lyra_core.training.seeds (training)",
        "lyra_core/loader.py (kernel) imports lyra_core.services (services)",
        "lyra_core/loader.py (kernel) imports lyra_core.services.checkpoint (services)",
        "lyra_core/services/w.py (services) imports lyra_core.cli (cli)",
    ]


def test_components_import_the_kernel_and_stated_run_services_only():
    assert _component_violations(PLUGINS) == []


def test_the_component_rule_catches_applications_and_unstated_services(tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "datasets").mkdir(parents=True)
    (plugins / "datasets" / "__init__.py").write_text(
        "from lyra_core.services.atomic import write\n"
    )
    (plugins / "datasets" / "s.py").write_text("from lyra_core.training.seeds import derive_seed\n")
    (plugins / "priors.py").write_text(
        "from lyra_core.services import checkpoint\nimport lyra_core\n"
    )
    (plugins / "trackers.py").write_text("import lyra_core.services.atomic\nfrom . import priors\n")
    (plugins / "x.py").write_text("__import__('lyra_core.inference')\n")
    stated = {
        ("datasets", "lyra_core.services.atomic"): "",
        ("priors", "lyra_core.services.checkpoint"): "",
    }
    assert _component_violations(plugins, stated) == [
        "plugins/datasets/s.py imports lyra_core.training.seeds (training)",
        "plugins/datasets/s.py imports lyra_core.training.seeds.derive_seed (training)",
        "plugins/trackers.py imports lyra_core.services.atomic (services)",
        "plugins/x.py imports lyra_core.inference (inference)",
    ]


def test_benchmarks_and_tools_use_the_library_not_the_command_line():
    assert _client_violations(CLIENTS) == []


def test_the_client_rule_catches_the_command_line(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "q.py").write_text("from lyra_core.cli.corpus import build\n")
    (tmp_path / "benchmarks" / "r.py").write_text("from lyra_core.services import model\n")
    assert _client_violations((tmp_path / "benchmarks",)) == [
        "benchmarks/q.py imports lyra_core.cli.corpus",
        "benchmarks/q.py imports lyra_core.cli.corpus.build",
    ]


def _core_importers(top: str, core: Path = CORE) -> list[str]:
    """The core's modules that import the top-level package `top`."""
    return sorted(
        f"{path.relative_to(core.parent)}: {name}"
        for path in core.rglob("*.py")
        for name in _imports(path, _module(path, core, core.name))
        if name.split(".")[0] == top
    )


def test_core_source_never_imports_builtin_plugins():
    assert _core_importers("lyra_plugins") == []


def test_the_core_leaves_mlflow_to_the_mlflow_tracker():
    """Tracking is a component's: its library, store and run ids stay in plugins/trackers.py."""
    assert _core_importers("mlflow") == []


def test_the_importer_rule_catches_a_lazy_import(tmp_path):
    (tmp_path / "lyra_core" / "services").mkdir(parents=True)
    code = "def find(uri):\n    from mlflow.tracking import MlflowClient\n"
    (tmp_path / "lyra_core" / "services" / "model.py").write_text(code)
    assert _core_importers("mlflow", tmp_path / "lyra_core") == [
        "lyra_core/services/model.py: mlflow.tracking",
        "lyra_core/services/model.py: mlflow.tracking.MlflowClient",
    ]


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
    from lyra_core.discovery import load_plugins

    registry = load_plugins(disabled={"activations"}).registry
    assert registry.names("activation") == []


def test_cli_keeps_freed_memory_for_reuse():
    from lyra_core.cli.allocator import tune_allocator

    assert tune_allocator()  # glibc accepted every mallopt setting
