"""Snake forward + backward on [4, 512, 16384] float32: the fused path against the eager formula.

Both run in one process under the same allocator settings; the fused kernels are compiled before
timing. Peak memory (bytes allocated during one step, beyond the inputs) is in `extra_info`.
Run: `.venv/bin/pytest benchmarks/bench_snake.py` (for glibc's allocator settings, see
REFERENCE.md "Performance facts": export them for both runs alike).
"""

from __future__ import annotations

import pytest
import torch

from lyra_plugins.activations import snake, snake_fused

SHAPE = (4, 512, 16384)
IMPLEMENTATIONS = {"eager": snake, "fused": snake_fused}


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen).requires_grad_()
    alpha = (0.5 + torch.rand(1, SHAPE[1], 1, generator=gen)).requires_grad_()
    grad = torch.randn(SHAPE, generator=gen)
    return x, alpha, grad


@pytest.mark.benchmark(group="snake fwd+bwd [4, 512, 16384]")
@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
def test_snake_forward_backward(benchmark, inputs, peak_allocated_bytes, implementation):
    x, alpha, grad = inputs
    fn = IMPLEMENTATIONS[implementation]

    def step():
        return torch.autograd.grad(fn(x, alpha), (x, alpha), grad)  # no .grad accumulation

    step()  # compile (fused) and warm up outside the timing
    peak = peak_allocated_bytes(step)
    benchmark.extra_info["peak_mb"] = round(peak / 2**20, 1)
    benchmark.extra_info["peak_tensors"] = round(peak / (x.numel() * x.element_size()), 2)
    grad_x, grad_alpha = benchmark.pedantic(step, rounds=7, iterations=1, warmup_rounds=1)
    assert grad_x.shape == x.shape and bool(torch.isfinite(grad_alpha).all())
