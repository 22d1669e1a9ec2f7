"""The phase schedule: which phase a step is in, and what that phase turns on, off and freezes.

A phase says, until a step, which losses are on (weight factors by name), which model
submodules are frozen, whether the generator trains against the discriminator, and how often the
discriminator trains. No phases and no discriminator is one reconstruction phase; no phases with a
discriminator is DAC's schedule (D then G on every batch from step 0); two phases are RAVE's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import attrs
from torch import nn

from lyra_core.errors import BuildError
from lyra_core.experiment import PhaseSpec, TrainingSpec


@attrs.frozen
class Phase:
    """The phase a step is in: its place in the schedule and its spec."""

    index: int
    spec: PhaseSpec

    @property
    def adversarial(self) -> bool:
        """Whether the generator trains against the discriminator."""
        return self.spec.adversarial

    def factor(self, loss_name: str) -> float:
        """This phase's factor on a loss's weight (1 unless the phase names the loss)."""
        return self.spec.loss_weights.get(loss_name, 1.0)

    def trains_discriminator(self, step: int) -> bool:
        every = self.spec.discriminator_every
        return every > 0 and step % every == 0


class PhaseSchedule:
    """The spec's phases (or the one implied by it), checked against the losses and the model."""

    def __init__(
        self,
        spec: TrainingSpec,
        loss_names: Sequence[str],
        model: nn.Module,
        announce: Callable[[str], None] | None = None,
    ):
        default = PhaseSpec(
            name="adversarial" if spec.adversarial else "reconstruction",
            adversarial=spec.adversarial is not None,
            discriminator_every=1 if spec.adversarial else 0,
        )
        self.phases = list(spec.phases) or [default]
        self.declared = bool(spec.phases)  # only declared phases are tracked as train/phase
        for i, phase in enumerate(self.phases):
            _check(i, phase, loss_names, model)
        self.model, self.announce = model, announce or _to_stderr
        self.current: int | None = None

    def index_at(self, step: int) -> int:
        for i, phase in enumerate(self.phases):
            if phase.until is None or step < phase.until:
                return i
        return len(self.phases) - 1

    def enter(self, step: int) -> Phase:
        """The phase of `step`; freezes and unfreezes parameters when the phase changes."""
        phase = Phase(self.index_at(step), self.phases[self.index_at(step)])
        if phase.index != self.current:
            frozen = tuple(f"{name}." for name in phase.spec.frozen)
            for name, p in self.model.named_parameters():
                p.requires_grad_(not name.startswith(frozen))
            if self.current is not None or step:
                self.announce(f"phase '{phase.spec.name}' from step {step}")
            self.current = phase.index
        return phase

    def metrics(self, phase: Phase) -> dict[str, float]:
        """`phase` (its index) for runs that declare phases; nothing otherwise."""
        return {"phase": float(phase.index)} if self.declared else {}


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _check(i: int, phase: PhaseSpec, loss_names: Sequence[str], model: nn.Module) -> None:
    for name in phase.loss_weights:
        if name not in loss_names:
            raise BuildError(
                f"$.training.phases[{i}].loss_weights",
                f"no loss named '{name}'; the losses are {', '.join(loss_names)}",
            )
    modules = dict(model.named_modules())
    for name in phase.frozen:
        if name not in modules or not name:
            tops = sorted(n for n in modules if n and "." not in n)
            raise BuildError(
                f"$.training.phases[{i}].frozen",
                f"the model has no submodule '{name}'; its parts are {', '.join(tops)}",
            )
