"""Plugin discovery through entry points: duplicates, broken plugins, disabling, kinds."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import attrs
import pytest
import torch

from lyra_core import hookimpl
from lyra_core.discovery import load_plugins
from lyra_core.errors import DuplicateComponentError, LyraError, UnknownComponentError
from lyra_core.registry import Origin, Registry


def make_distribution(root: Path, dist: str, module: str, source: str, ep_name: str) -> None:
    """A real installed distribution: a module plus its `.dist-info` with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lyra]\n{ep_name} = {module}\n")


SNAKES = """
    import attrs
    from lyra_core import hookimpl

    @attrs.frozen
    class AnotherSnake:
        '''A second snake.'''
        def build(self, ctx, channels):
            return None

    @hookimpl
    def lyra_register_components(registry):
        registry.add("activation", "snake", AnotherSnake)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("lyra_test_")]:
        del sys.modules[name]


def test_builtins_load_through_entry_points():
    plugins = load_plugins()
    activations = plugins.registry.get("activation", "snake")
    assert activations.origin.distribution == "lyra-audio"
    assert activations.origin.plugin == "activations"
    assert plugins.versions()["activations"].startswith("lyra-audio ")


def test_duplicate_names_both_distributions(site):
    make_distribution(site, "lyra-snakes", "lyra_test_snakes", SNAKES, "snakes")
    with pytest.raises(DuplicateComponentError) as info:
        load_plugins()
    msg = str(info.value)
    assert "duplicate activation 'snake'" in msg
    assert "lyra-audio" in msg and "lyra-snakes 0.1" in msg


def test_broken_plugin_is_reported_not_swallowed(site):
    make_distribution(
        site, "lyra-broken", "lyra_test_broken", "import this_module_does_not_exist\n", "broken"
    )
    plugins = load_plugins()
    [info] = [i for i in plugins.infos if i.name == "broken"]
    assert info.status == "failed"
    msg = str(info.error)
    assert "failed to load plugin 'broken' from lyra-broken 0.1" in msg
    assert "entry point lyra: broken = lyra_test_broken" in msg
    assert "ModuleNotFoundError: No module named 'this_module_does_not_exist'" in msg
    # the other plugins still load, and a missing name points at the broken plugin
    with pytest.raises(UnknownComponentError, match=r"not loaded: .*broken \(failed\)"):
        plugins.registry.get("activation", "whatever")
    assert plugins.registry.get("activation", "snake")


def test_plugin_whose_hook_raises(site):
    make_distribution(
        site,
        "lyra-raising",
        "lyra_test_raising",
        """
        from lyra_core import hookimpl

        @hookimpl
        def lyra_register_components(registry):
            raise RuntimeError("boom")
    """,
        "raising",
    )
    plugins = load_plugins()
    [info] = [i for i in plugins.infos if i.name == "raising"]
    assert info.status == "failed"
    assert "RuntimeError: boom" in str(info.error)


def test_disable_by_env(site, monkeypatch):
    make_distribution(site, "lyra-snakes", "lyra_test_snakes", SNAKES, "snakes")
    monkeypatch.setenv("LYRA_DISABLE_PLUGINS", "snakes, optimizers")
    plugins = load_plugins()
    status = {i.name: i.status for i in plugins.infos}
    assert status["snakes"] == "disabled" and status["optimizers"] == "disabled"
    assert "lyra_test_snakes" not in sys.modules  # a disabled plugin is never imported
    with pytest.raises(UnknownComponentError) as info:
        plugins.registry.get("optimizer", "adam")
    assert "optimizers (disabled)" in str(info.value)


def test_a_spec_using_a_disabled_plugins_component_says_which_plugin(capsys, monkeypatch):
    """Blocks default to Snake: with the activations plugin off, the spec cannot be written out,
    and the error names the class, its module and the plugin that is not loaded."""
    from lyra_core.cli import main

    monkeypatch.setenv("LYRA_DISABLE_PLUGINS", "activations")
    spec = Path(__file__).parents[1] / "experiments" / "snake_pqmf.json"
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "SnakeSpec (from lyra_plugins.activations) is not registered" in err
    assert "not loaded: activations (disabled); see `lyra plugins`" in err


def test_plugins_can_add_kinds_used_by_other_plugins():
    @attrs.frozen
    class Thing:
        """A thing."""

    @hookimpl
    def lyra_register_components(registry):
        registry.add("vocoder", "thing", Thing)  # registered before its kind's plugin in order

    @hookimpl
    def lyra_register_kinds(registry):
        registry.add_kind("vocoder", "build(ctx) -> vocoder")

    uses = types.SimpleNamespace(lyra_register_components=lyra_register_components)
    declares = types.SimpleNamespace(lyra_register_kinds=lyra_register_kinds)
    reg = load_plugins(extra=[("a_uses", uses), ("b_declares", declares)]).registry
    assert reg.get("vocoder", "thing").spec is Thing
    assert reg.kind("vocoder").origin.plugin == "b_declares"


def test_registry_rules():
    reg = Registry()
    origin = Origin("p", "dist", "1")
    with pytest.raises(LyraError, match="unknown component kind 'activation'"):
        reg.add("activation", "x", object, origin)
    from lyra_core.kinds import CORE_KINDS

    for kind in CORE_KINDS:
        reg.add_kind(kind)

    with pytest.raises(LyraError, match="must be an attrs class"):
        reg.add("activation", "x", object, origin)

    @attrs.frozen
    class Typed:
        type: str = "x"

    with pytest.raises(LyraError, match="reserved field 'type'"):
        reg.add("activation", "x", Typed, origin)
    with pytest.raises(LyraError, match="duplicate component kind 'model'"):
        reg.add_kind(CORE_KINDS[0].__class__("model", "again"))
    with pytest.raises(LyraError, match="did you mean 'activation'"):
        reg.names("activations")


def test_registries_are_independent():
    a = load_plugins().registry
    b = load_plugins(disabled={"activations"}).registry
    assert "snake" in a.names("activation")
    assert "snake" not in b.names("activation")


def test_plugin_loading_is_made_of_short_functions():
    """load_plugins reads as a list of steps, each a function of its own."""
    import ast
    import inspect

    import lyra_core.discovery as module

    tree = ast.parse(inspect.getsource(module))
    lengths = {
        n.name: n.end_lineno - n.lineno + 1
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef)
    }
    assert lengths["load_plugins"] <= 30
    assert max(lengths.values()) <= 35, lengths


def test_plugin_modules_use_the_shared_field_validators():
    """No plugin redefines a rule lyra_core/validators.py has (positive, odd, in [0, 1], ...)."""
    import re
    from pathlib import Path

    shared = (
        r"_?(positive|positive_ints|non_negative|odd|odd_ints|fraction|probability|at_least"
        r"|in_range|positive_each)"
    )
    root = Path(__file__).resolve().parents[1] / "plugins"
    found = [
        f"{path.relative_to(root)}: def {m.group(1)}"
        for path in root.rglob("*.py")
        for m in re.finditer(rf"^def ({shared})\(", path.read_text(), re.M)
    ]
    assert found == []


def test_slot_types_and_module_base_classes_have_different_names():
    import lyra_core
    from lyra_core import interfaces

    bases = {n for n, v in vars(interfaces).items() if isinstance(v, type)}
    assert not bases & set(lyra_core.__all__)
    assert lyra_core.BottleneckRef.kind == "bottleneck"
    assert interfaces.Bottleneck.__module__ == "lyra_core.interfaces"


def test_sibling_specs_share_their_fields_through_a_base_class():
    from lyra_plugins import blocks, coders, optimizers

    assert issubclass(blocks.EncoderBlockSpec, blocks.ResampleBlockSpec)
    assert issubclass(blocks.DecoderBlockSpec, blocks.ResampleBlockSpec)
    assert issubclass(coders.ConvEncoderSpec, coders.ConvCoderSpec)
    assert issubclass(coders.ConvDecoderSpec, coders.ConvCoderSpec)
    assert issubclass(optimizers.AdamWSpec, optimizers.AdamFamilySpec)
    assert optimizers.AdamWSpec().build(None, [torch.nn.Parameter(torch.zeros(1))]).defaults[
        "betas"
    ] == (0.8, 0.99)
