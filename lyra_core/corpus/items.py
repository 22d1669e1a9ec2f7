"""What a corpus source lists: items (a packaged file, or a phrase or utterance made here), each
rendered to audio by reading a file or running a tool."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

DOMAINS = ("music", "speech", "sfx")

Audio = tuple[np.ndarray, int]  # (frames, channels) float32, sample rate


@dataclass(frozen=True)
class Item:
    """One source: a packaged file, or a phrase or utterance generated here."""

    key: str  # unique within its source group; names the output file
    domain: str
    package: str  # the package whose content makes the sound (version, licence)
    source_file: str  # the packaged file the sound comes from
    render: Callable[[Path], Audio]  # (scratch dir) -> audio
    origin: str  # how the audio was made, in words
    tool_package: str | None = None  # the package of the program that rendered it


@dataclass(frozen=True)
class Source:
    """A group of items from some packages; `items(seed, wanted_seconds)` lists candidates."""

    name: str
    packages: tuple[str, ...]
    items: Callable[[int, float], list[Item]]
    description: str
    binaries: tuple[str, ...] = ()
    weight: float = 1.0  # its budget, in units of --minutes-per-source per domain


def read_file(path: str) -> Audio:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio, rate


def run_tool(cmd: Sequence[str], what: str) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what}: {cmd[0]} exited {proc.returncode}: {tail[0]}")
