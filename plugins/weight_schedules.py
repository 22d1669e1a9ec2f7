"""Weight schedules: a loss weight as a function of the optimizer step (KL warm-up and the like).

Contract (kind `weight_schedule`): `build(ctx)` returns a callable `step -> float`. Schedules are
pure functions of the step, so resuming a run needs no schedule state beyond the step itself.
The trainer multiplies a loss by `loss.weight * schedule(step)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from lyra_core import BuildContext, hookimpl, param
from lyra_core.validators import MAX_COUNT, between, positive, size

Schedule = Callable[[int], float]


def _progress(step: int, start_step: int, end_step: int) -> float:
    """Where `step` lies in [start_step, end_step], clamped to [0, 1]."""
    return min(1.0, max(0.0, (step - start_step) / (end_step - start_step)))


@attrs.frozen(kw_only=True)
class _RampSpec:
    """Shared fields of the schedules that go from `start` to `end` over a range of steps."""

    start_step: int = param(
        0, doc="the step the ramp begins at", validator=size(MAX_COUNT, minimum=0)
    )
    end_step: int = param(
        10000, doc="the step the ramp reaches `end` at", validator=size(MAX_COUNT)
    )

    def __attrs_post_init__(self) -> None:
        if self.end_step <= self.start_step:
            raise ValueError(
                f"end_step ({self.end_step}) must be greater than start_step ({self.start_step})"
            )


@attrs.frozen(kw_only=True)
class ConstantSpec:
    """The same weight at every step."""

    value: float = param(1.0, doc="the weight")

    def build(self, ctx: BuildContext) -> Schedule:
        value = float(self.value)
        return lambda step: value


@attrs.frozen(kw_only=True)
class LinearSpec(_RampSpec):
    """Linear from `start` to `end` between two steps, constant outside (KL annealing)."""

    start: float = param(0.0, doc="the weight up to start_step")
    end: float = param(1.0, doc="the weight from end_step on")

    def build(self, ctx: BuildContext) -> Schedule:
        def weight(step: int) -> float:
            t = _progress(step, self.start_step, self.end_step)
            return self.start + t * (self.end - self.start)

        return weight


@attrs.frozen(kw_only=True)
class LogLinearSpec(_RampSpec):
    """Log-linear from `start` to `end`: RAVE's β warm-up, 1e-6 to 5e-2 over 20k steps."""

    end_step: int = param(
        20000, doc="the step the ramp reaches `end` at", validator=size(MAX_COUNT)
    )
    start: float = param(1e-6, doc="the weight up to start_step (> 0)", validator=positive)
    end: float = param(5e-2, doc="the weight from end_step on (> 0)", validator=positive)

    def build(self, ctx: BuildContext) -> Schedule:
        log_start, log_end = math.log(self.start), math.log(self.end)

        def weight(step: int) -> float:
            t = _progress(step, self.start_step, self.end_step)
            return math.exp(log_start + t * (log_end - log_start))

        return weight


@attrs.frozen(kw_only=True)
class CyclicSpec:
    """Cyclical annealing (Fu et al. 2019): each period ramps from `start` to `end`, then holds."""

    period: int = param(10000, doc="steps per cycle", validator=size(MAX_COUNT))
    ramp_fraction: float = param(
        0.5,
        doc="fraction of each cycle spent ramping; the rest holds `end`",
        validator=between(0, 1, low_open=True),
    )
    start: float = param(0.0, doc="the weight at the beginning of each cycle")
    end: float = param(1.0, doc="the weight at the end of each ramp")
    start_step: int = param(
        0, doc="the step the first cycle begins at", validator=size(MAX_COUNT, minimum=0)
    )
    cycles: int | None = param(
        None,
        doc="number of cycles, then `end` for good (null: cycle forever)",
        validator=size(MAX_COUNT),
    )

    def build(self, ctx: BuildContext) -> Schedule:
        ramp = self.ramp_fraction * self.period

        def weight(step: int) -> float:
            elapsed = step - self.start_step
            if elapsed < 0:
                return self.start
            if self.cycles is not None and elapsed >= self.cycles * self.period:
                return self.end
            t = min(1.0, (elapsed % self.period) / ramp)
            return self.start + t * (self.end - self.start)

        return weight


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("weight_schedule", "constant", ConstantSpec)
    registry.add("weight_schedule", "linear", LinearSpec)
    registry.add("weight_schedule", "log_linear", LogLinearSpec)
    registry.add("weight_schedule", "cyclic", CyclicSpec)
