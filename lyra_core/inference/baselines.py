"""Simple codecs to compare a model with at the same data rate: μ-law PCM, resampling, Opus, Vorbis.

Each baseline turns audio [C, T] at the model's rate into what a listener would hear after that
codec, and says how many bits per second it spent. Opus and Vorbis go through libsndfile (via
soundfile) in memory; their bitrate is set through libsndfile's compression level, searched for
the level whose measured bitrate (payload bytes written × 8 / seconds, the stream's headers left
out) is nearest the target, so the reported bitrate is the one the stream really spends.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import attrs
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from lyra_core.services.audio import resample

MU_LAW_BITS = 8
MIN_RATE = 1000  # Hz: below this a resampling baseline is not meaningful
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the rates libsndfile's Opus encoder takes
SEARCH_STEPS = 12  # bisection steps over the compression level (0 = best quality, 1 = smallest)


@attrs.frozen
class Baseline:
    """One simple codec at (about) a target bitrate: its name, real bitrate and round trip."""

    name: str
    bits_per_second: float
    roundtrip: Callable[[np.ndarray], np.ndarray]
    note: str = ""


def _through_rate(audio: np.ndarray, rate: int, low: int) -> np.ndarray:
    """Down to `low` Hz and back to `rate`, cut or padded to the input's length."""
    back = resample(resample(audio, rate, low), low, rate)
    return _fit(back, audio.shape[-1])


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    if audio.shape[-1] >= length:
        return np.ascontiguousarray(audio[..., :length], dtype=np.float32)
    return np.pad(audio, ((0, 0), (0, length - audio.shape[-1]))).astype(np.float32)


def resampling(rate: int, channels: int, values_per_second: float) -> Baseline | None:
    """Resampling to as many samples per second (all channels) as the model sends values."""
    low = min(rate, round(values_per_second / channels))
    if low < MIN_RATE:
        return None
    return Baseline(
        "resample",
        low * channels * 32.0,
        lambda x: _through_rate(x, rate, low),
        f"{low} Hz float, the model's values per second",
    )


def mu_law(rate: int, channels: int, bits_per_second: float) -> Baseline | None:
    """8-bit μ-law PCM at the rate that spends the target bitrate (at most the model's rate)."""
    low = min(rate, math.floor(bits_per_second / (MU_LAW_BITS * channels)))
    if low < MIN_RATE:
        return None
    levels = 2**MU_LAW_BITS

    def roundtrip(x: np.ndarray) -> np.ndarray:
        y = torch.from_numpy(resample(x, rate, low)).clamp(-1, 1)
        coded = AF.mu_law_decoding(AF.mu_law_encoding(y, levels), levels).numpy()
        return _fit(resample(coded, low, rate), x.shape[-1])

    return Baseline(
        "mu_law", low * channels * MU_LAW_BITS, roundtrip, f"{MU_LAW_BITS}-bit at {low} Hz"
    )


def _encode(audio: np.ndarray, rate: int, subtype: str, level: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio.T, rate, format="OGG", subtype=subtype, compression_level=level)
    return buffer.getvalue()


def _nearest_level(audio: np.ndarray, rate: int, subtype: str, target: float) -> tuple[float, int]:
    """The compression level whose bitrate is nearest `target`, and that bitrate (bits/s).

    The bitrate is the payload's: the Ogg headers (written once per stream, about 0.9 kB for
    Opus and 3.6 kB for Vorbis) are left out, as they are for a stream, so short files are
    not charged for them.
    """
    seconds = audio.shape[-1] / rate
    empty = np.zeros((audio.shape[0], 0), dtype=np.float32)
    header = len(_encode(empty, rate, subtype, 1.0))

    def bitrate(level: float) -> int:
        return round((len(_encode(audio, rate, subtype, level)) - header) * 8 / seconds)

    lo, hi = 0.0, 1.0  # bitrate falls as the level rises
    best = min(((lo, bitrate(lo)), (hi, bitrate(hi))), key=lambda lb: abs(lb[1] - target))
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        rate_mid = bitrate(mid)
        if abs(rate_mid - target) < abs(best[1] - target):
            best = (mid, rate_mid)
        lo, hi = (mid, hi) if rate_mid > target else (lo, mid)
    return best


def ogg(subtype: str, rate: int, audio: np.ndarray, target: float) -> Baseline | None:
    """Opus or Vorbis at the bitrate nearest `target`, measured on this file."""
    if subtype not in sf.available_subtypes("OGG"):
        return None
    coded_rate = min((r for r in OPUS_RATES if r >= rate), default=48000)
    coded_rate = coded_rate if subtype == "OPUS" else rate
    x = resample(audio, rate, coded_rate)
    level, bits = _nearest_level(x, coded_rate, subtype, target)

    def roundtrip(y: np.ndarray) -> np.ndarray:
        data, _ = sf.read(
            io.BytesIO(_encode(resample(y, rate, coded_rate), coded_rate, subtype, level)),
            dtype="float32",
            always_2d=True,
        )
        return _fit(resample(data.T, coded_rate, rate), y.shape[-1])

    note = f"libsndfile {sf.__libsndfile_version__}, level {level:.3f}"
    return Baseline(subtype.lower(), float(bits), roundtrip, note)


def unavailable() -> list[str]:
    """What this libsndfile cannot write, said once per report."""
    have = sf.available_subtypes("OGG") if "OGG" in sf.available_formats() else {}
    return [
        f"{name}: this libsndfile ({sf.__libsndfile_version__}) cannot write it"
        for name in ("OPUS", "VORBIS")
        if name not in have
    ]


def baselines_for(
    audio: np.ndarray, rate: int, bits_per_second: float, values_per_second: float
) -> list[Baseline]:
    """Every baseline that runs at this data rate, for this file (Opus and Vorbis fitted to it)."""
    channels = audio.shape[0]
    found = [
        resampling(rate, channels, values_per_second),
        mu_law(rate, channels, bits_per_second),
        ogg("OPUS", rate, audio, bits_per_second),
        ogg("VORBIS", rate, audio, bits_per_second),
    ]
    return [b for b in found if b is not None]
