"""Every registered component of the benchmarked kinds, on standard shapes per kind.

The cases are read from the live registry (`load_plugins().registry`) when pytest collects this
file, so a component that an installed plugin adds is measured beside the built-ins with no code.
Each component is built from `lyra_core.testing.example_spec` and its kind's build contract, and
timed forward (no gradients) and, where gradients flow in training (every kind but augmentation,
or a component with parameters), forward + backward. One benchmark group per kind; `extra_info`
holds the parameter count, the peak of tensor memory during one step (MiB) and the input shape.

Run: `.venv/bin/pytest benchmarks/bench_registry.py` or `lyra bench --kind activation`. With
`--benchmark-disable` (CI) each case runs once on its kind's small smoke shape instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from typing import Any

import pytest
import torch
from torch import nn

from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.interfaces import Critique, ModelOutput
from lyra_core.registry import Registry
from lyra_core.testing import example_spec

KINDS = (
    "activation",
    "block",
    "filterbank",
    "bottleneck",
    "loss",
    "discriminator",
    "augmentation",
    "adversarial",
)
# [batch, channels, length] per kind: (standard, smoke). Blocks keep their width and take stride 2
# (stride 1 if they must keep the length); bottlenecks take their own input_channels and `length`
# frames; adversarial losses get 3 critiques of 4 feature maps [B, C, T] and logits [B, 1, T].
SHAPES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "activation": ((4, 64, 16384), (2, 8, 1024)),
    "block": ((4, 64, 8192), (2, 8, 1024)),
    "filterbank": ((4, 1, 65536), (2, 1, 4096)),
    "bottleneck": ((8, 0, 256), (2, 0, 16)),
    "loss": ((4, 1, 44100), (2, 1, 8192)),
    "discriminator": ((2, 1, 16384), (1, 1, 2048)),
    "augmentation": ((8, 1, 32768), (2, 1, 16384)),
    "adversarial": ((4, 32, 1024), (2, 8, 128)),
}
SAMPLE_RATE = 44100
GRADIENT_FREE_KINDS = {"augmentation"}  # data transforms: their inputs never carry gradients
TERMS = ("kl", "commitment")  # named terms a loss may read from the model output
CRITIQUES, FEATURE_MAPS = 3, 4

REGISTRY: Registry = load_plugins().registry


def shape_of(kind: str, smoke: bool) -> tuple[int, int, int]:
    return SHAPES[kind][1 if smoke else 0]


def context(kind: str, smoke: bool) -> BuildContext:
    _, channels, length = shape_of(kind, smoke)
    audio = kind in ("loss", "discriminator", "augmentation", "filterbank")
    return BuildContext(
        registry=REGISTRY,
        sample_rate=SAMPLE_RATE,
        channels=channels if audio else 1,
        segment_length=length,
    )


def build(kind: str, name: str, smoke: bool) -> Any:
    """The component from its example spec, following the kind's build contract."""
    spec = example_spec(REGISTRY.get(kind, name).spec)
    ctx = context(kind, smoke)
    if kind == "activation":
        return spec.build(ctx, channels=shape_of(kind, smoke)[1])
    if kind == "block":
        channels = shape_of(kind, smoke)[1]
        try:
            return spec.build(ctx, in_channels=channels, out_channels=channels, stride=2)
        except LyraError:  # a block that must keep the length (e.g. a residual unit)
            return spec.build(ctx, in_channels=channels, out_channels=channels, stride=1)
    return spec.build(ctx, **REGISTRY.kind(kind).example())


def modes(kind: str, name: str) -> tuple[str, ...]:
    """forward, plus forward+backward where gradients flow through the component in training."""
    if kind not in GRADIENT_FREE_KINDS:
        return ("forward", "forward+backward")
    try:
        module = build(kind, name, smoke=True)
    except Exception:  # the forward case reports the failure
        return ("forward",)
    has_params = isinstance(module, nn.Module) and any(p.requires_grad for p in module.parameters())
    return ("forward", "forward+backward") if has_params else ("forward",)


def cases(registry: Registry = REGISTRY) -> list[tuple[str, str, str]]:
    """`(kind, name, mode)` for every registered component of the benchmarked kinds."""
    return [
        (kind, comp.name, mode)
        for kind in KINDS
        if kind in registry.kinds
        for comp in registry.components(kind)
        for mode in modes(kind, comp.name)
    ]


CASES = cases()


def case_id(kind: str, name: str, mode: str) -> str:
    return f"{kind}-{name}-{mode}"


# -- inputs and calls per kind: each returns the inputs and a function of them ------------------


def randn(*shape: int, grad: bool = False, seed: int = 0) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return x.requires_grad_(grad)


