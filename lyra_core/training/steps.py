"""The two halves of a training step: the generator's and the discriminator's.

`GeneratorStep` owns the model's optimizer, scheduler and grad scaler: it runs the model, weighs
the reconstruction losses, backpropagates each accumulated batch and makes the update.
`DiscriminatorStep` owns the discriminator, its optimizer and its losses: it makes the
discriminator's own update and gives the generator its weighted adversarial terms. Both weigh a
loss the same way (`WeightedLoss.weight`: the loss's scheduled weight times the phase's factor).

The discriminator sees real and generated audio concatenated in one batch (one forward, so DDP
sees each parameter used once); the real half of its critiques is detached in the generator's
pass, so feature matching never pushes gradients into the real branch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from lyra_core.context import BuildContext
from lyra_core.experiment import TrainingSpec
from lyra_core.interfaces import Critique, ModelOutput
from lyra_core.registry import Registry
from lyra_core.training.balancer import GradientBalancer
from lyra_core.training.phases import Phase

PRECISION = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

Wrap = Callable[[nn.Module], nn.Module]


@attrs.frozen
class Precision:
    """Autocast to the spec's precision on the run's device (float32: no autocast)."""

    device_type: str
    dtype: torch.dtype | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


@attrs.define
class WeightedLoss:
    """A loss module with its name (as logged), its weight and its weight schedule."""

    name: str
    module: nn.Module
    weight: float
    schedule: Any  # callable step -> factor, or None

    @classmethod
    def build(cls, name: str, spec: Any, ctx: BuildContext, device: torch.device) -> WeightedLoss:
        schedule = spec.schedule.build(ctx) if getattr(spec, "schedule", None) else None
        return cls(name, spec.build(ctx).to(device), getattr(spec, "weight", 1.0), schedule)

    def factor(self, step: int) -> float:
        """The scheduled weight at `step`."""
        return self.weight * (float(self.schedule(step)) if self.schedule else 1.0)

    def weight_in(self, phase: Phase, step: int) -> float:
        """The weight the generator's objective gives this loss at `step` of `phase`."""
        return phase.factor(self.name) * self.factor(step)


@attrs.frozen
class Term:
    """One loss's unweighted value in a batch and the weight it enters the objective with."""

    value: torch.Tensor
    weight: float


class StepMeans:
    """A step's logged values, each averaged over its accumulated batches."""

    def __init__(self, batches: int):
        self.batches = batches
        self.values: dict[str, float] = {}

    def add(self, name: str, value: float) -> None:
        self.values[name] = self.values.get(name, 0.0) + value / self.batches


def loss_names(specs: Sequence[Any], registry: Registry, taken: Sequence[str] = ()) -> list[str]:
    """Each loss's own `name` (a `term` loss: its term) or else its registered name, suffixed
    with its index where a name repeats or is `taken`."""
    names = [
        s.name if isinstance(getattr(s, "name", None), str) else registry.name_of(s)[1]
        for s in specs
    ]
    return [
        n if names.count(n) == 1 and n not in taken else f"{n}_{i}" for i, n in enumerate(names)
    ]


