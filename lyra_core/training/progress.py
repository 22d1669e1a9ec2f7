"""Progress: a live line on a terminal, plain log lines otherwise, and throughput figures."""

from __future__ import annotations

import sys
import time
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

    def __init__(
        self,
        total: int,
        start: int,
        audio_per_step: float,
        enabled: bool = True,
        log: Callable[[str], None] | None = None,
        every: int = 10,
    ):
        self.total, self.start, self.audio_per_step = total, start, audio_per_step
        self.enabled, self.log, self.every = enabled, log, every
        self.tty = enabled and sys.stderr.isatty()
        self.began = time.perf_counter()
        self.step_seconds = self.data_seconds = 0.0
        self.step = start

    def rates(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.began, 1e-9)
        steps = max(self.step - self.start, 0)
        return {
            "perf/steps_per_s": steps / elapsed,
            "perf/audio_s_per_s": steps * self.audio_per_step / elapsed,
            "perf/overhead_share": self.data_seconds / max(self.step_seconds, 1e-9),
        }

    def update(self, step: int, values: dict[str, float], seconds: float, data: float) -> None:
        self.step = step
        self.step_seconds += seconds
        self.data_seconds += data
        if not self.enabled or not (self.tty or step % self.every == 0 or step == self.total):
            return
        rates = self.rates()
        eta = (self.total - step) / max(rates["perf/steps_per_s"], 1e-9)
        losses = " ".join(f"{k} {v:.4g}" for k, v in values.items() if k not in ("lr", "phase"))
        line = (
            f"step {step}/{self.total} {losses} | {rates['perf/steps_per_s']:.2f} steps/s "
            f"{rates['perf/audio_s_per_s']:.1f} audio-s/s ETA {_duration(eta)}"
        )
        if self.tty:
            sys.stderr.write("\r" + line[:200].ljust(120))
            sys.stderr.flush()
        else:
            print(line, file=sys.stderr)
        if self.log and (step % self.every == 0 or step == self.total):
            self.log(line)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
