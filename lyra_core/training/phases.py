"""Training phases and the adversarial part of a step.

A phase says, until a step, which losses are on (weight factors by name), which model
submodules are frozen, whether the generator trains against the discriminator, and how often the
discriminator trains. No phases and no discriminator is one reconstruction phase; no phases with a
discriminator is DAC's schedule (D then G on every batch from step 0); two phases are RAVE's.

The discriminator sees real and generated audio concatenated in one batch (one forward, so DDP
sees each parameter used once); the real half of its critiques is detached in the generator's
pass, so feature matching never pushes gradients into the real branch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lyra_core.context import BuildContext
from lyra_core.errors import BuildError
from lyra_core.experiment import PhaseSpec, TrainingSpec
from lyra_core.interfaces import Critique


def _split(critiques: list[Critique], detach_real: bool) -> tuple[list[Critique], list[Critique]]:
    real, fake = [], []
    for c in critiques:
        halves = [f.chunk(2) for f in c.features]
        r_logits, f_logits = c.logits.chunk(2)
        r_feats = [h[0].detach() if detach_real else h[0] for h in halves]
        real.append(Critique(r_feats, r_logits.detach() if detach_real else r_logits))
        fake.append(Critique([h[1] for h in halves], f_logits))
    return real, fake


class Phases:
    """Which phase a step is in, and what it turns on, off and freezes."""

    def __init__(self, spec: TrainingSpec, loss_names: Sequence[str], model: nn.Module):
        default = PhaseSpec(
            name="adversarial" if spec.adversarial else "reconstruction",
            adversarial=spec.adversarial is not None,
            discriminator_every=1 if spec.adversarial else 0,
        )
        self.phases = list(spec.phases) or [default]
        modules = dict(model.named_modules())
        for i, phase in enumerate(self.phases):
            for name in phase.loss_weights:
                if name not in loss_names:
                    raise BuildError(
                        f"$.training.phases[{i}].loss_weights",
                        f"no loss named '{name}'; the losses are {', '.join(loss_names)}",
                    )
            for name in phase.frozen:
                if name not in modules or not name:
                    tops = sorted(n for n in modules if n and "." not in n)
                    raise BuildError(
                        f"$.training.phases[{i}].frozen",
                        f"the model has no submodule '{name}'; its parts are {', '.join(tops)}",
                    )
        self.model = model
        self.current: int | None = None

    def index_at(self, step: int) -> int:
        for i, phase in enumerate(self.phases):
            if phase.until is None or step < phase.until:
                return i
        return len(self.phases) - 1

    def enter(self, step: int) -> PhaseSpec:
        """The phase of `step`; freezes and unfreezes parameters when the phase changes."""
        index = self.index_at(step)
        phase = self.phases[index]
        if index != self.current:
            frozen = tuple(f"{name}." for name in phase.frozen)
            for name, p in self.model.named_parameters():
                p.requires_grad_(not name.startswith(frozen))
            if self.current is not None or step:
                print(f"\nphase '{phase.name}' from step {step}", file=sys.stderr)
            self.current = index
        return phase

    def factor(self, phase: PhaseSpec, loss_name: str) -> float:
        return phase.loss_weights.get(loss_name, 1.0)


class AdversarialPart:
    """The discriminator, its optimizer and scheduler, and the weighted adversarial losses."""

    def __init__(
        self,
        spec: TrainingSpec,
        ctx: BuildContext,
        device: torch.device,
        names: Callable[[Any], str],
        wrap: Callable[[nn.Module], nn.Module],
    ):
        adv = spec.adversarial
        assert adv is not None
        self.discriminator = adv.discriminator.build(ctx).to(device)
        self.forward = wrap(self.discriminator)
        self.losses = [
            (
                names(s),
                s.build(ctx).to(device),
                s.weight,
                s.schedule.build(ctx) if s.schedule else None,
            )
            for s in adv.losses
        ]
        optimizer = adv.optimizer or spec.optimizer
        self.optimizer = optimizer.build(ctx, self.discriminator.parameters())
        self.scheduler = (
            adv.scheduler.build(ctx, self.optimizer, spec.steps) if adv.scheduler else None
        )

    def weight(self, index: int, step: int) -> float:
        _, _, weight, schedule = self.losses[index]
        return weight * (float(schedule(step)) if schedule else 1.0)

    def discriminator_step(
        self, real: torch.Tensor, fake: torch.Tensor, step: int, autocast: Callable[[], Any]
    ) -> float | None:
        """One discriminator update on detached generated audio; its loss, or None if not finite."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast():
            r, f = _split(self.forward(torch.cat([real, fake.detach()])), detach_real=False)
            parts = [
                (i, loss.discriminator_loss(r, f)) for i, (_, loss, _, _) in enumerate(self.losses)
            ]
            total = sum(self.weight(i, step) * v.float() for i, v in parts if v is not None)
        if not torch.is_tensor(total) or not torch.isfinite(total):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        total.backward()
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()
        return float(total.detach())

    def generator_terms(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted generator-side adversarial losses by name (call under autocast)."""
        r, f = _split(self.forward(torch.cat([real, fake])), detach_real=True)
        return {name: loss.generator_loss(r, f).float() for name, loss, _, _ in self.losses}

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