class GeneratorStep:
    """The model's forward, its weighted reconstruction losses, backward, clipping and update."""

    def __init__(
        self,
        model: nn.Module,
        losses: list[WeightedLoss],
        spec: TrainingSpec,
        ctx: BuildContext,
        device: torch.device,
    ):
        self.model, self.losses, self.device = model, losses, device
        self.trained: nn.Module = model  # compiled and DDP-wrapped by `wrap`
        self.accumulate = spec.accumulate
        self.max_norm = spec.grad_clip or math.inf  # 0 or none: no clipping
        self.precision = Precision(device.type, PRECISION[spec.precision])
        self.optimizer = spec.optimizer.build(ctx, model.parameters())
        self.scheduler = (
            spec.scheduler.build(ctx, self.optimizer, spec.steps) if spec.scheduler else None
        )
        fp16 = spec.precision == "fp16" and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.balancer = GradientBalancer(spec.balancer) if spec.balancer else None
        self.lr_factor = 1.0
        self.betas = [g.get("betas") for g in self.optimizer.param_groups]  # the optimizer's own

    def enter(self, phase: Phase) -> None:
        """Take the phase's optimizer settings: its learning-rate factor and betas."""
        self.lr_factor = phase.spec.lr_factor
        for group, own in zip(self.optimizer.param_groups, self.betas, strict=True):
            if own is not None:
                group["betas"] = tuple(phase.spec.betas) if phase.spec.betas else own

    def wrap(self, wrap: Wrap, compile: bool) -> None:
        """Train through torch.compile and DDP (after any checkpoint is loaded)."""
        self.trained = wrap(torch.compile(self.model) if compile else self.model)

    def forward(
        self, x: torch.Tensor, phase: Phase, step: int
    ) -> tuple[ModelOutput, dict[str, Term]]:
        """The model's output on `x` and the reconstruction losses that weigh anything."""
        weights = {w.name: w.weight_in(phase, step) for w in self.losses}
        with self.precision.autocast():
            out = self.trained(x)
            terms = {
                w.name: Term(w.module(out, x).float(), weights[w.name])
                for w in self.losses
                if weights[w.name]
            }
        return out, terms

    def backward(self, terms: dict[str, Term], output: torch.Tensor, means: StepMeans) -> bool:
        """Backpropagate one batch's weighted terms (balanced at the reconstruction `output`
        with a balancer); False if their total is not finite."""
        zero = torch.zeros((), device=self.device)
        total = sum((t.weight * t.value for t in terms.values()), zero)
        objective = total
        if self.balancer is not None:
            values = {name: t.value for name, t in terms.items()}
            weights = {name: t.weight for name, t in terms.items()}
            objective, scales = self.balancer.surrogate(values, weights, output)
            for name, scale in scales.items():
                means.add(f"balancer/{name}", scale)
        self.scaler.scale(objective / self.accumulate).backward()
        for name, term in terms.items():
            means.add(name, float(term.value.detach()))
        means.add("loss", float(total.detach()))
        return bool(torch.isfinite(total))

    def update(self, finite: bool) -> float | None:
        """Clip and step on the accumulated gradients: their norm, or None if skipped."""
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        if not finite or (not self.scaler.is_enabled() and not torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        scheduled = [g["lr"] for g in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] *= self.lr_factor
        self.scaler.step(self.optimizer)
        for group, lr in zip(self.optimizer.param_groups, scheduled, strict=True):
            group["lr"] = lr  # the scheduler's own value, exactly
        self.scaler.update()
        if self.scheduler:
            self.scheduler.step()
        return float(norm)

    @property
    def lr(self) -> float:
        """The learning rate of the next update (the phase's factor included)."""
        return self.optimizer.param_groups[0]["lr"] * self.lr_factor

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),
            "balancer": self.balancer.state_dict() if self.balancer else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.balancer and state.get("balancer"):
            self.balancer.load_state_dict(state["balancer"])


def _split(critiques: list[Critique], detach_real: bool) -> tuple[list[Critique], list[Critique]]:
    real, fake = [], []
    for c in critiques:
        halves = [f.chunk(2) for f in c.features]
        r_logits, f_logits = c.logits.chunk(2)
        r_feats = [h[0].detach() if detach_real else h[0] for h in halves]
        real.append(Critique(r_feats, r_logits.detach() if detach_real else r_logits))
        fake.append(Critique([h[1] for h in halves], f_logits))
    return real, fake


class DiscriminatorStep:
    """The discriminator, its optimizer and scheduler, and the weighted adversarial losses."""

    def __init__(
        self,
        spec: TrainingSpec,
        ctx: BuildContext,
        names: Sequence[str],
        device: torch.device,
        wrap: Wrap,
        precision: Precision,
    ):
        adv = spec.adversarial
        assert adv is not None
        self.discriminator = adv.discriminator.build(ctx).to(device)
        self.forward = wrap(self.discriminator)
        self.precision = precision
        self.losses = [
            WeightedLoss.build(name, s, ctx, device)
            for name, s in zip(names, adv.losses, strict=True)
        ]
        self.optimizer = (adv.optimizer or spec.optimizer).build(
            ctx, self.discriminator.parameters()
        )
        self.scheduler = (
            adv.scheduler.build(ctx, self.optimizer, spec.steps) if adv.scheduler else None
        )

    def train(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> float | None:
        """One discriminator update on detached generated audio; its loss, or None if not finite."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            r, f = _split(self.forward(torch.cat([real, fake.detach()])), detach_real=False)
            parts = [(w, w.module.discriminator_loss(r, f)) for w in self.losses]
            total = sum(w.factor(step) * v.float() for w, v in parts if v is not None)
        if not torch.is_tensor(total) or not torch.isfinite(total):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        total.backward()
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()
        return float(total.detach())

    def generator_terms(
        self, real: torch.Tensor, fake: torch.Tensor, phase: Phase, step: int
    ) -> dict[str, Term]:
        """The generator's adversarial terms by name, each with its weight in `phase`."""
        with self.precision.autocast():
            r, f = _split(self.forward(torch.cat([real, fake])), detach_real=True)
            return {
                w.name: Term(w.module.generator_loss(r, f).float(), w.weight_in(phase, step))
                for w in self.losses
            }

    def state_dict(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
