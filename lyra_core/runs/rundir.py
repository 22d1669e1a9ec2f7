"""A run's directory: resolved spec, versions, checkpoints, metrics, validation audio, log.

runs/NAME-YYYYmmdd-HHMMSS/
    spec.json            the fully resolved spec the run trains
    versions.json        Lyra, torch and every loaded plugin's distribution and version
    metrics.jsonl        every logged metric, whatever the tracker does
    log.txt              progress lines, phase changes and validation results, timestamped
    checkpoints/last.pt  step-NNNNNNN.pt (the newest K)  best.pt
    validation/step-NNNNNNN/  WAV examples and spectrogram PNGs
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from lyra_core import __version__
from lyra_core.errors import LyraError
from lyra_core.plugins import Plugins
from lyra_core.runs import checkpoint
from lyra_core.runs.atomic import remove_temporaries, temporary_beside, write_text


def spec_hash(data: dict[str, Any]) -> str:
    """The hash of a resolved spec: a run's `lyra.spec_hash` tag, a model's identity."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def versions(plugins: Plugins, **extra: Any) -> dict[str, Any]:
    """What `versions.json` records: Lyra, torch, Python and every loaded plugin's distribution."""
    return {
        "lyra": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "plugins": plugins.versions(),
        **extra,
    }


@attrs.frozen
class RunDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.json"

    def spec_text(self) -> str:
        return self.spec_file.read_text(encoding="utf-8")

    def records(self) -> list[Path]:
        return [self.spec_file, self.path / "versions.json"]

    @classmethod
    def create(
        cls,
        resolved: dict[str, Any],
        versions: dict[str, Any],
        path: Path | None = None,
        root: Path = Path("runs"),
    ) -> RunDir:
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = root / f"{resolved.get('name', 'run')}-{stamp}"
        if path.exists() and any(path.iterdir()):
            raise LyraError(
                f"{path}: the run directory exists and is not empty; "
                f"resume it with --resume {path} or choose another --run-dir"
            )
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.spec_file.write_text(json.dumps(resolved, indent=2) + "\n", encoding="utf-8")
        (path / "versions.json").write_text(json.dumps(versions, indent=2) + "\n", encoding="utf-8")
        return run

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run to resume, without the temporaries a killed writer left in it."""
        run = cls(path)
        if not run.spec_file.is_file():
            raise LyraError(f"{path}: not a Lyra run directory (no spec.json)")
        if not run.last.is_file():
            raise LyraError(f"{path}: has no checkpoint to resume from ({run.last} is missing)")
        remove_temporaries(run.checkpoints)
        remove_temporaries(run.path)
        return run

    def drop_metrics_after(self, step: int) -> int:
        """Forget the metrics logged after `step` (the checkpoint a resume starts from), so that
        each step is in `metrics.jsonl` once; returns how many records were dropped."""
        if not self.metrics_file.is_file():
            return 0
        lines = self.metrics_file.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if _step_of(line) <= step]
        if len(kept) < len(lines):
            write_text(self.metrics_file, "".join(kept))
        return len(lines) - len(kept)

    def save(self, state: dict[str, Any], step: int, keep: int, best: bool = False) -> Path:
        """Write `best.pt`, or `step-N.pt` and `last.pt` (a hard link to it), atomically."""
        if best:
            checkpoint.save_atomic(state, self.best)
            return self.best
        target = self.checkpoints / f"step-{step:07d}.pt"
        checkpoint.save_atomic(state, target)
        link = temporary_beside(self.last)
        link.unlink()
        os.link(target, link)
        os.replace(link, self.last)
        for old in sorted(self.checkpoints.glob("step-*.pt"))[:-keep]:
            old.unlink()
        return self.last

    def log(self, line: str) -> None:
        """Append `line` to `log.txt`, after the local date and time."""
        with (self.path / "log.txt").open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def _step_of(line: str) -> int:
    """The step of a `metrics.jsonl` record; a torn or foreign line counts as after any step."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return sys.maxsize
    return step if isinstance(step, int) else sys.maxsize
