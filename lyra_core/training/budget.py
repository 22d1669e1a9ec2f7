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
    _wall_started: float = 0.0

    def _now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.monotonic()

    def start(self) -> None:
        self._started, self._wall_started = self._now(), time.monotonic()

    def seconds(self) -> float:
        """Seconds trained so far, this process included."""
        running = 0.0 if self._started is None else self._now() - self._started
        return self.spent + running

    def exhausted(self) -> bool:
        return self.minutes is not None and self.seconds() >= self.minutes * 60

    def wall_seconds_left(self) -> float | None:
        """Wall-clock seconds until the budget is spent (CPU budgets: at this process's ratio)."""
        if self.minutes is None or self._started is None:
            return None
        left = max(0.0, self.minutes * 60 - self.seconds())
        if self.clock == "wall":
            return left
        wall = time.monotonic() - self._wall_started
        cpu = self._now() - self._started
        return left * wall / cpu if cpu > 0 else None
