"""Activations: Snake, SnakeBeta and the usual pointwise nonlinearities.

Contract (kind `activation`): `build(ctx, channels)` returns a module mapping [B, C, T] to the
same shape.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import attrs
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from lyra_core import BuildContext, hookimpl, param

EPS = 1e-9
SnakeImplementation = Literal["fused", "eager"]


def snake(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
    """The plain eager formula x + sin²(αx)/(β + ε), with β = α when not given (the reference)."""
    beta = alpha if beta is None else beta
    return x + torch.sin(alpha * x).pow(2) / (beta + EPS)


def snake_grads(
    grad: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of snake(x, α, β) for x [B, C, T], α and β [1, C, 1]: only x, α, β are needed."""
    inv_beta = 1.0 / (beta + EPS)
    sin_2ax = torch.sin(2 * alpha * x)  # 2·sin(αx)·cos(αx)
    grad_x = grad * (1 + alpha * inv_beta * sin_2ax)
    grad_alpha = (grad * x * sin_2ax).sum((0, 2), keepdim=True) * inv_beta
    grad_beta = -(grad * torch.sin(alpha * x).square()).sum((0, 2), keepdim=True) * inv_beta**2
    return grad_x.to(x.dtype), grad_alpha.to(alpha.dtype), grad_beta.to(beta.dtype)


class _Kernels:
    """Snake's forward and backward kernels, compiled once per process by torch.compile.

    Inductor fuses each into one loop (C++ on the CPU); `dynamic=True` keeps one compiled kernel
    for all shapes of a dtype. If compiling fails, the eager kernels run instead, with one warning.
    """

    eager: ClassVar[dict[str, Callable[..., Any]]] = {"forward": snake, "backward": snake_grads}
    compiled: ClassVar[dict[str, Callable[..., Any]]] = {}
    backend: ClassVar[str | Callable[..., Any]] = "inductor"
    failure: ClassVar[str | None] = None

    @classmethod
    def run(cls, name: str, *args: torch.Tensor) -> Any:
        eager = cls.eager[name]
        # Inside a user's torch.compile dynamo traces the plain kernels; meta tensors (shape
        # inference) have nothing to compile for.
        if cls.failure is not None or torch.compiler.is_compiling() or args[0].is_meta:
            return eager(*args)
        args = tuple(a.detach() for a in args)  # plain tensors: Parameters would add a graph
        if name not in cls.compiled:
            cls.compiled[name] = torch.compile(
                eager, backend=cls.backend, dynamic=True, fullgraph=True
            )
        try:
            return cls.compiled[name](*args)
        except Exception as err:
            result = eager(*args)  # a caller's mistake (bad shapes) raises here, as it should
            err = getattr(err, "inner_exception", None) or err  # dynamo wraps the backend's error
            if "RecompileLimit" in type(err).__name__:  # too many shapes/dtypes in one process:
                return result  # the compiled ones stay fast, this one runs eager
            cls.failure = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            warnings.warn(
                f"fused Snake: torch.compile failed ({cls.failure}); using eager kernels",
                RuntimeWarning,
                stacklevel=2,
            )
            return result


