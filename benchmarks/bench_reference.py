"""Lyra-built reference generators against the reference packages' own models (SNAC, DAC).

Each reference model is built by its package with random weights; the Lyra model is built from
the spec its importer gives and loaded with the same weights (`lyra import`'s mapping), so both
compute the same function. Timed: one training step's forward + backward (mean |y| as the
loss) on the same input, in train mode, two threads. Lyra's Snake is its fused kernel (compiled
before timing); the references use their TorchScript Snake.

Run: `.venv/bin/pytest benchmarks/bench_reference.py --benchmark-only`. With `--benchmark-disable`
(CI) each case runs once on the shortest input the model takes.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from lyra_core.discovery import load_plugins
from lyra_core.inference.importing import build_model, importer
from lyra_core.loader import validate_data
from lyra_plugins.importers import SNAC_CONFIGS, signature_defaults

PLUGINS = load_plugins()
SECONDS = 0.5  # of audio per timed step


def reference(name: str) -> tuple[str, nn.Module, dict[str, Any]]:
    """(importer, the reference package's model, its config) for a case name."""
    if name.startswith("snac"):
        from snac import SNAC

        config = {**signature_defaults(SNAC), **SNAC_CONFIGS[name.removeprefix("snac_")]}
        return "snac", SNAC(**config), config
    from dac.model import DAC

    config = signature_defaults(DAC)
    return "dac", DAC(**config), config


def pair(name: str) -> tuple[nn.Module, nn.Module, int]:
    """The reference model, the Lyra model with its weights, and the length unit in samples."""
    torch.manual_seed(0)
    which, ref, config = reference(name)
    imp = importer(PLUGINS, which)
    spec = validate_data(imp.experiment(config), PLUGINS.registry)
    model = build_model(spec, PLUGINS.registry)
    model.load_state_dict(imp.convert(ref.state_dict(), config, model))
    return ref.train(), model.train(), model.hop_length * model.frame_multiple


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "bottleneck"):  # Lyra's: a ModelOutput
        return model(x).reconstruction
    out = model(x)  # DAC: a dict; SNAC: (audio, codes)
    return out["audio"] if isinstance(out, dict) else out[0]


@pytest.fixture(scope="module", params=["snac_24khz", "snac_32khz", "dac_44khz"])
def models(request) -> tuple[str, nn.Module, nn.Module, int]:
    return request.param, *pair(request.param)


@pytest.mark.parametrize("implementation", ["reference", "lyra"])
def test_generator_forward_backward(benchmark, models, implementation):
    name, ref, lyra, unit = models
    rate = {"snac_24khz": 24000, "snac_32khz": 32000, "dac_44khz": 44100}[name]
    disabled = benchmark.disabled
    length = unit if disabled else unit * math.ceil(SECONDS * rate / unit)
    x = torch.randn(1, 1, length, generator=torch.Generator().manual_seed(1))
    model = ref if implementation == "reference" else lyra
    benchmark.group = f"{name} generator fwd+bwd [1, 1, {length}]"
    benchmark.extra_info["parameters"] = sum(p.numel() for p in model.parameters())

    def step() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        y = forward(model, x)
        y.abs().mean().backward()
        return y

    if not disabled:
        step()  # compile Lyra's fused Snake, warm both up
    y = benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=0)
    assert y.shape[-1] >= length and bool(torch.isfinite(y).all())
