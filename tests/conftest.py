"""Shared fixtures: a registry with small test-only components next to the installed plugins;
the check for the system packages some tests need."""

from __future__ import annotations

import functools
import subprocess
import types
from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

from lyra_core import ActivationRef, BuildContext, hookimpl, param
from lyra_core.discovery import Plugins, load_plugins
from lyra_core.testing import torch_threads

SYSTEM_PACKAGES = Path(__file__).resolve().parents[1] / "tools" / "system_packages.sh"


@attrs.frozen(kw_only=True)
class TinyModelSpec:
    """A one-conv model for spec tests."""

    channels: int = param(8, doc="hidden width", validator=attrs.validators.gt(0))
    activation: ActivationRef = param(doc="activation after the conv")

    def build(self, ctx: BuildContext) -> nn.Module:
        act = self.activation.build(ctx, channels=self.channels)
        return nn.Sequential(nn.Conv1d(ctx.channels, self.channels, 3, padding=1), act)


@attrs.frozen(kw_only=True)
class NoiseDatasetSpec:
    """Seeded white noise (test-only)."""

    items: int = param(4, doc="examples")

    def build(self, ctx: BuildContext, split: str) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(ctx.seed)
        shape = (self.items, ctx.channels, ctx.segment_length)
        return list(torch.randn(shape, generator=gen))


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("model", "tiny", TinyModelSpec)
    registry.add("dataset", "noise", NoiseDatasetSpec)


TEST_PARTS = types.SimpleNamespace(lyra_register_components=lyra_register_components)


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    """The installed plugins plus the test-only `tiny` model and `noise` dataset."""
    return load_plugins(extra=[("testparts", TEST_PARTS)])


@pytest.fixture
def registry(plugins):
    return plugins.registry


@pytest.fixture
def tiny_spec() -> dict:
    """A valid experiment spec using the test-only components."""
    return {
        "data": {"dataset": {"type": "noise"}, "segment_length": 1024},
        "model": {"type": "tiny", "activation": {"type": "snake"}},
        "training": {"optimizer": {"type": "adam", "lr": 0.001}, "steps": 5},
    }


@pytest.fixture(scope="module")
def small_and_eager():
    """Tiny tensors: one intra-op thread avoids OpenMP's overhead on a busy 2-core machine, and
    eager kernels avoid compiling (for tests about shapes and wiring, not speed)."""
    with torch_threads(1), torch.compiler.set_stance("force_eager"):
        yield


@functools.cache
def missing_system_packages(group: str) -> str:
    """The line `tools/system_packages.sh --check GROUP` prints ('sound' or 'browser'): what is
    missing and how to add it; '' when all are installed."""
    check = [str(SYSTEM_PACKAGES), "--check", group]
    return subprocess.run(check, capture_output=True, text=True, check=False).stdout.strip()


def require_system_packages(group: str) -> None:
    """Skip the test with that line when some of the group's packages are missing."""
    if line := missing_system_packages(group):
        pytest.skip(line)
