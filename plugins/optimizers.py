"""Optimizers and learning-rate schedulers, named like every other component.

Contracts: `optimizer` builds with `build(ctx, params)`; `scheduler` with
`build(ctx, optimizer, steps)` and is stepped once per optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs
import torch

from lyra_core import BuildContext, hookimpl, param
from lyra_core.validators import positive


@attrs.frozen(kw_only=True)
class AdamSpec:
    """Adam."""

    lr: float = param(1e-4, doc="learning rate", validator=positive)
    betas: tuple[float, float] = param((0.9, 0.999), doc="moment decay rates")
    eps: float = param(1e-8, doc="denominator epsilon")
    weight_decay: float = param(0.0, doc="L2 penalty (coupled, as torch's Adam)")

    def build(
        self, ctx: BuildContext, params: Iterable[torch.nn.Parameter]
    ) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
        )


@attrs.frozen(kw_only=True)
class AdamWSpec:
    """AdamW (decoupled weight decay)."""

    lr: float = param(1e-4, doc="learning rate", validator=positive)
    betas: tuple[float, float] = param((0.8, 0.99), doc="moment decay rates (DAC's defaults)")
    eps: float = param(1e-8, doc="denominator epsilon")
    weight_decay: float = param(0.01, doc="decoupled weight decay")

    def build(
        self, ctx: BuildContext, params: Iterable[torch.nn.Parameter]
    ) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
        )


def _lambda(optimizer: torch.optim.Optimizer, fn) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


@attrs.frozen(kw_only=True)
class ConstantSpec:
    """The learning rate stays as the optimizer sets it."""

    def build(self, ctx: BuildContext, optimizer, steps: int):
        return _lambda(optimizer, lambda step: 1.0)


@attrs.frozen(kw_only=True)
class ExponentialSpec:
    """Multiply the learning rate by `gamma` every step (DAC uses 0.999996)."""

    gamma: float = param(0.999996, doc="decay per step", validator=positive)

    def build(self, ctx: BuildContext, optimizer, steps: int):
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, self.gamma)


@attrs.frozen(kw_only=True)
class CosineSpec:
    """Linear warm-up, then cosine decay to `min_factor` of the base rate at the last step."""

    warmup_steps: int = param(0, doc="steps of linear warm-up from 0")
    min_factor: float = param(0.0, doc="final learning rate as a fraction of the base")

    def build(self, ctx: BuildContext, optimizer, steps: int):
        def factor(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            span = max(1, steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )

        return _lambda(optimizer, factor)


@attrs.frozen(kw_only=True)
class LinearWarmupSpec:
    """Linear warm-up over `warmup_steps`, then constant."""

    warmup_steps: int = param(1000, doc="steps to reach the base rate", validator=positive)

    def build(self, ctx: BuildContext, optimizer, steps: int):
        return _lambda(optimizer, lambda step: min(1.0, (step + 1) / self.warmup_steps))


@attrs.frozen(kw_only=True)
class InverseSpec:
    """Inverse square-root decay after warm-up (the Transformer schedule)."""

    warmup_steps: int = param(1000, doc="steps of linear warm-up", validator=positive)

    def build(self, ctx: BuildContext, optimizer, steps: int):
        w = self.warmup_steps
        return _lambda(optimizer, lambda step: min((step + 1) / w, math.sqrt(w / (step + 1))))


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("optimizer", "adam", AdamSpec)
    registry.add("optimizer", "adamw", AdamWSpec)
    registry.add("scheduler", "constant", ConstantSpec)
    registry.add("scheduler", "exponential", ExponentialSpec)
    registry.add("scheduler", "cosine", CosineSpec)
    registry.add("scheduler", "linear_warmup", LinearWarmupSpec)
    registry.add("scheduler", "inverse", InverseSpec)
