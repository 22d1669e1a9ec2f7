"""Reading audio files for datasets: the core's decoder and channel rule, plus a decode counter.

The channel rule and resampling are `lyra_core.runs.audio`' (shared with inference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lyra_core.runs.audio import AudioReadError, convert_channels, resample
from lyra_core.runs.audio import decode as _decode

__all__ = ["AUDIO_EXTENSIONS", "AudioReadError", "convert_channels", "decode", "load", "resample"]

# Extensions that `audio_folder` looks for (lower case, matched case-insensitively).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc")

# How many files have been decoded in this process: the cache tests count on it.
_decoded = [0]


def files_decoded() -> int:
    """Files decoded by `decode` in this process so far."""
    return _decoded[0]


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The file's samples as float32 [frames, channels] and its sample rate (counted)."""
    _decoded[0] += 1
    return _decode(path)


def load(path: Path, sample_rate: int, channels: int) -> np.ndarray:
    """Decode, convert channels and resample: float32 [channels, frames] at `sample_rate`."""
    data, rate = decode(path)
    audio = resample(convert_channels(data, channels), rate, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)
