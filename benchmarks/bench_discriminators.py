"""Discriminator cost: forward + backward of MSD, MPD, MRSD and `combined` (all three) at their
default sizes on [2, 1, 22050], side by side in one group.

Run: `.venv/bin/pytest benchmarks/bench_discriminators.py --benchmark-only` (CI:
`--benchmark-disable`, one pass each on a shorter [2, 1, 4096] batch, checking the gradients).
Two threads, set by benchmarks/conftest.py. Each step backpropagates the sum of the logits' means
into the parameters (a D step) and into the audio (a G step). `extra_info` records the parameter
count, the number of sub-discriminators and, when timed, the peak of allocated tensor memory.
"""

from __future__ import annotations

import pytest
import torch

from lyra_core import BuildContext, DiscriminatorRef
from lyra_core.discovery import load_plugins
from lyra_core.spec import structure

SHAPE = (2, 1, 22050)
CI_SHAPE = (2, 1, 4096)
SPECS = {
    "msd": {"type": "msd"},
    "mpd": {"type": "mpd"},
    "mrsd": {"type": "mrsd"},
    "combined": {
        "type": "combined",
        "members": [{"type": "msd"}, {"type": "mpd"}, {"type": "mrsd"}],
    },
}


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


@pytest.mark.benchmark(group="discriminator forward+backward [2, 1, 22050]")
@pytest.mark.parametrize("name", list(SPECS))
def test_discriminator_forward_backward(benchmark, registry, peak_allocated_bytes, name):
    ctx = BuildContext(registry=registry, sample_rate=44100, channels=1)
    disc = structure(SPECS[name], DiscriminatorRef, registry).build(ctx)
    shape = CI_SHAPE if benchmark.disabled else SHAPE
    audio = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    def step() -> tuple[torch.Tensor | None, int]:
        disc.zero_grad(set_to_none=True)
        x = audio.clone().requires_grad_()
        critiques = disc(x)
        sum(c.logits.mean() for c in critiques).backward()
        return x.grad, len(critiques)

    grad, judges = benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters())

    benchmark.extra_info["parameters"] = sum(p.numel() for p in disc.parameters())
    benchmark.extra_info["sub_discriminators"] = judges
    if not benchmark.disabled:
        benchmark.extra_info["peak_mib"] = round(peak_allocated_bytes(step) / 2**20, 1)
