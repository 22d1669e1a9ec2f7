"""Reading audio files: decode with soundfile, convert the channel count, resample.

Channel rule (target `C` from a file's `N` channels):
  - N == C: unchanged.
  - C == 1: the mean of all N channels.
  - N == 1: the mono channel copied to every output channel.
  - C == 2, N == 6 (5.1 in WAV/SMPTE order L R C LFE Ls Rs): ITU-R BS.775 downmix,
    L' = L + 0.707·C + 0.707·Ls and R' = R + 0.707·C + 0.707·Rs, LFE dropped, each divided by
    2.414 (the sum of its coefficients) so nothing clips.
  - C == 2, any other N > 2: even-numbered channels (0, 2, ...) averaged into left, odd ones into
    right.
  - anything else (e.g. stereo to 4 channels): the file is skipped with that reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

# Extensions that `audio_folder` looks for (lower case, matched case-insensitively).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc")

# torchaudio's "kaiser_best" settings (librosa/resampy's best quality): a 64-zero-crossing sinc.
RESAMPLE = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.769656459379492,
}

# How many files have been decoded in this process: the cache tests count on it.
_decoded = [0]


def files_decoded() -> int:
    """Files decoded by `decode` in this process so far."""
    return _decoded[0]


class AudioReadError(Exception):
    """A file that cannot be used; the message is the reason shown to the user."""


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The file's samples as float32 [frames, channels] and its sample rate."""
    _decoded[0] += 1
    if path.stat().st_size == 0:
        raise AudioReadError("empty file (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioReadError(f"cannot decode: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioReadError("no audio frames")
    if not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise AudioReadError(f"{bad} NaN or infinite samples")
    return data, int(rate)


def convert_channels(data: np.ndarray, channels: int) -> np.ndarray:
    """[frames, N] -> [channels, frames] by the rule in this module's docstring."""
    have = data.shape[1]
    if have == channels:
        return np.ascontiguousarray(data.T)
    if channels == 1:
        return data.mean(axis=1, dtype=np.float32)[None, :]
    if have == 1:
        return np.repeat(data.T, channels, axis=0)
    if channels == 2 and have == 6:
        c = math.sqrt(0.5)
        left = data[:, 0] + c * (data[:, 2] + data[:, 4])
        right = data[:, 1] + c * (data[:, 2] + data[:, 5])
        return (np.stack([left, right]) / np.float32(1.0 + 2.0 * c)).astype(np.float32)
    if channels == 2 and have > 2:
        return np.stack([data[:, 0::2].mean(axis=1), data[:, 1::2].mean(axis=1)]).astype(np.float32)
    raise AudioReadError(f"cannot map {have} channels to {channels}")


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """[C, frames] at `rate` -> [C, frames'] at `target`, band-limited (kaiser_best)."""
    if rate == target:
        return audio
    with torch.inference_mode():
        out = AF.resample(torch.from_numpy(audio), rate, target, **RESAMPLE)
    return out.numpy()


def load(path: Path, sample_rate: int, channels: int) -> np.ndarray:
    """Decode, convert channels and resample: float32 [channels, frames] at `sample_rate`."""
    data, rate = decode(path)
    audio = resample(convert_channels(data, channels), rate, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)