class _SnakeFunction(torch.autograd.Function):
    """Snake with a hand-written backward that saves only x, α and β (autograd keeps αx,
    sin(αx) and sin²(αx) too). First-order only: no double backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, alpha, beta)
        if beta.data_ptr() == alpha.data_ptr():  # Snake: one compiled graph for aliased inputs too
            beta = beta.clone()
        return _Kernels.run("forward", x.contiguous(), alpha, beta)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, alpha, beta = ctx.saved_tensors
        if beta.data_ptr() == alpha.data_ptr():
            beta = beta.clone()
        return _Kernels.run("backward", grad.contiguous(), x, alpha, beta)


def snake_fused(
    x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor | None = None
) -> torch.Tensor:
    """`snake` with compiled kernels and the memory-saving backward, for x [B, C, T] and
    per-channel α, β [1, C, 1]; other shapes take the eager formula."""
    beta = alpha if beta is None else beta
    if x.dim() != 3 or alpha.shape != (1, x.shape[1], 1) or beta.shape != alpha.shape:
        return snake(x, alpha, beta)
    return _SnakeFunction.apply(x, alpha, beta)


class Snake(nn.Module):
    """Snake with learnable per-channel α (and β for SnakeBeta), optionally kept in log space."""

    def __init__(
        self,
        channels: int,
        alpha: float,
        logscale: bool,
        separate_beta: bool,
        implementation: SnakeImplementation = "fused",
    ):
        super().__init__()
        init = torch.full((1, channels, 1), float(alpha))
        if logscale:
            init = torch.log(init) if alpha > 0 else torch.zeros_like(init)
        self.logscale = logscale
        self.implementation = implementation
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone()) if separate_beta else None

    def extra_repr(self) -> str:
        return f"channels={self.alpha.shape[1]}, logscale={self.logscale}, {self.implementation}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp() if self.logscale else self.alpha
        beta = None
        if self.beta is not None:
            beta = self.beta.exp() if self.logscale else self.beta
        if self.implementation == "eager":
            return snake(x, alpha, beta)
        return snake_fused(x, alpha, beta)


IMPLEMENTATION_DOC = (
    "'fused': compiled kernels and a backward that saves only x, α, β (faster, less memory); "
    "'eager': the plain formula through autograd"
)


@attrs.frozen(kw_only=True)
class SnakeSpec:
    """Snake x + sin²(αx)/α with a learnable α per channel (BigVGAN, DAC, RAVE)."""

    alpha: float = param(1.0, doc="initial α (its log when logscale; must be > 0)")
    logscale: bool = param(False, doc="keep α in log space")
    implementation: SnakeImplementation = param("fused", doc=IMPLEMENTATION_DOC)

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return Snake(channels, self.alpha, self.logscale, False, self.implementation)


@attrs.frozen(kw_only=True)
class SnakeBetaSpec:
    """SnakeBeta x + sin²(αx)/β, α and β per channel in log space, initialised to 0.

    The LyraCodec VAE's activation."""

    alpha: float = param(1.0, doc="initial α and β (stored as their logs when logscale)")
    logscale: bool = param(True, doc="keep α and β in log space")
    implementation: SnakeImplementation = param("fused", doc=IMPLEMENTATION_DOC)

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return Snake(channels, self.alpha, self.logscale, True, self.implementation)


@attrs.frozen(kw_only=True)
class LeakyReLUSpec:
    """Leaky ReLU."""

    negative_slope: float = param(0.2, doc="slope for x < 0")

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return nn.LeakyReLU(self.negative_slope)


@attrs.frozen(kw_only=True)
class ELUSpec:
    """Exponential linear unit."""

    alpha: float = param(1.0, doc="saturation value for x < 0")

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return nn.ELU(self.alpha)


@attrs.frozen(kw_only=True)
class GELUSpec:
    """Gaussian error linear unit."""

    approximate: Literal["none", "tanh"] = param("none", doc="exact or tanh approximation")

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return nn.GELU(approximate=self.approximate)


@attrs.frozen(kw_only=True)
class TanhSpec:
    """Hyperbolic tangent."""

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return nn.Tanh()


@attrs.frozen(kw_only=True)
class IdentitySpec:
    """No activation."""

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return nn.Identity()


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("activation", "snake", SnakeSpec)
    registry.add("activation", "snake_beta", SnakeBetaSpec)
    registry.add("activation", "leaky_relu", LeakyReLUSpec)
    registry.add("activation", "elu", ELUSpec)
    registry.add("activation", "gelu", GELUSpec)
    registry.add("activation", "tanh", TanhSpec)
    registry.add("activation", "identity", IdentitySpec)
