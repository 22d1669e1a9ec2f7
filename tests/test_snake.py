"""Snake and SnakeBeta: the fused path agrees with the eager formula, saves memory, falls back."""

from __future__ import annotations

import warnings

import pytest
import torch

from lyra_core import BuildContext, SpecError
from lyra_core.loader import validate_data
from lyra_core.testing import peak_allocated_bytes
from lyra_plugins.activations import _Kernels, snake, snake_fused


def build(registry, name: str, channels: int = 8, **fields) -> torch.nn.Module:
    spec = registry.get("activation", name).spec(**fields)
    return spec.build(BuildContext(registry=registry), channels=channels)


def perturb_(module: torch.nn.Module, seed: int) -> None:
    """Move α (and β) away from their equal initial values so every gradient term matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.rand(p.shape, generator=gen))


def forward_backward(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().requires_grad_()
    module.zero_grad()
    y = module(x)
    y.backward(grad)
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.fixture
def fresh_kernels():
    """Isolate tests that break compilation from the process-wide compiled kernels."""
    saved = dict(_Kernels.compiled), _Kernels.failure, _Kernels.backend
    _Kernels.compiled.clear()
    _Kernels.failure = None
    yield _Kernels
    _Kernels.compiled.clear()
    _Kernels.compiled.update(saved[0])
    _Kernels.failure, _Kernels.backend = saved[1], saved[2]


@pytest.mark.parametrize("name", ["snake", "snake_beta"])
def test_fused_matches_eager_in_value_and_gradient(registry, name):
    eager = build(registry, name, implementation="eager")
    fused = build(registry, name)
    assert fused.implementation == "fused"  # the default
    perturb_(eager, seed=1)
    fused.load_state_dict(eager.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2, 8, 1000, generator=gen)
    grad = torch.randn(2, 8, 1000, generator=gen)
    y_e, gx_e, gp_e = forward_backward(eager, x, grad)
    y_f, gx_f, gp_f = forward_backward(fused, x, grad)
    torch.testing.assert_close(y_f, y_e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx_f, gx_e, rtol=1e-5, atol=1e-5)
    assert gp_f.keys() == gp_e.keys() == ({"alpha", "beta"} if name == "snake_beta" else {"alpha"})
    for key in gp_e:  # sums over 2000 samples: compare relative to their size
        torch.testing.assert_close(
            gp_f[key], gp_e[key], rtol=1e-5, atol=1e-5 * gp_e[key].abs().max()
        )


def test_the_option_selects_the_implementation(registry):
    x = torch.randn(2, 8, 16, requires_grad=True)
    assert type(build(registry, "snake")(x).grad_fn).__name__ == "_SnakeFunctionBackward"
    assert type(build(registry, "snake", implementation="eager")(x).grad_fn).__name__.startswith(
        "Add"
    )


def test_one_compile_serves_every_shape():
    from torch._dynamo.utils import counters

    def step(batch: int, channels: int, length: int) -> None:
        x = torch.randn(batch, channels, length, requires_grad=True)
        alpha = torch.rand(1, channels, 1, requires_grad=True)
        torch.autograd.grad(snake_fused(x, alpha), (x, alpha), torch.ones_like(x))

    step(2, 4, 50)
    graphs = counters["stats"]["unique_graphs"]
    step(3, 5, 77)
    step(4, 16, 300)
    assert counters["stats"]["unique_graphs"] == graphs


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    alpha = (0.5 + torch.rand(1, 3, 1, generator=gen, dtype=torch.float64)).requires_grad_()
    beta = (0.5 + torch.rand(1, 3, 1, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(snake_fused, (x, alpha, beta))  # SnakeBeta
    assert torch.autograd.gradcheck(snake_fused, (x, alpha))  # Snake: β is α


def test_bf16_autocast_matches_eager():
    gen = torch.Generator().manual_seed(3)
    alpha = (0.5 + torch.rand(1, 4, 1, generator=gen)).requires_grad_()
    x = torch.randn(2, 4, 64, generator=gen).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = snake_fused(x, alpha)
        y_eager = snake(x, alpha)
    assert y.dtype == y_eager.dtype
    torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and alpha.grad.dtype == torch.float32


def test_fused_backward_peaks_lower_than_eager():
    x = torch.randn(2, 16, 4096, requires_grad=True)
    alpha = torch.ones(1, 16, 1, requires_grad=True)
    grad = torch.randn_like(x)

    def step(fn):
        def run():
            torch.autograd.grad(fn(x, alpha), (x, alpha), grad)

        return run

    step(snake_fused)()  # compile outside the measurement
    tensor_bytes = x.numel() * x.element_size()
    fused, eager = peak_allocated_bytes(step(snake_fused)), peak_allocated_bytes(step(snake))
    assert fused <= 2.1 * tensor_bytes  # the output and ∂x: nothing saved besides x
    assert fused < eager


def _failing_backend(graph, example_inputs):
    raise RuntimeError("no compiler here")


def test_compile_failure_falls_back_to_eager_with_one_warning(fresh_kernels):
    fresh_kernels.backend = _failing_backend
    x = torch.randn(2, 4, 32, requires_grad=True)
    alpha = torch.full((1, 4, 1), 0.7, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no compiler here"):
        y = snake_fused(x, alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        y.sum().backward()
        torch.testing.assert_close(snake_fused(x, alpha), snake(x, alpha))
    assert x.grad is not None and alpha.grad is not None


def test_meta_tensors_infer_shapes_without_compiling(fresh_kernels):
    x = torch.empty(2, 4, 32, device="meta", requires_grad=True)
    alpha = torch.empty(1, 4, 1, device="meta", requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = snake_fused(x, alpha)
        y.sum().backward()
    assert y.shape == x.shape and alpha.grad.shape == alpha.shape
    assert fresh_kernels.compiled == {} and fresh_kernels.failure is None


def test_shapes_it_does_not_handle_take_the_eager_formula():
    x = torch.randn(4, 10)
    alpha = torch.full((10,), 0.5)
    torch.testing.assert_close(snake_fused(x, alpha), snake(x, alpha))


def test_spec_rejects_unknown_implementation(registry, tiny_spec):
    tiny_spec["model"]["activation"] = {"type": "snake", "implementation": "fast"}
    with pytest.raises(SpecError) as info:
        validate_data(tiny_spec, registry)
    assert [path for path, _ in info.value.problems] == ["$.model.activation.implementation"]
