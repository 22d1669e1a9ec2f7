"""Reading audio files for datasets: the core's decoder and channel rule.

The channel rule and resampling are `lyra_core.services.audio`' (shared with inference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lyra_core.services.audio import (
    AUDIO_EXTENSIONS,
    AudioReadError,
    convert_channels,
    decode,
    resample,
)

__all__ = ["AUDIO_EXTENSIONS", "AudioReadError", "convert_channels", "decode", "load", "resample"]


def load(path: Path, sample_rate: int, channels: int) -> np.ndarray:
    """Decode, convert channels and resample: float32 [channels, frames] at `sample_rate`."""
    data, rate = decode(path)
    audio = resample(convert_channels(data, channels), rate, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)
