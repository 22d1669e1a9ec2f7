"""Activations: Snake, SnakeBeta and the usual pointwise nonlinearities.

Contract (kind `activation`): `build(ctx, channels)` returns a module mapping [B, C, T] to the
same shape.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn

from lyra_core import BuildContext, hookimpl, param

EPS = 1e-9


def snake(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
    """The plain eager formula x + sin²(αx)/(β + ε), with β = α when not given (the reference)."""
    beta = alpha if beta is None else beta
    return x + torch.sin(alpha * x).pow(2) / (beta + EPS)


class Snake(nn.Module):
    """Snake with learnable per-channel α (and β for SnakeBeta), optionally kept in log space."""

    def __init__(self, channels: int, alpha: float, logscale: bool, separate_beta: bool):
        super().__init__()
        init = torch.full((1, channels, 1), float(alpha))
        if logscale:
            init = torch.log(init) if alpha > 0 else torch.zeros_like(init)
        self.logscale = logscale
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone()) if separate_beta else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp() if self.logscale else self.alpha
        beta = None
        if self.beta is not None:
            beta = self.beta.exp() if self.logscale else self.beta
        return snake(x, alpha, beta)


@attrs.frozen(kw_only=True)
class SnakeSpec:
    """Snake x + sin²(αx)/α with a learnable α per channel (BigVGAN, DAC, RAVE)."""

    alpha: float = param(1.0, doc="initial α (its log when logscale; must be > 0)")
    logscale: bool = param(False, doc="keep α in log space")

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return Snake(channels, self.alpha, self.logscale, separate_beta=False)


@attrs.frozen(kw_only=True)
class SnakeBetaSpec:
    """SnakeBeta x + sin²(αx)/β, α and β per channel in log space, initialised to 0 (seed 001)."""

    alpha: float = param(1.0, doc="initial α and β (stored as their logs when logscale)")
    logscale: bool = param(True, doc="keep α and β in log space")

    def build(self, ctx: BuildContext, channels: int) -> nn.Module:
        return Snake(channels, self.alpha, self.logscale, separate_beta=True)


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
