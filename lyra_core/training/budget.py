"""A limit on training time that survives resumes: minutes of wall-clock or of process CPU time.

`training.max_minutes` stops a run cleanly (final validation and checkpoint) once it has trained
that long, counted over all its resumes (the checkpoint keeps the seconds spent). The `cpu` clock
is the process's CPU time summed over its threads, the budget a CPU-bound benchmark compares.
"""

from __future__ import annotations

import time
from typing import Literal

import attrs

Clock = Literal["wall", "cpu"]


@attrs.define
class Budget:
    minutes: float | None
    clock: Clock = "wall"
    spent: float = 0.0  # seconds trained before this process started
    _started: float | None = None

    def _now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.monotonic()

    def start(self) -> None:
        self._started = self._now()

    def seconds(self) -> float:
        """Seconds trained so far, this process included."""
        running = 0.0 if self._started is None else self._now() - self._started
        return self.spent + running

    def exhausted(self) -> bool:
        return self.minutes is not None and self.seconds() >= self.minutes * 60
