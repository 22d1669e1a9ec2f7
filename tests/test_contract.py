"""Every registered built-in component passes the plugin contract (lyra_core.testing)."""

from __future__ import annotations

import attrs
import pytest
import torch

from lyra_core import BuildContext
from lyra_core.contracts import ContractError
from lyra_core.discovery import load_plugins
from lyra_core.registry import Origin
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


# --- deliberately broken components: the contract check must reject each -----------------------


class _Widen(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], dim=1)


class _Text(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> str:
        return "not audio"


class _NaN(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


class _Half(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.half()


class _Detached(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.scale).detach()


def _spec(module: type[torch.nn.Module]) -> type:
    @attrs.frozen(kw_only=True)
    class BrokenSpec:
        """A deliberately broken activation."""

        def build(self, ctx: BuildContext, channels: int) -> torch.nn.Module:
            return module()

    return BrokenSpec


@pytest.mark.parametrize(
    ("module", "complaint"),
    [
        (_Widen, "shape [2, 8, 64], expected [2, 4, 64]"),
        (_Text, "is str, not a tensor"),
        (_NaN, "not finite"),
        (_Half, "dtype torch.float16"),
        (_Detached, "does not depend on the input or the parameters"),
    ],
)
def test_check_component_runs_the_module_and_rejects_broken_ones(module, complaint):
    registry = load_plugins(builtins_only=True).registry
    registry.add("activation", "broken", _spec(module), Origin("tests", "tests"))
    with pytest.raises(ContractError) as info:
        check_component(registry, "activation", "broken")
    assert "activation 'broken' breaks the activation contract" in str(info.value)
    assert complaint in str(info.value)


def test_a_well_behaved_plugin_component_passes():
    registry = load_plugins(builtins_only=True).registry
    registry.add("activation", "fine", _spec(torch.nn.Tanh), Origin("tests", "tests"))
    assert isinstance(check_component(registry, "activation", "fine"), torch.nn.Tanh)
