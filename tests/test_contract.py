"""Every registered built-in component passes the plugin contract (lyra_core.testing)."""

from __future__ import annotations

import pytest

from lyra_core import BuildContext
from lyra_core.plugins import load_plugins
from lyra_core.testing import check_component

PLUGINS = load_plugins(builtins_only=True)
REGISTRY = PLUGINS.registry
CASES = [(c.kind, c.name) for c in REGISTRY.components()]


def test_every_builtin_plugin_loads():
    assert PLUGINS.failures == [], "\n".join(map(str, PLUGINS.failures))
    assert len(CASES) > 10


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_component_contract(kind, name):
    ctx = BuildContext(registry=REGISTRY, sample_rate=22050, channels=1, segment_length=8192)
    check_component(REGISTRY, kind, name, ctx)
