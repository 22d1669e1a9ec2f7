"""An output's audio: resampled, downmixed, trimmed of silence, normalised, cut to a budget."""

from __future__ import annotations

import numpy as np

from lyra_core.services.audio import resample

PEAK = 10 ** (-1.0 / 20)  # outputs are peak-normalised to -1 dBFS
SILENCE_DB = -60.0  # leading/trailing audio below this (relative to full scale) is trimmed
FADE_SECONDS = 0.01  # fade applied where a long source is cut to fit the budget


def trim_silence(audio: np.ndarray, rate: int) -> np.ndarray:
    """Drop leading and trailing audio quieter than SILENCE_DB (a 10 ms margin kept)."""
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 10 ** (SILENCE_DB / 20))
    if loud.size == 0:
        return audio[:0]
    margin = rate // 100
    return audio[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def fit(audio: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """At most `seconds` of `audio`, faded out where it is cut."""
    frames = int(seconds * rate)
    if len(audio) <= frames:
        return audio
    out = audio[:frames].copy()
    fade = min(frames, int(FADE_SECONDS * rate))
    out[frames - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    return out


def finish(audio: np.ndarray, rate: int, target: int, mono: bool) -> np.ndarray:
    """Float32 at `target` Hz, downmixed if `mono`, trimmed, peak-normalised (empty if silent)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if mono and audio.shape[1] > 1:
        audio = audio.mean(axis=1, keepdims=True)
    audio = trim_silence(np.ascontiguousarray(resample(audio.T, rate, target).T), target)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (PEAK / peak) if peak > 0 else audio
