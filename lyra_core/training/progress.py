"""Progress: a live line on a terminal, plain log lines otherwise, and throughput figures.

Steps/s, audio seconds per second and the ETA come from the last `window` seconds of steps,
not from the start: compilation, warm-up and the first validation do not slow them for the
rest of the run.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


class Progress:
    """Tracks steps/s, audio seconds per second, and the share of step time spent on data.

    `overhead_share` is the part of the training steps' wall time spent outside the model's
    forward, backward and optimizer step (loading, moving and augmenting batches); validation
    and checkpoints are not steps and count in steps/s only.
    """

    WINDOW = 30.0  # seconds of recent steps the rates are measured over
    MARKS = 1000  # at most this many recent steps are kept

    def __init__(
        self,
        total: int,
        start: int,
        audio_per_step: float,
        enabled: bool = True,
        log: Callable[[str], None] | None = None,
        every: int = 10,
        clock: Callable[[], float] = time.perf_counter,
        time_left: Callable[[], float | None] = lambda: None,
    ):
        self.total, self.start, self.audio_per_step = total, start, audio_per_step
        self.time_left = time_left  # seconds until a time budget stops the run, if one does
        self.enabled, self.log, self.every, self.clock = enabled, log, every, clock
        self.tty = enabled and sys.stderr.isatty()
        self.marks: deque[tuple[float, int]] = deque([(clock(), start)], maxlen=self.MARKS)
        self.step_seconds = self.data_seconds = 0.0
        self.step = start
        self.live = False  # a status line is on the terminal, not ended by a newline

    def steps_per_second(self) -> float:
        (t0, s0), (t1, s1) = self.marks[0], self.marks[-1]
        return (s1 - s0) / max(t1 - t0, 1e-9)

    def rates(self) -> dict[str, float]:
        rate = self.steps_per_second()
        return {
            "perf/steps_per_s": rate,
            "perf/audio_s_per_s": rate * self.audio_per_step,
            "perf/overhead_share": self.data_seconds / max(self.step_seconds, 1e-9),
        }

    def _mark(self, step: int) -> None:
        now = self.clock()
        self.marks.append((now, step))
        while len(self.marks) > 2 and now - self.marks[0][0] > self.WINDOW:
            self.marks.popleft()

    def update(self, step: int, values: dict[str, float], seconds: float, data: float) -> None:
        self.step = step
        self.step_seconds += seconds
        self.data_seconds += data
        self._mark(step)
        due = step % self.every == 0 or step == self.total
        if not self.enabled or not (self.tty or due):
            return
        line = self._line(step, values)
        if self.tty:
            sys.stderr.write("\r" + line[:200].ljust(120))
            sys.stderr.flush()
            self.live = True
        else:
            print(line, file=sys.stderr)
        if self.log and due:
            self.log(line)

    def _line(self, step: int, values: dict[str, float]) -> str:
        rates = self.rates()
        eta = (self.total - step) / max(rates["perf/steps_per_s"], 1e-9)
        budget = self.time_left()
        eta = eta if budget is None else min(eta, budget)
        losses = " ".join(f"{k} {v:.4g}" for k, v in values.items() if k not in ("lr", "phase"))
        return (
            f"step {step}/{self.total} {losses} | {rates['perf/steps_per_s']:.2f} steps/s "
            f"{rates['perf/audio_s_per_s']:.1f} audio-s/s ETA {_duration(eta)}"
        )

    def message(self, line: str) -> None:
        """A line of its own (validation results, a phase change), also in the log."""
        if not self.enabled:
            return
        self._end_line()
        print(line, file=sys.stderr)
        if self.log:
            self.log(line)

    def _end_line(self) -> None:
        if self.live:
            sys.stderr.write("\n")
            self.live = False

    def close(self) -> None:
        self._end_line()
