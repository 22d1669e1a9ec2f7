"""A run's directory: resolved spec, versions, checkpoints, metrics, validation audio, log.

runs/NAME-YYYYmmdd-HHMMSS/
    spec.json            the fully resolved spec the run trains
    versions.json        Lyra, torch and every loaded plugin's distribution and version
    metrics.jsonl        every logged metric, whatever the tracker does
    log.txt              progress lines, phase changes and validation results, timestamped
    checkpoints/last.pt  step-NNNNNNN.pt (the newest K)  best.pt
    validation/step-NNNNNNN/  WAV examples and spectrogram PNGs

Every file is written through lyra_core.services.atomic: whole or not at all, and a full disk is a
WriteError. A resume first checks that the disk has room for one more checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from lyra_core import __version__
from lyra_core.discovery import Plugins
from lyra_core.errors import LyraError, WriteError
from lyra_core.services import checkpoint
from lyra_core.services.atomic import (
    append_line,
    free_bytes,
    remove_temporaries,
    size_text,
    temporary_beside,
    write_text,
    writing,
)

CHECKPOINT = "the checkpoint"  # what a WriteError names when a checkpoint could not be written
ROOM = 1.1  # a resume needs this many times the last checkpoint's size free for the next one


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
    made: bool = attrs.field(default=False, eq=False)  # `create` made the folder itself

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
            resumable = (path / "checkpoints" / "last.pt").is_file()
            raise LyraError(
                f"{path}: the run directory exists and is not empty; "
                + (f"resume it with --resume {path} or " if resumable else "remove it or ")
                + "choose another --run-dir"
            )
        run = cls(path, made=not path.exists())
        try:
            with writing(path, "the run directory"):
                path.mkdir(parents=True, exist_ok=True)
            for target, data in ((run.spec_file, resolved), (path / "versions.json", versions)):
                write_text(target, json.dumps(data, indent=2) + "\n", "the run's records")
        except BaseException:
            run.discard()
            raise
        return run

    def discard(self) -> None:
        """Remove what `create` wrote: the folder it made, or the contents of the empty folder
        it was given."""
        if self.made or not self.path.is_dir():
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for child in self.path.iterdir():
            with contextlib.suppress(OSError):
                shutil.rmtree(child) if child.is_dir() else child.unlink()

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
        run.check_room()
        return run

    def check_room(self) -> None:
        """Refuse to resume on a disk without room for the next checkpoint (estimated from the
        last one's size), before anything is trained."""
        need, free = self.last.stat().st_size * ROOM, free_bytes(self.checkpoints)
        if free < need:
            raise LyraError(
                f"{self.path}: too little space to resume: the next checkpoint needs about "
                f"{size_text(need)} (as {self.last} does) and {size_text(free)} is free there; "
                f"free some space, then resume with: lyra run --resume {self.path}"
            )

    def drop_metrics_after(self, step: int) -> int:
        """Forget the metrics logged after `step` (the checkpoint a resume starts from), so that
        each step is in `metrics.jsonl` once; returns how many records were dropped."""
        if not self.metrics_file.is_file():
            return 0
        lines = self.metrics_file.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if _step_of(line) <= step]
        if len(kept) < len(lines):
            write_text(self.metrics_file, "".join(kept), "the metrics")
        return len(lines) - len(kept)

    def save(self, state: dict[str, Any], step: int, keep: int, best: bool = False) -> Path:
        """Write `best.pt`, or `step-N.pt` and `last.pt` (a hard link to it), atomically."""
        target = self.best if best else self.checkpoints / f"step-{step:07d}.pt"
        if not self.spec_file.is_file():  # not into a folder made afresh: nothing could resume it
            gone = f"the run directory {self.path} is gone (removed or moved)"
            raise WriteError(target, gone, "restore it", CHECKPOINT)
        checkpoint.save_atomic(state, target, CHECKPOINT)
        if best:
            return target
        with writing(self.last, CHECKPOINT):
            link = temporary_beside(self.last)
            link.unlink()
            os.link(target, link)
            os.replace(link, self.last)
        for old in sorted(self.checkpoints.glob("step-*.pt"))[:-keep]:
            old.unlink()
        return self.last

    def log(self, line: str) -> None:
        """Append `line` to `log.txt`, after the local date and time."""
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n"
        append_line(self.path / "log.txt", stamped, "the run's log")


def _step_of(line: str) -> int:
    """The step of a `metrics.jsonl` record; a torn or foreign line counts as after any step."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return sys.maxsize
    return step if isinstance(step, int) else sys.maxsize
