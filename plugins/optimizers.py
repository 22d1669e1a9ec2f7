"""Optimizers and learning-rate schedulers, named like every other component.

Contracts: `optimizer` builds with `build(ctx, params)`; `scheduler` with
`build(ctx, optimizer, steps)` and is stepped once per optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import attrs
import torch

from lyra_core import BuildContext, hookimpl, param
from lyra_core.validators import (
    MAX_COUNT,
    between,
    each,
    fraction,
    non_negative,
    open_fraction,
    positive,
    size,
)


def _betas(default: tuple[float, float], doc: str) -> Any:
    return param(default, doc=f"{doc}, each in [0, 1)", validator=each(open_fraction, max_items=2))


@attrs.frozen(kw_only=True)
class AdamFamilySpec:
    """The fields Adam and AdamW share; subclasses add betas and weight decay."""

    torch_optimizer: ClassVar[type[torch.optim.Optimizer]]

    lr: float = param(1e-4, doc="learning rate", validator=positive)
    eps: float = param(1e-8, doc="denominator epsilon", validator=positive)

    def build(
        self, ctx: BuildContext, params: Iterable[torch.nn.Parameter]
    ) -> torch.optim.Optimizer:
        betas: tuple[float, float] = tuple(self.betas)  # type: ignore[attr-defined]
        decay: float = self.weight_decay  # type: ignore[attr-defined]
        return self.torch_optimizer(
            params, lr=self.lr, betas=betas, eps=self.eps, weight_decay=decay
        )


@attrs.frozen(kw_only=True)
class AdamSpec(AdamFamilySpec):
    """Adam."""

    torch_optimizer = torch.optim.Adam

    betas: tuple[float, float] = _betas((0.9, 0.999), "moment decay rates")
    weight_decay: float = param(
        0.0, doc="L2 penalty (coupled, as torch's Adam)", validator=non_negative
    )


@attrs.frozen(kw_only=True)
class AdamWSpec(AdamFamilySpec):
    """AdamW (decoupled weight decay)."""

    torch_optimizer = torch.optim.AdamW

    betas: tuple[float, float] = _betas((0.8, 0.99), "moment decay rates (DAC's defaults)")
    weight_decay: float = param(0.01, doc="decoupled weight decay", validator=non_negative)


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

    gamma: float = param(0.999996, doc="decay per step", validator=between(0, 1, low_open=True))

    def build(self, ctx: BuildContext, optimizer, steps: int):
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, self.gamma)


@attrs.frozen(kw_only=True)
class CosineSpec:
    """Linear warm-up, then cosine decay to `min_factor` of the base rate at the last step."""

    warmup_steps: int = param(
        0, doc="steps of linear warm-up from 0", validator=size(MAX_COUNT, minimum=0)
    )
    min_factor: float = param(
        0.0, doc="final learning rate as a fraction of the base", validator=fraction
    )

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

    warmup_steps: int = param(1000, doc="steps to reach the base rate", validator=size(MAX_COUNT))

    def build(self, ctx: BuildContext, optimizer, steps: int):
        return _lambda(optimizer, lambda step: min(1.0, (step + 1) / self.warmup_steps))


@attrs.frozen(kw_only=True)
class InverseSpec:
    """Inverse square-root decay after warm-up (the Transformer schedule)."""

    warmup_steps: int = param(1000, doc="steps of linear warm-up", validator=size(MAX_COUNT))

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
