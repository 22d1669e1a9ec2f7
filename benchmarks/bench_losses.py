"""Loss throughput: Lyra's MR-STFT loss beside auraloss's on [4, 1, 44100], and the mel loss.

Run: `.venv/bin/pytest benchmarks/bench_losses.py` (CI: `--benchmark-disable`, one pass each).
Two threads, set by benchmarks/conftest.py. auraloss is the optional `[bench]` extra; its
benchmarks skip without it. Every benchmark checks its result, so a disabled run still tests.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lyra_core import BuildContext, LossRef
from lyra_core.discovery import load_plugins
from lyra_core.interfaces import ModelOutput
from lyra_core.spec import structure

SHAPE = (4, 1, 44100)
HAS_AURALOSS = importlib.util.find_spec("auraloss") is not None
needs_auraloss = pytest.mark.skipif(
    not HAS_AURALOSS, reason="auraloss not installed (pip install 'lyra-audio[bench]')"
)


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


@pytest.fixture(scope="module")
def audio() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(SHAPE, generator=gen)
    return target + 0.3 * torch.randn(SHAPE, generator=gen), target


def lyra_loss(registry, data: dict, sample_rate: int = 44100):
    spec = structure(data, LossRef, registry)
    return spec.build(BuildContext(registry=registry, sample_rate=sample_rate))


def forward_backward(fn, prediction: torch.Tensor, target: torch.Tensor):
    def step() -> float:
        x = prediction.clone().requires_grad_()
        value = fn(x, target)
        value.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        return value.item()

    return step


def reference_value(audio) -> float:
    import auraloss

    with torch.no_grad():
        return auraloss.freq.MultiResolutionSTFTLoss()(*audio).item()


@pytest.mark.benchmark(group="mrstft forward [4, 1, 44100]")
def test_lyra_mrstft_forward(benchmark, registry, audio):
    loss = lyra_loss(registry, {"type": "multi_resolution_stft"})

    def forward() -> float:
        with torch.no_grad():
            return loss(ModelOutput(audio[0], audio[0]), audio[1]).item()

    value = benchmark(forward)
    if HAS_AURALOSS:
        assert value == pytest.approx(reference_value(audio), rel=1e-5)


@needs_auraloss
@pytest.mark.benchmark(group="mrstft forward [4, 1, 44100]")
def test_auraloss_mrstft_forward(benchmark, audio):
    import auraloss

    loss = auraloss.freq.MultiResolutionSTFTLoss()

    def forward() -> float:
        with torch.no_grad():
            return loss(*audio).item()

    assert benchmark(forward) > 0


@pytest.mark.benchmark(group="mrstft forward+backward [4, 1, 44100]")
def test_lyra_mrstft_forward_backward(benchmark, registry, audio):
    loss = lyra_loss(registry, {"type": "multi_resolution_stft"})
    value = benchmark(forward_backward(lambda x, y: loss(ModelOutput(x, x), y), *audio))
    if HAS_AURALOSS:
        assert value == pytest.approx(reference_value(audio), rel=1e-5)


@needs_auraloss
@pytest.mark.benchmark(group="mrstft forward+backward [4, 1, 44100]")
def test_auraloss_mrstft_forward_backward(benchmark, audio):
    import auraloss

    loss = auraloss.freq.MultiResolutionSTFTLoss()
    assert benchmark(forward_backward(loss, *audio)) > 0


@pytest.mark.benchmark(group="mel and RAVE spectral forward+backward [4, 1, 44100]")
def test_lyra_mel_forward_backward(benchmark, registry, audio):
    loss = lyra_loss(registry, {"type": "mel"})
    assert benchmark(forward_backward(lambda x, y: loss(ModelOutput(x, x), y), *audio)) > 0


@pytest.mark.benchmark(group="mel and RAVE spectral forward+backward [4, 1, 44100]")
def test_lyra_multiscale_spectral_forward_backward(benchmark, registry, audio):
    loss = lyra_loss(registry, {"type": "multiscale_spectral"})
    assert benchmark(forward_backward(lambda x, y: loss(ModelOutput(x, x), y), *audio)) > 0
