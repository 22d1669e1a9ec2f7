"""Experiment tracking: the wrapper that makes a tracker (`interfaces.Tracker`) safe.

Training never depends on a tracker: every metric is first written to the run directory's
`metrics.jsonl`; a tracker that fails (server unreachable at start or gone mid-run) is reported
once, its calls are queued, and the queue is replayed when it answers again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lyra_core.interfaces import Tracker
from lyra_core.services.atomic import append_line


class SafeTracker:
    """Local JSONL log first, then the tracker; failures are told once and replayed later."""

    RETRY_EVERY = 20  # calls between attempts to reach a failed tracker

    def __init__(self, tracker: Tracker, run_dir: Path, enabled: bool = True):
        self.tracker = tracker
        self.enabled = enabled
        self.metrics_file = run_dir / "metrics.jsonl"
        self.pending: list[tuple[str, tuple[Any, ...]]] = []
        self.failed = False
        self.calls = 0
        self.run_id: str | None = None

    def _call(self, method: str, *args: Any) -> Any:
        if not self.enabled:
            return None
        if self.failed:
            self.pending.append((method, args))
            self.calls += 1
            if self.calls % self.RETRY_EVERY:
                return None
            return self._flush()
        try:
            return getattr(self.tracker, method)(*args)
        except Exception as exc:  # a tracker's failure must never stop training
            self.failed = True
            self.pending.append((method, args))
            print(
                f"warning: tracking failed ({type(exc).__name__}: {exc}); training goes on, "
                f"metrics are kept in {self.metrics_file} and sent when the tracker answers",
                file=sys.stderr,
            )
            return None

    def _flush(self) -> None:
        try:
            while self.pending:
                method, args = self.pending[0]
                getattr(self.tracker, method)(*args)
                self.pending.pop(0)
        except Exception:
            return None
        self.failed = False
        print("tracking: the tracker answers again; queued records were sent", file=sys.stderr)
        return None

    def start(self, name: str, tags: dict[str, str]) -> str | None:
        self.run_id = self._call("start", name, tags)
        return self.run_id

    def log_params(self, params: dict[str, str]) -> None:
        self._call("log_params", params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled:
            line = json.dumps({"step": step, **metrics}) + "\n"
            append_line(self.metrics_file, line, "the metrics")
        self._call("log_metrics", metrics, step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._call("log_artifact", path, folder)

    def end(self, status: str) -> None:
        if self.failed:
            self._flush()
        self._call("end", status)

    def describe(self) -> str:
        try:
            return self.tracker.describe()
        except Exception:
            return ""


def flatten(data: Any, prefix: str = "", out: dict[str, str] | None = None) -> dict[str, str]:
    """`{"a": {"b": [1, 2]}}` -> `{"a.b.0": "1", "a.b.1": "2"}`, for tracker params."""
    out = {} if out is None else out
    items: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = [(str(i), v) for i, v in enumerate(data)]
    if not items:
        out[prefix or "value"] = json.dumps(data) if not isinstance(data, str) else data
        return out
    for key, value in items:
        flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    return out