def critiques(shape: tuple[int, int, int], grad: bool, seed: int) -> list[Critique]:
    batch, channels, length = shape
    return [
        Critique(
            features=[
                randn(batch, channels, length, grad=grad, seed=seed + 10 * i + j)
                for j in range(FEATURE_MAPS)
            ],
            logits=randn(batch, 1, length, grad=grad, seed=seed + 10 * i + 9),
        )
        for i in range(CRITIQUES)
    ]


def prepare(kind: str, module: Any, smoke: bool, grad: bool) -> Callable[[], Any]:
    """The call that one benchmark round times, with its inputs made beforehand."""
    batch, channels, length = shape_of(kind, smoke)
    if kind in ("activation", "block"):
        x = randn(batch, channels, length, grad=grad)
        return lambda: module(x)
    if kind == "filterbank":
        x = randn(batch, channels, length, grad=grad)
        return lambda: module.synthesis(module.analysis(x))
    if kind == "bottleneck":
        h = randn(batch, module.input_channels, length, grad=grad)

        def bottleneck() -> Any:
            z, terms = module.encode(h)
            return module.decoder_input(z, length), terms

        return bottleneck
    if kind == "loss":
        target = randn(batch, channels, length, seed=1)
        prediction = (target + 0.3 * randn(batch, channels, length, seed=2)).requires_grad_(grad)
        latent = randn(batch, 16, max(1, length // 512), grad=grad, seed=3)
        terms = {name: torch.tensor(0.5 + i, requires_grad=grad) for i, name in enumerate(TERMS)}
        return lambda: module(ModelOutput(prediction, latent, terms), target)
    if kind == "discriminator":
        x = randn(batch, channels, length, grad=grad)
        return lambda: module(x)
    if kind == "augmentation":
        x, generator = randn(batch, channels, length), torch.Generator()
        return lambda: module(x, generator.manual_seed(0))
    if kind == "adversarial":
        real, fake = (
            critiques(shape_of(kind, smoke), False, 0),
            critiques(shape_of(kind, smoke), grad, 100),
        )

        def adversarial() -> list[torch.Tensor]:
            d_loss = module.discriminator_loss(real, fake)
            return [v for v in (d_loss, module.generator_loss(real, fake)) if v is not None]

        return adversarial
    raise AssertionError(f"no harness for kind '{kind}'")


def tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in an output: tensors, sequences, dicts and dataclasses (Critique, ...)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors(item)
    elif is_dataclass(obj):
        for f in fields(obj):
            yield from tensors(getattr(obj, f.name))


def scalar(output: Any) -> torch.Tensor:
    """What the backward pass starts from: the sum of the means of the differentiable outputs."""
    parts = [t.float().mean() for t in tensors(output) if t.requires_grad]
    assert parts, "the output does not depend on anything that needs gradients"
    return torch.stack(parts).sum()


def check_output(kind: str, output: Any, smoke: bool) -> None:
    """The output follows the kind's contract and is finite."""
    batch, channels, length = shape_of(kind, smoke)
    values = list(tensors(output))
    assert values, f"{kind}: the output holds no tensor"
    assert all(bool(torch.isfinite(v).all()) for v in values), f"{kind}: non-finite output"
    if kind in ("activation", "filterbank"):
        assert output.shape == (batch, channels, length)
    elif kind == "loss":
        assert output.dim() == 0
    elif kind == "augmentation":
        assert output.shape[:2] == (batch, channels) and output.shape[-1] <= length
    elif kind == "discriminator":
        assert output and all(isinstance(c, Critique) for c in output)


@pytest.mark.parametrize(("kind", "name", "mode"), CASES, ids=[case_id(*c) for c in CASES])
def test_component(benchmark, peak_allocated_bytes, kind: str, name: str, mode: str):
    smoke = benchmark.disabled
    torch.manual_seed(0)
    module = build(kind, name, smoke)
    backward = mode == "forward+backward"
    call = prepare(kind, module, smoke, grad=backward)
    params = list(module.parameters()) if isinstance(module, nn.Module) else []

    if backward:

        def step() -> Any:
            for p in params:
                p.grad = None
            output = call()
            scalar(output).backward()
            return output
    else:

        def step() -> Any:
            with torch.no_grad():
                return call()

    benchmark.group = f"registry: {kind} {list(shape_of(kind, smoke))}"
    benchmark.extra_info.update(
        kind=kind,
        component=name,
        mode=mode,
        shape=list(shape_of(kind, smoke)),
        params=sum(p.numel() for p in params),
    )
    if not smoke:  # CI runs each case once, untimed: no warm-up, no memory probe
        step()  # warm up (compiled kernels, allocator) outside the timing
        benchmark.extra_info["peak_mib"] = round(peak_allocated_bytes(step) / 2**20, 2)
    output = benchmark(step)
    check_output(kind, output, smoke)
